//! Finding the next hop: a smarthost from the config, or MX records
//! (RFC 5321 §5: preference order, implicit MX from A/AAAA, RFC 7505 null MX).

use crate::config::{Config, OutboundTls, parse_smarthost};
use crate::dns::{Dns, LookupError};
use std::net::{IpAddr, SocketAddr};

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

async fn addrs(dns: &Dns, host: &str, port: u16) -> Result<Vec<SocketAddr>, RouteError> {
    match dns.lookup_ip(host).await {
        Ok(l) => Ok(l.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()),
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

/// The route for `domain`: the configured smarthost, or its MX hosts.
pub async fn route(dns: &Dns, cfg: &Config, domain: &str) -> Result<Route, RouteError> {
    let (smarthost, tls) = configured(cfg, domain);
    if let Some(h) = smarthost {
        let (name, port) = parse_smarthost(&h).map_err(|e| RouteError::Permanent(e.0))?;
        let addrs = addrs(dns, &name, port).await?;
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
    let mut mx = match dns.mx(domain).await {
        Ok(mx) => mx,
        Err(LookupError::NxDomain) => {
            return Err(RouteError::Permanent(format!(
                "domain {domain} does not exist"
            )));
        }
        Err(LookupError::NoRecords) => vec![],
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
        match addrs(dns, &name, port).await {
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
