//! `[outbound]`: how remote mail leaves: next hops, DNS, TLS policy,
//! MTA-STS and TLS reports, logins to smarthosts, early pipelining,
//! connection limits, timeouts and the retry schedule.

use super::{Seconds, TlsLevel, TlsPolicyValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which connections may carry a login to a smarthost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthSecurity {
    /// TLS with a certificate verified by the destination's TLS policy
    /// (`verify`, `secure`, or DANE records): nobody in the path can
    /// pose as the server and collect the password.
    #[default]
    Verified,
    /// Any TLS: safe from listeners, not from an active attacker.
    Encrypted,
    /// Also in clear (a trusted network only).
    Any,
}

impl ClientAuthSecurity {
    /// As the configuration and the logs name it.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuthSecurity::Verified => "verified",
            ClientAuthSecurity::Encrypted => "encrypted",
            ClientAuthSecurity::Any => "any",
        }
    }
}

/// `[outbound.domains."name"]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundDomain {
    /// Next hop for this domain.
    pub smarthost: Option<String>,
}

/// `[outbound]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outbound {
    /// Next hop for every remote domain.
    pub smarthost: Option<String>,
    /// EHLO name.
    pub helo_name: Option<String>,
    /// DNS servers.
    pub nameservers: Vec<SocketAddr>,
    /// DNSSEC trust anchors (a file of DNSKEY or DS records in zone-file
    /// form); unset: the IANA root anchors.
    pub dnssec_trust_anchors: Option<std::path::PathBuf>,
    /// Port of MX hosts.
    pub port: u16,
    /// TLS level for destinations without an entry in `tls_policy`.
    pub tls: TlsLevel,
    /// TLS policy by destination (see [`tls_policy`]).
    pub tls_policy: BTreeMap<String, TlsPolicyValue>,
    /// A lookup table of TLS policies, consulted before `tls_policy` with
    /// the same keys; values in Postfix's form (`secure
    /// match=.example.com`, `encrypt implicit`).
    pub tls_policy_table: Option<String>,
    /// A lookup table of next hops by recipient domain (Postfix's
    /// `transport_maps`), consulted before `domains` and `smarthost`:
    /// domain keys (`example.com`, `*.example.com`, `.example.com`, `*`),
    /// values a smarthost (`host:port`, `[ip]:port`) or `mx` (the
    /// domain's MX hosts).
    pub routes_table: Option<String>,
    /// CA certificates (PEM) trusted at the `verify` and `secure` levels
    /// (and for MTA-STS policy hosts) besides the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Honour MTA-STS (RFC 8461) policies of recipient domains.
    pub mta_sts: bool,
    /// The HTTPS port of MTA-STS policy hosts (change it only for tests).
    pub mta_sts_port: u16,
    /// TLS reporting (RFC 8460): count each MX connection's TLS result per
    /// recipient domain and day, and send each domain that publishes a
    /// `_smtp._tls` record its daily report.
    pub tlsrpt: bool,
    /// `organization-name` of the reports (default: the host name).
    pub tlsrpt_organization: Option<String>,
    /// `contact-info` of the reports, also their sender (default:
    /// `postmaster@` the host name).
    pub tlsrpt_contact: Option<String>,
    /// Credentials for smarthosts that want a login (SMTP AUTH PLAIN or
    /// LOGIN), as a lookup table (`mailgate table build`): keys
    /// `[host]:port`, `[host]` or `host` (the smarthost or MX name as
    /// written), values `user:password`.
    pub auth_table: Option<String>,
    /// The same entries in a text file read at start (Postfix's
    /// `smtp_sasl_password_maps` source form: `[relay.example]:587
    /// user:password`), which must not be readable by group or others.
    pub auth_file: Option<PathBuf>,
    /// When credentials may be sent: `verified` (default: only over TLS
    /// whose certificate was verified, by the TLS policy's `verify`,
    /// `secure` or DANE), `encrypted` (over any TLS) or `any` (in clear
    /// too).
    pub auth_security: ClientAuthSecurity,
    /// Early pipelining as a client.
    pub pipe_connect: bool,
    /// TCP Fast Open for early-pipelined connections.
    pub fast_open: bool,
    /// Accept and spool only; deliver when told (`mailgate queue flush`).
    pub queue_only: bool,
    /// EHLO cache expiry.
    pub ehlo_cache_expiry: Seconds,
    /// Client TLS resumption.
    pub tls_resumption: bool,
    /// Connections in total.
    pub max_connections: usize,
    /// Connections per destination host.
    pub max_connections_per_host: usize,
    /// Messages per connection.
    pub max_messages_per_connection: usize,
    /// Idle connection keep time.
    pub connection_idle: Seconds,
    /// Connect timeout.
    pub connect_timeout: Seconds,
    /// Reply timeout.
    pub command_timeout: Seconds,
    /// Content timeout.
    pub data_timeout: Seconds,
    /// First retry interval.
    pub retry_min: Seconds,
    /// Largest retry interval.
    pub retry_max: Seconds,
    /// Give up after.
    pub max_age: Seconds,
    /// Delay warning after (0: off).
    pub delay_warning: Seconds,
    /// Per-domain overrides.
    pub domains: BTreeMap<String, OutboundDomain>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            smarthost: None,
            helo_name: None,
            nameservers: vec![],
            dnssec_trust_anchors: None,
            port: 25,
            tls: TlsLevel::Dane,
            tls_policy: BTreeMap::new(),
            tls_policy_table: None,
            routes_table: None,
            tls_ca_file: None,
            mta_sts: true,
            mta_sts_port: 443,
            tlsrpt: true,
            tlsrpt_organization: None,
            tlsrpt_contact: None,
            auth_table: None,
            auth_file: None,
            auth_security: ClientAuthSecurity::Verified,
            pipe_connect: true,
            fast_open: false,
            queue_only: false,
            ehlo_cache_expiry: Seconds(7 * 86400),
            tls_resumption: true,
            max_connections: 20,
            max_connections_per_host: 5,
            max_messages_per_connection: 100,
            connection_idle: Seconds(5),
            connect_timeout: Seconds(30),
            command_timeout: Seconds(300),
            data_timeout: Seconds(600),
            retry_min: Seconds(60),
            retry_max: Seconds(3600),
            max_age: Seconds(5 * 86400),
            delay_warning: Seconds(4 * 3600),
            domains: BTreeMap::new(),
        }
    }
}
