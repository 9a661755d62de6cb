//! Outbound delivery: the next hop (smarthost or MX), the connection pool
//! and per-host limits, the delivery driver that runs the I/O-free
//! [`crate::smtp::client`] conversation over tokio, client TLS with
//! resumption and the TLS policy (levels, DANE, PKIX checks), logins to
//! smarthosts, the EHLO cache for early pipelining, per-host retry hints,
//! the plugins' delivery hooks, and DSN building.

pub mod client;
pub mod dane;
pub mod deliver;
pub mod dsn;
pub mod ehlo_cache;
pub mod hop;
pub mod https;
pub mod login;
pub mod mta_sts;
pub mod policy;
pub mod retry;
pub mod tls;
pub mod tlsrpt;
pub mod verify;

/// Why outbound delivery cannot start (remote mail then stays queued).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The resolver could not be set up.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
}
