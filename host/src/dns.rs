//! The host's DNS resolver (hickory): answers cached for their TTL, and a
//! second, DNSSEC-validating resolver. Used by outbound delivery (MX and
//! addresses) and by plugins granted `dns`. Nameservers come from the
//! config, so tests point it at a private nsd and nothing else.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The DNSSEC trust anchor file is unreadable or malformed.
    #[error("DNSSEC trust anchors {path}: {reason}")]
    TrustAnchors {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The system's resolver configuration could not be read.
    #[error("DNS configuration: {0}")]
    System(String),
    /// hickory refused the configuration.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name does not exist (NXDOMAIN).
    #[error("does not exist")]
    NxDomain,
    /// The name exists without records of the type asked for.
    #[error("has no records of that type")]
    NoRecords,
    /// The lookup failed (timeout, SERVFAIL, a refused query): try later.
    #[error("{0}")]
    Failed(String),
}

impl LookupError {
    fn from_hickory(e: hickory_resolver::net::NetError) -> LookupError {
        if e.is_nx_domain() {
            LookupError::NxDomain
        } else if e.is_no_records_found() {
            LookupError::NoRecords
        } else {
            LookupError::Failed(e.to_string())
        }
    }
}

/// The resolvers. hickory caches answers for their TTL. A second, validating resolver answers [`Dns::records_checked`].
pub struct Dns {
    resolver: hickory_resolver::TokioResolver,
    validating: hickory_resolver::TokioResolver,
}

impl Dns {
    /// Use `nameservers` ("ip:port"), or the system's when empty; DNSSEC
    /// is validated from the anchors in `trust_anchors` (zone-file DNSKEY
    /// or DS records), or from the IANA root anchors.
    pub fn new(nameservers: &[SocketAddr], trust_anchors: Option<&Path>) -> Result<Dns, DnsError> {
        let anchors = match trust_anchors {
            Some(p) => {
                let bad = |reason: String| DnsError::TrustAnchors {
                    path: p.display().to_string(),
                    reason,
                };
                let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
                let a = hickory_resolver::proto::dnssec::TrustAnchors::from_str(&text)
                    .map_err(|e| bad(e.to_string()))?;
                Some(std::sync::Arc::new(a))
            }
            None => None,
        };
        Ok(Dns {
            resolver: Dns::resolver(nameservers, false, None)?,
            validating: Dns::resolver(nameservers, true, anchors)?,
        })
    }

    fn resolver(
        nameservers: &[SocketAddr],
        validate: bool,
        anchors: Option<std::sync::Arc<hickory_resolver::proto::dnssec::TrustAnchors>>,
    ) -> Result<hickory_resolver::TokioResolver, DnsError> {
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
        };
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let builder = if nameservers.is_empty() {
            hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| DnsError::System(e.to_string()))?
        } else {
            let servers = nameservers
                .iter()
                .map(|ns| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = ns.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = ns.port();
                    NameServerConfig::new(ns.ip(), true, vec![udp, tcp])
                })
                .collect();
            hickory_resolver::TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioRuntimeProvider::default(),
            )
        };
        let mut opts = ResolverOpts::default();
        opts.attempts = 2;
        opts.timeout = std::time::Duration::from_secs(5);
        opts.validate = validate;
        let mut builder = builder.with_options(opts);
        if let Some(a) = anchors {
            builder = builder.with_trust_anchor(a);
        }
        builder
            .build()
            .map_err(|e| DnsError::Resolver(e.to_string()))
    }

    /// Like [`Dns::records`], and whether the answer was DNSSEC-validated
    /// (every record proven secure). An answer that cannot be validated
    /// (unsigned, no chain to an anchor, bogus) is looked up again without
    /// validation and reported as not secure.
    pub async fn records_checked(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<(Vec<String>, bool), String> {
        use hickory_resolver::proto::dnssec::Proof;
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        if let Ok(l) = self.validating.lookup(fqdn, rtype).await {
            let recs: Vec<_> = l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .collect();
            if !recs.is_empty() && recs.iter().all(|r| r.proof == Proof::Secure) {
                return Ok((recs.iter().map(|r| r.data.to_string()).collect(), true));
            }
        }
        Ok((self.records(name, rtype).await?, false))
    }

    /// Records of one type in presentation form; an empty list when the
    /// name has none. `Err` for failures (timeout, SERVFAIL).
    pub async fn records(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.to_string())
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(vec![]),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The addresses of `host` (an IP literal is its own answer).
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        self.resolver
            .lookup_ip(format!("{}.", host.trim_end_matches('.')))
            .await
            .map(|l| l.iter().collect())
            .map_err(LookupError::from_hickory)
    }

    /// The MX records of `domain` as (preference, exchange without the
    /// trailing dot; empty for RFC 7505's null MX).
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        self.resolver
            .mx_lookup(fqdn)
            .await
            .map(|l| {
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(m) => Some((
                            m.preference,
                            m.exchange.to_ascii().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect()
            })
            .map_err(LookupError::from_hickory)
    }
}
