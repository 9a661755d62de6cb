//! The host's DNS resolver (hickory): answers cached for their TTL, and a
//! second, DNSSEC-validating resolver. Used by outbound delivery (MX and
//! addresses) and by plugins granted `dns`. Nameservers come from the
//! config, so tests point it at a private nsd and nothing else.

pub mod serve;
pub mod zone;

use hickory_resolver::proto::rr::RecordType;
use std::collections::HashMap;
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
    /// Owner names of the trust anchors (`.` for the IANA root).
    anchor_names: Vec<String>,
    /// When DNSSEC was last probed, and whether it validated.
    probed: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Denials from the validating resolver, until they expire: hickory
    /// caches validated answers but asks again for a validated NODATA or
    /// NXDOMAIN (an MX host's missing AAAA would cost every delivery a
    /// round trip).
    negative: std::sync::Mutex<HashMap<(String, RecordType), (std::time::Instant, Denial)>>,
}

/// A cached denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denial {
    NxDomain,
    Secure,
    Insecure,
}

/// Denials kept at most this long (RFC 2308 §5 allows the SOA minimum; a
/// response without one is kept a minute).
const MAX_NEGATIVE_TTL: u32 = 3600;
const DEFAULT_NEGATIVE_TTL: u32 = 60;
const MAX_NEGATIVE_ENTRIES: usize = 10_000;

/// An answer from the validating resolver, with how far it is proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validated<T> {
    /// Every record proven (or the absence proven: an empty list).
    Secure(T),
    /// Not signed (proven insecure, or DNSSEC is not available here).
    Insecure(T),
}

impl<T> Validated<T> {
    /// The answer, however proven.
    pub fn into_inner(self) -> T {
        match self {
            Validated::Secure(t) | Validated::Insecure(t) => t,
        }
    }
    /// Whether it was proven secure.
    pub fn is_secure(&self) -> bool {
        matches!(self, Validated::Secure(_))
    }
}

/// A DANE TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tlsa {
    /// Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0: the full certificate, 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact, 1: SHA2-256, 2: SHA2-512.
    pub matching: u8,
    /// The certificate association data.
    pub data: Vec<u8>,
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
        let anchor_names = match trust_anchors {
            Some(p) => anchor_owners(&std::fs::read_to_string(p).unwrap_or_default()),
            None => vec![".".to_string()],
        };
        Ok(Dns {
            resolver: Dns::resolver(nameservers, false, None)?,
            validating: Dns::resolver(nameservers, true, anchors)?,
            anchor_names,
            probed: std::sync::Mutex::new(None),
            negative: std::sync::Mutex::new(HashMap::new()),
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
    /// validation and reported as not secure; without DNSSEC here
    /// ([`Dns::dnssec_available`]) only the plain resolver is asked.
    pub async fn records_checked(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<(Vec<String>, bool), String> {
        use hickory_resolver::proto::dnssec::Proof;
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        // Without DNSSEC here nothing validates: asking the validating
        // resolver first would only cost its proof queries (seconds for
        // each new unsigned name).
        if self.dnssec_available().await
            && let Ok(l) = self.validating.lookup(fqdn, rtype).await
        {
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

    /// The (caching) resolver itself, for libraries that take one
    /// (mail-auth): they share its cache.
    pub fn shared_resolver(&self) -> hickory_resolver::TokioResolver {
        self.resolver.clone()
    }

    /// Records of one type in presentation form; an empty list when the
    /// name has none. `Err` for failures (timeout, SERVFAIL).
    pub async fn records(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let started = std::time::Instant::now();
        let r = match self.resolver.lookup(fqdn, rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.to_string())
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(vec![]),
            Err(e) => Err(e.to_string()),
        };
        counted(rtype, started, r.is_err());
        r
    }

    /// The addresses of `host` (an IP literal is its own answer).
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let started = std::time::Instant::now();
        let r = self
            .resolver
            .lookup_ip(format!("{}.", host.trim_end_matches('.')))
            .await
            .map(|l| l.iter().collect())
            .map_err(LookupError::from_hickory);
        let failed = matches!(r, Err(LookupError::Failed(_)));
        crate::metrics::get().dns_lookup("A+AAAA", started, failed);
        r
    }

    /// The MX records of `domain` as (preference, exchange without the
    /// trailing dot; empty for RFC 7505's null MX).
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let started = std::time::Instant::now();
        let r = self
            .resolver
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
            .map_err(LookupError::from_hickory);
        let failed = matches!(r, Err(LookupError::Failed(_)));
        crate::metrics::get().dns_lookup("MX", started, failed);
        r
    }

    /// Whether DNSSEC validation works here: the trust anchors' own DNSKEY
    /// sets validate through the configured nameservers. Probed at first
    /// use, again every minute while it fails and every hour once it works.
    /// Without it every answer counts as insecure (DANE does not apply),
    /// which is what a resolver that strips DNSSEC records would give.
    pub async fn dnssec_available(&self) -> bool {
        use std::time::{Duration, Instant};
        if let Some((at, ok)) = *self.probed.lock().unwrap() {
            let keep = if ok { 3600 } else { 60 };
            if at.elapsed() < Duration::from_secs(keep) {
                return ok;
            }
        }
        let mut ok = !self.anchor_names.is_empty();
        for name in &self.anchor_names {
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            let secure = match self
                .validating
                .lookup(fqdn, hickory_resolver::proto::rr::RecordType::DNSKEY)
                .await
            {
                Ok(l) => {
                    let keys: Vec<_> = l.answers().iter().collect();
                    !keys.is_empty()
                        && keys
                            .iter()
                            .all(|r| r.proof == hickory_resolver::proto::dnssec::Proof::Secure)
                }
                Err(_) => false,
            };
            ok &= secure;
        }
        let before = self.probed.lock().unwrap().replace((Instant::now(), ok));
        if before.map(|b| b.1) != Some(ok) {
            if ok {
                tracing::info!(anchors = ?self.anchor_names, "DNSSEC validation available: DANE applies");
            } else {
                tracing::warn!(anchors = ?self.anchor_names, "DNSSEC validation unavailable (the trust anchors' keys do not validate through the nameservers): answers count as insecure, DANE does not apply");
            }
        }
        ok
    }

    /// A lookup through the validating resolver, classified: secure or
    /// insecure records (an empty list: the name has none), or an error.
    /// A bogus answer is [`LookupError::Failed`], never an empty answer:
    /// a forged denial must not switch DANE off. Without DNSSEC here
    /// (see [`Dns::dnssec_available`]) the plain resolver answers and
    /// everything is insecure.
    async fn validated(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Validated<Vec<hickory_resolver::proto::rr::Record>>, LookupError> {
        let started = std::time::Instant::now();
        let r = self.validated_uncounted(name, rtype).await;
        counted(rtype, started, matches!(r, Err(LookupError::Failed(_))));
        r
    }

    async fn validated_uncounted(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Validated<Vec<hickory_resolver::proto::rr::Record>>, LookupError> {
        use hickory_resolver::net::{DnsError as HDns, NetError};
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        if !self.dnssec_available().await {
            return match self.resolver.lookup(fqdn, rtype).await {
                Ok(l) => Ok(Validated::Insecure(l.answers().to_vec())),
                Err(e) => Err(LookupError::from_hickory(e)),
            };
        }
        let key = (fqdn.to_ascii_lowercase(), rtype);
        if let Some(d) = self.denied(&key) {
            return match d {
                Denial::NxDomain => Err(LookupError::NxDomain),
                Denial::Secure => Ok(Validated::Secure(vec![])),
                Denial::Insecure => Ok(Validated::Insecure(vec![])),
            };
        }
        let res = self.validating.lookup(fqdn, rtype).await;
        let ttl = match &res {
            Err(NetError::Dns(HDns::NoRecordsFound(n))) => n.negative_ttl,
            _ => None,
        }
        .unwrap_or(DEFAULT_NEGATIVE_TTL)
        .clamp(1, MAX_NEGATIVE_TTL);
        let out = Self::judge(name, rtype, res);
        let denial = match &out {
            Err(LookupError::NxDomain) => Some(Denial::NxDomain),
            Ok(Validated::Secure(v)) if v.is_empty() => Some(Denial::Secure),
            Ok(Validated::Insecure(v)) if v.is_empty() => Some(Denial::Insecure),
            _ => None,
        };
        if let Some(d) = denial {
            let mut m = self.negative.lock().unwrap();
            if m.len() >= MAX_NEGATIVE_ENTRIES {
                m.clear();
            }
            m.insert(
                key,
                (
                    std::time::Instant::now() + std::time::Duration::from_secs(ttl.into()),
                    d,
                ),
            );
        }
        out
    }

    fn denied(&self, key: &(String, RecordType)) -> Option<Denial> {
        let mut m = self.negative.lock().unwrap();
        match m.get(key) {
            Some((until, d)) if *until > std::time::Instant::now() => Some(*d),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    /// What a validating lookup's result means.
    fn judge(
        name: &str,
        rtype: RecordType,
        res: Result<hickory_resolver::lookup::Lookup, hickory_resolver::net::NetError>,
    ) -> Result<Validated<Vec<hickory_resolver::proto::rr::Record>>, LookupError> {
        use hickory_resolver::net::{DnsError as HDns, NetError};
        use hickory_resolver::proto::dnssec::Proof;
        match res {
            Ok(l) => {
                let recs = l.answers().to_vec();
                if recs.iter().any(|r| r.proof == Proof::Bogus) {
                    return Err(LookupError::Failed(format!(
                        "DNSSEC validation of {name} {rtype} failed (bogus)"
                    )));
                }
                let wanted: Vec<_> = recs.iter().filter(|r| r.record_type() == rtype).collect();
                if !wanted.is_empty() && recs.iter().all(|r| r.proof == Proof::Secure) {
                    Ok(Validated::Secure(recs))
                } else {
                    Ok(Validated::Insecure(recs))
                }
            }
            Err(NetError::Dns(HDns::DnssecBogus)) => Err(LookupError::Failed(format!(
                "DNSSEC validation of {name} {rtype} failed (bogus)"
            ))),
            Err(NetError::Dns(HDns::Nsec {
                proof, response, ..
            })) => {
                if proof == Proof::Insecure {
                    if response.response_code == hickory_resolver::proto::op::ResponseCode::NXDomain
                    {
                        Err(LookupError::NxDomain)
                    } else {
                        Ok(Validated::Insecure(vec![]))
                    }
                } else {
                    Err(LookupError::Failed(format!(
                        "DNSSEC denial of {name} {rtype} not proven ({proof})"
                    )))
                }
            }
            Err(e) if e.is_nx_domain() => Err(LookupError::NxDomain),
            // hickory answers NODATA only when the denial was proven
            // (secure) or the zone is proven unsigned; either way there is
            // nothing to use.
            Err(e) if e.is_no_records_found() => Ok(Validated::Secure(vec![])),
            Err(e) => Err(LookupError::Failed(e.to_string())),
        }
    }

    /// MX records as [`Dns::mx`] returns them, and whether the answer (or
    /// the proven absence of one) was DNSSEC-secure.
    pub async fn mx_validated(
        &self,
        domain: &str,
    ) -> Result<Validated<Vec<(u16, String)>>, LookupError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let v = self.validated(domain, RecordType::MX).await?;
        let pick = |recs: Vec<hickory_resolver::proto::rr::Record>| -> Vec<(u16, String)> {
            recs.iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange.to_ascii().trim_end_matches('.').to_string(),
                    )),
                    _ => None,
                })
                .collect()
        };
        let (secure, recs) = (v.is_secure(), pick(v.into_inner()));
        if recs.is_empty() {
            return Err(LookupError::NoRecords);
        }
        Ok(if secure {
            Validated::Secure(recs)
        } else {
            Validated::Insecure(recs)
        })
    }

    /// The addresses of `host` (A and AAAA), whether both answers were
    /// DNSSEC-secure, and the name the address records belong to when a
    /// secure CNAME chain led elsewhere (RFC 7672 §2.2.2: that name's
    /// TLSA records are tried first).
    pub async fn ip_validated(
        &self,
        host: &str,
    ) -> Result<(Validated<Vec<IpAddr>>, Option<String>), LookupError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((Validated::Insecure(vec![ip]), None));
        }
        let (a, aaaa) = tokio::join!(
            self.validated(host, RecordType::A),
            self.validated(host, RecordType::AAAA)
        );
        let mut secure = true;
        let mut ips = Vec::new();
        let mut target = None;
        let mut first_err = None;
        for r in [a, aaaa] {
            match r {
                Ok(v) => {
                    secure &= v.is_secure();
                    for rec in v.into_inner() {
                        match &rec.data {
                            RData::A(a) => {
                                ips.push(IpAddr::V4(a.0));
                                target = Some(rec.name.to_ascii());
                            }
                            RData::AAAA(a) => {
                                ips.push(IpAddr::V6(a.0));
                                target = Some(rec.name.to_ascii());
                            }
                            _ => {}
                        }
                    }
                }
                Err(LookupError::NxDomain | LookupError::NoRecords) => {}
                Err(e) => {
                    secure = false;
                    first_err.get_or_insert(e);
                }
            }
        }
        if ips.is_empty() {
            return Err(first_err.unwrap_or(LookupError::NoRecords));
        }
        let target = target
            .map(|t| t.trim_end_matches('.').to_ascii_lowercase())
            .filter(|t| !t.eq_ignore_ascii_case(host.trim_end_matches('.')));
        Ok((
            if secure {
                Validated::Secure(ips)
            } else {
                Validated::Insecure(ips)
            },
            target,
        ))
    }

    /// The TLSA records at `name` (`_25._tcp.mx.example`): secure records,
    /// insecure ones (unusable for DANE), an empty secure answer (none), or
    /// a failure (SERVFAIL, timeout, bogus), which DANE must treat as a
    /// possible attack, not as "no records".
    pub async fn tlsa(&self, name: &str) -> Result<Validated<Vec<Tlsa>>, LookupError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let v = match self.validated(name, RecordType::TLSA).await {
            Err(LookupError::NxDomain) => return Ok(Validated::Secure(vec![])),
            r => r?,
        };
        let secure = v.is_secure();
        let recs: Vec<Tlsa> = v
            .into_inner()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(t) => Some(Tlsa {
                    usage: u8::from(t.cert_usage),
                    selector: u8::from(t.selector),
                    matching: u8::from(t.matching),
                    data: t.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok(if secure {
            Validated::Secure(recs)
        } else {
            Validated::Insecure(recs)
        })
    }
}

/// Count one lookup of `rtype` in the metrics.
fn counted(
    rtype: hickory_resolver::proto::rr::RecordType,
    started: std::time::Instant,
    failed: bool,
) {
    crate::metrics::get().dns_lookup(&rtype.to_string(), started, failed);
}

/// The owner names of the records in a trust anchor file (zone-file form).
fn anchor_owners(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('$'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn anchor_owner_names() {
        let t = "; key\nmgtest.\t3600\tIN\tDNSKEY\t257 3 13 abc\nmgtest. IN DS 1 13 2 ab\n\nOther. IN DNSKEY 256 3 13 x\n";
        assert_eq!(super::anchor_owners(t), vec!["mgtest.", "other."]);
    }
}
