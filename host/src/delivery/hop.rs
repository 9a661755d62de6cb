//! Finding the next hop: a smarthost from the config, or MX records
//! (RFC 5321 §5: preference order, implicit MX from A/AAAA, RFC 7505 null MX).

use crate::config::{Config, OutboundTls};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

/// One host to try, with its addresses in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name (MX target or smarthost name).
    pub name: String,
    /// Addresses to try.
    pub addrs: Vec<SocketAddr>,
}

/// Where a domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Hosts in order of preference.
    pub hosts: Vec<Host>,
    /// TLS policy for these hosts.
    pub tls: OutboundTls,
    /// `R=` for the log: `smarthost` or `dnslookup`.
    pub router: &'static str,
}

/// Why no route could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Try again later (DNS timeout, SERVFAIL).
    Temporary(String),
    /// Never deliverable (NXDOMAIN, null MX).
    Permanent(String),
}

/// Parse `host:port`, `[ip]:port`, `ip:port`, or a bare host (port 25).
pub fn parse_smarthost(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("missing ]")?;
        ip.parse::<IpAddr>()
            .map_err(|_| format!("bad address {ip}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p}"))?,
            None if after.is_empty() => 25,
            None => return Err(format!("unexpected {after:?}")),
        };
        return Ok((ip.to_string(), port));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok((s.to_string(), 25));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p}"))?),
        None => (s, 25),
    };
    if host.is_empty() || host.contains([' ', '/']) {
        return Err(format!("bad host name {host:?}"));
    }
    Ok((host.to_string(), port))
}

/// The configured smarthost and TLS policy for a domain, if any.
pub fn configured(cfg: &Config, domain: &str) -> (Option<String>, OutboundTls) {
    let d = cfg
        .outbound
        .domains
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(domain))
        .map(|(_, v)| v);
    let smarthost = d
        .and_then(|d| d.smarthost.clone())
        .or_else(|| cfg.outbound.smarthost.clone());
    let tls = d.and_then(|d| d.tls).unwrap_or(cfg.outbound.tls);
    (smarthost, tls)
}

/// DNS for next hops: MX, then A/AAAA. hickory caches answers for their
/// TTL. A second, validating resolver answers [`Dns::records_checked`].
pub struct Dns {
    resolver: hickory_resolver::TokioResolver,
    validating: hickory_resolver::TokioResolver,
}

impl Dns {
    /// Use `nameservers` ("ip:port"), or the system's when empty; DNSSEC
    /// is validated from the anchors in `trust_anchors` (zone-file DNSKEY
    /// or DS records), or from the IANA root anchors.
    pub fn new(nameservers: &[SocketAddr], trust_anchors: Option<&Path>) -> Result<Dns, String> {
        let anchors = match trust_anchors {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("DNSSEC trust anchors {}: {e}", p.display()))?;
                let a = hickory_resolver::proto::dnssec::TrustAnchors::from_str(&text)
                    .map_err(|e| format!("DNSSEC trust anchors {}: {e}", p.display()))?;
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
    ) -> Result<hickory_resolver::TokioResolver, String> {
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
        };
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let builder = if nameservers.is_empty() {
            hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| format!("DNS configuration: {e}"))?
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
        builder.build().map_err(|e| format!("DNS resolver: {e}"))
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

    async fn addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, RouteError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self
            .resolver
            .lookup_ip(format!("{}.", host.trim_end_matches('.')))
            .await
        {
            Ok(l) => Ok(l.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) if e.is_nx_domain() => {
                Err(RouteError::Permanent(format!("host {host} does not exist")))
            }
            Err(e) if e.is_no_records_found() => {
                Err(RouteError::Permanent(format!("host {host} has no address")))
            }
            Err(e) => Err(RouteError::Temporary(format!(
                "DNS lookup of {host} failed: {e}"
            ))),
        }
    }

    /// The route for `domain`: the configured smarthost, or its MX hosts.
    pub async fn route(&self, cfg: &Config, domain: &str) -> Result<Route, RouteError> {
        let (smarthost, tls) = configured(cfg, domain);
        if let Some(h) = smarthost {
            let (name, port) = parse_smarthost(&h).map_err(RouteError::Permanent)?;
            let addrs = self.addrs(&name, port).await?;
            return Ok(Route {
                hosts: vec![Host { name, addrs }],
                tls,
                router: "smarthost",
            });
        }
        let port = cfg.outbound.port;
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip: IpAddr = lit
                .trim_start_matches("IPv6:")
                .parse()
                .map_err(|_| RouteError::Permanent(format!("bad address literal {domain}")))?;
            return Ok(Route {
                hosts: vec![Host {
                    name: ip.to_string(),
                    addrs: vec![SocketAddr::new(ip, port)],
                }],
                tls,
                router: "literal",
            });
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let mut mx: Vec<(u16, String)> = match self.resolver.mx_lookup(fqdn).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::MX(m) => Some((
                        m.preference,
                        m.exchange.to_ascii().trim_end_matches('.').to_string(),
                    )),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => {
                return Err(RouteError::Permanent(format!(
                    "domain {domain} does not exist"
                )));
            }
            Err(e) if e.is_no_records_found() => vec![],
            Err(e) => {
                return Err(RouteError::Temporary(format!(
                    "MX lookup for {domain} failed: {e}"
                )));
            }
        };
        if mx.len() == 1 && mx[0].1.is_empty() {
            return Err(RouteError::Permanent(format!(
                "domain {domain} does not accept mail (null MX, RFC 7505)"
            )));
        }
        mx.retain(|(_, h)| !h.is_empty());
        if mx.is_empty() {
            // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
            mx.push((0, domain.trim_end_matches('.').to_string()));
        }
        mx.sort_by_key(|m| m.0);
        let mut hosts = Vec::new();
        let mut last_err = None;
        for (_, name) in mx {
            match self.addrs(&name, port).await {
                Ok(a) if !a.is_empty() => hosts.push(Host { name, addrs: a }),
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        if hosts.is_empty() {
            return Err(match last_err {
                Some(RouteError::Temporary(t)) => RouteError::Temporary(t),
                Some(RouteError::Permanent(t)) => {
                    RouteError::Permanent(format!("all hosts for {domain} failed: {t}"))
                }
                None => RouteError::Permanent(format!("no usable host for {domain}")),
            });
        }
        Ok(Route {
            hosts,
            tls,
            router: "dnslookup",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smarthosts() {
        assert_eq!(
            parse_smarthost("relay.test:587").unwrap(),
            ("relay.test".into(), 587)
        );
        assert_eq!(
            parse_smarthost("relay.test").unwrap(),
            ("relay.test".into(), 25)
        );
        assert_eq!(
            parse_smarthost("127.0.0.1:2525").unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(parse_smarthost("[::1]:26").unwrap(), ("::1".into(), 26));
        assert_eq!(parse_smarthost("::1").unwrap(), ("::1".into(), 25));
        assert!(parse_smarthost("relay:x").is_err());
        assert!(parse_smarthost("[nope]:25").is_err());
    }
}
