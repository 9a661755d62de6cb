//! Finding the next hop: a smarthost from the config, or MX records
//! (RFC 5321 §5: preference order, implicit MX from A/AAAA, RFC 7505 null
//! MX), with the destination's TLS policy and, where DANE is asked for and
//! the records are DNSSEC-secure, each host's TLSA records (looked up
//! alongside its addresses).

use super::policy::TlsaState;
use crate::config::{Config, TlsLevel, TlsPolicy, parse_smarthost, tls_policy};
use crate::dns::{Dns, LookupError, Validated};
use crate::table::Tables;
use std::net::{IpAddr, SocketAddr};

/// One host to try, with its addresses in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name (MX target or smarthost name).
    pub name: String,
    /// Addresses to try.
    pub addrs: Vec<SocketAddr>,
    /// What its TLSA lookup gave.
    pub tlsa: TlsaState,
    /// The names a DANE-TA certificate may carry: the TLSA base domain
    /// (the CNAME target when it was secure), the host name, the next-hop
    /// domain (RFC 7672 §3.2.2).
    pub dane_names: Vec<String>,
}

/// Where a domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Hosts in order of preference.
    pub hosts: Vec<Host>,
    /// TLS policy for these hosts.
    pub tls: TlsPolicy,
    /// The next-hop domain: the recipient domain, or the smarthost name.
    pub nexthop: String,
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

/// The smarthost for a domain, if any: the routes table's entry (`mx`:
/// none, the MX hosts), then `outbound.domains`, then
/// `outbound.smarthost`. A table that cannot answer, or an entry that is
/// not a next hop, defers.
pub fn smarthost(
    cfg: &Config,
    tables: &Tables,
    domain: &str,
) -> Result<Option<String>, RouteError> {
    if let Some(t) = &cfg.outbound.routes_table {
        match tables.domain(t, domain) {
            Ok(Some(v)) => {
                let v = v.trim();
                if v.eq_ignore_ascii_case("mx") {
                    return Ok(None);
                }
                parse_smarthost(v).map_err(|e| {
                    RouteError::Temporary(format!("routes table {t}: {domain}: {v:?}: {e}"))
                })?;
                return Ok(Some(v.to_string()));
            }
            Ok(None) => {}
            Err(e) => return Err(RouteError::Temporary(e.to_string())),
        }
    }
    Ok(cfg
        .outbound
        .domains
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(domain))
        .and_then(|(_, v)| v.smarthost.clone())
        .or_else(|| cfg.outbound.smarthost.clone()))
}

/// The TLS policy for `domain`, reached through `smarthost` if any: the
/// policy table's entry, then `outbound.tls_policy`, then `outbound.tls`.
/// A table that cannot answer, or an entry that is not a policy, defers
/// (no mail leaves under a weaker policy than the admin wrote).
pub fn tls_policy(
    cfg: &Config,
    tables: &Tables,
    domain: &str,
    smarthost: Option<(&str, u16)>,
) -> Result<TlsPolicy, RouteError> {
    if let Some(t) = &cfg.outbound.tls_policy_table {
        let keys = tls_policy::keys(domain, smarthost);
        match tables.get(t).and_then(|tab| tab.first(&keys)) {
            Ok(Some((k, v))) => {
                return tls_policy::parse_value(&v)
                    .map_err(|e| RouteError::Temporary(format!("TLS policy table {t}: {k}: {e}")));
            }
            Ok(None) => {}
            Err(e) => return Err(RouteError::Temporary(e.to_string())),
        }
    }
    let default = TlsPolicy::level(cfg.outbound.tls);
    Ok(tls_policy::lookup(&cfg.outbound.tls_policy, domain, smarthost, &default).clone())
}

/// A host's addresses, whether they were DNSSEC-secure (only asked with
/// `validate`), and the secure CNAME target if any.
async fn addrs_validated(
    dns: &Dns,
    host: &str,
    port: u16,
    validate: bool,
) -> Result<(Vec<SocketAddr>, bool, Option<String>), RouteError> {
    let found = if validate {
        dns.ip_validated(host)
            .await
            .map(|(v, target)| (v.is_secure(), v.into_inner(), target))
    } else {
        dns.lookup_ip(host).await.map(|l| (false, l, None))
    };
    match found {
        Ok((secure, l, target)) => Ok((
            l.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(),
            secure,
            target.filter(|_| secure),
        )),
        Err(LookupError::NxDomain) => {
            Err(RouteError::Permanent(format!("host {host} does not exist")))
        }
        Err(LookupError::NoRecords) => {
            Err(RouteError::Permanent(format!("host {host} has no address")))
        }
        Err(LookupError::Failed(e)) => Err(RouteError::Temporary(format!(
            "DNS lookup of {host} failed: {e}"
        ))),
    }
}

/// A host found through DNS: its addresses and, when `dane` and the MX
/// answer was secure, its TLSA records, looked up at the same time
/// (RFC 7672 §2.2.2: the CNAME target's records first, then the name's).
async fn host(
    dns: &Dns,
    name: String,
    port: u16,
    nexthop: &str,
    dane: bool,
    mx_secure: bool,
) -> Result<Host, RouteError> {
    // DANE needs a name: an address literal has no TLSA records.
    let look = dane && mx_secure && name.parse::<IpAddr>().is_err();
    let tlsa_name = format!("_{port}._tcp.{name}");
    let (found, tlsa) = tokio::join!(addrs_validated(dns, &name, port, look), async {
        if look {
            Some(dns.tlsa(&tlsa_name).await)
        } else {
            None
        }
    });
    let (addrs, secure, target) = found?;
    let mut dane_names = vec![name.clone()];
    let tlsa = match tlsa {
        None => TlsaState::NotApplicable,
        Some(_) if !secure => TlsaState::NotApplicable,
        Some(first) => {
            let at_target = match &target {
                Some(t) => {
                    dane_names.insert(0, t.clone());
                    Some(dns.tlsa(&format!("_{port}._tcp.{t}")).await)
                }
                None => None,
            };
            let pick = |r: Result<Validated<Vec<crate::dns::Tlsa>>, LookupError>| match r {
                Ok(Validated::Secure(v)) => TlsaState::Secure(v),
                Ok(Validated::Insecure(_)) => TlsaState::Insecure,
                Err(e) => TlsaState::Failed(e.to_string()),
            };
            match at_target.map(pick) {
                Some(TlsaState::Secure(v)) if !v.is_empty() => TlsaState::Secure(v),
                Some(f @ TlsaState::Failed(_)) => f,
                _ => {
                    if target.is_some() {
                        dane_names.remove(0);
                    }
                    pick(first)
                }
            }
        }
    };
    if !dane_names.iter().any(|n| n.eq_ignore_ascii_case(nexthop)) {
        dane_names.push(nexthop.to_string());
    }
    Ok(Host {
        name,
        addrs,
        tlsa,
        dane_names,
    })
}

/// The route for `domain`: the configured smarthost, or its MX hosts.
pub async fn route(
    dns: &Dns,
    cfg: &Config,
    tables: &Tables,
    domain: &str,
) -> Result<Route, RouteError> {
    if let Some(h) = smarthost(cfg, tables, domain)? {
        let (name, port) = parse_smarthost(&h).map_err(|e| RouteError::Permanent(e.0))?;
        let tls = tls_policy(cfg, tables, domain, Some((&name, port)))?;
        let dane = matches!(tls.level, TlsLevel::Dane | TlsLevel::DaneOnly);
        // A smarthost's own address records decide whether DANE applies.
        let h = host(dns, name.clone(), port, &name, dane, true).await?;
        return Ok(Route {
            hosts: vec![h],
            tls,
            nexthop: name,
            router: "smarthost",
        });
    }
    let tls = tls_policy(cfg, tables, domain, None)?;
    let dane = matches!(tls.level, TlsLevel::Dane | TlsLevel::DaneOnly);
    let nexthop = domain.trim_end_matches('.').to_ascii_lowercase();
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
                tlsa: TlsaState::NotApplicable,
                dane_names: vec![],
            }],
            tls,
            nexthop,
            router: "literal",
        });
    }
    let mut mx_secure = false;
    let mx_answer = if dane {
        dns.mx_validated(domain).await.map(|v| {
            mx_secure = v.is_secure();
            v.into_inner()
        })
    } else {
        dns.mx(domain).await
    };
    let mut mx = match mx_answer {
        Ok(mx) => mx,
        Err(LookupError::NxDomain) => {
            return Err(RouteError::Permanent(format!(
                "domain {domain} does not exist"
            )));
        }
        Err(LookupError::NoRecords) => {
            // The implicit MX: its address records decide (RFC 7672 §2.2.1).
            mx_secure = true;
            vec![]
        }
        Err(LookupError::Failed(e)) => {
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
        match host(dns, name, port, &nexthop, dane, mx_secure).await {
            Ok(h) if !h.addrs.is_empty() => hosts.push(h),
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
        nexthop,
        router: "dnslookup",
    })
}
