//! The greylisting decision, free of host calls: which triple a recipient
//! belongs to, whether it is allowed without waiting, and what a stored
//! entry and the time say.

use serde::Deserialize;
use std::net::IpAddr;

/// The plugin's config table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seconds a new triple must wait before a retry passes.
    #[serde(default = "default_delay")]
    pub delay: u64,
    /// Seconds after the first attempt within which the retry must come;
    /// later, the triple starts again.
    #[serde(default = "default_retry_window")]
    pub retry_window: u64,
    /// Seconds a triple that passed stays known (renewed by each message).
    #[serde(default = "default_lifetime")]
    pub lifetime: u64,
    /// Prefix length of the client's IPv4 network in the triple.
    #[serde(default = "default_v4")]
    pub ipv4_prefix: u8,
    /// Prefix length of the client's IPv6 network in the triple.
    #[serde(default = "default_v6")]
    pub ipv6_prefix: u8,
    /// Client networks never greylisted ("192.0.2.0/24", "2001:db8::/32",
    /// or one address).
    #[serde(default)]
    pub allow_clients: Vec<String>,
    /// Senders never greylisted: an address, or a domain ("example.com",
    /// which also covers its subdomains).
    #[serde(default)]
    pub allow_senders: Vec<String>,
    /// Recipients never greylisted: an address or a domain.
    #[serde(default)]
    pub allow_recipients: Vec<String>,
    /// Greylist clients that authenticated (SMTP AUTH) too.
    #[serde(default)]
    pub authenticated: bool,
    /// When kv fails: `defer` the recipient (451 4.3.0, the default) or
    /// `accept` it unchecked. While a pool's Redis is down under the
    /// host's `store.on_outage = "defer"`, the host defers anyway.
    #[serde(default)]
    pub on_kv_error: OnKvError,
}

/// What a kv failure does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnKvError {
    /// 451 4.3.0.
    #[default]
    Defer,
    /// Let the recipient through.
    Accept,
}

fn default_delay() -> u64 {
    300
}
fn default_retry_window() -> u64 {
    4 * 3600
}
fn default_lifetime() -> u64 {
    35 * 86400
}
fn default_v4() -> u8 {
    24
}
fn default_v6() -> u8 {
    64
}

/// A network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(pub IpAddr, pub u8);

impl Net {
    /// Parse "addr/len" or "addr".
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = a.trim().parse().map_err(|_| format!("bad network {s:?}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Net(mask(ip, len), len))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.0.is_ipv4() && mask(ip, self.1) == self.0
    }
}

/// `ip` with the bits past `len` cleared.
pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `addr` (an address) is `pattern`: the same address, or at the
/// domain or a subdomain of it.
fn address_matches(addr: &str, pattern: &str) -> bool {
    let addr = addr.to_ascii_lowercase();
    let p = pattern.trim().to_ascii_lowercase();
    if p.contains('@') {
        return addr == p.trim_start_matches('@') || (p.starts_with('@') && addr.ends_with(&p));
    }
    let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
    domain == p || domain.ends_with(&format!(".{p}"))
}

/// The config, checked: networks parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    /// As written.
    pub cfg: Config,
    clients: Vec<Net>,
}

impl Policy {
    /// Check `cfg`.
    pub fn new(cfg: Config) -> Result<Policy, String> {
        if cfg.ipv4_prefix > 32 || cfg.ipv6_prefix > 128 {
            return Err("ipv4_prefix is at most 32, ipv6_prefix at most 128".into());
        }
        if cfg.retry_window <= cfg.delay {
            return Err("retry_window must be longer than delay".into());
        }
        let clients = cfg
            .allow_clients
            .iter()
            .map(|s| Net::parse(s))
            .collect::<Result<_, _>>()?;
        Ok(Policy { cfg, clients })
    }

    /// Why this recipient is not greylisted at all, if it is not.
    pub fn allowed(
        &self,
        ip: IpAddr,
        sender: &str,
        rcpt: &str,
        authenticated: bool,
    ) -> Option<&'static str> {
        let ip = canonical(ip);
        if authenticated && !self.cfg.authenticated {
            return Some("authenticated client");
        }
        if self.clients.iter().any(|n| n.contains(ip)) {
            return Some("client allowed");
        }
        if !sender.is_empty()
            && self
                .cfg
                .allow_senders
                .iter()
                .any(|p| address_matches(sender, p))
        {
            return Some("sender allowed");
        }
        if self
            .cfg
            .allow_recipients
            .iter()
            .any(|p| address_matches(rcpt, p))
        {
            return Some("recipient allowed");
        }
        None
    }

    /// The kv key of the triple: the client's network, the sender and the
    /// recipient, lower-cased.
    pub fn triple(&self, ip: IpAddr, sender: &str, rcpt: &str) -> String {
        let ip = canonical(ip);
        let len = if ip.is_ipv4() {
            self.cfg.ipv4_prefix
        } else {
            self.cfg.ipv6_prefix
        };
        format!(
            "{}/{len} {} {}",
            mask(ip, len),
            sender.to_ascii_lowercase(),
            rcpt.to_ascii_lowercase()
        )
    }

    /// What to do with a triple whose stored entry is `entry` at `now`.
    pub fn decide(&self, entry: Option<&[u8]>, now: u64) -> Decision {
        let c = &self.cfg;
        match entry.and_then(Entry::parse) {
            None => Decision::Wait {
                retry_in: c.delay,
                store: Some((Entry::Waiting(now).encode(), c.retry_window)),
            },
            Some(Entry::Waiting(first)) => {
                let waited = now.saturating_sub(first);
                if waited >= c.retry_window {
                    // Too late: this attempt is a new first one.
                    Decision::Wait {
                        retry_in: c.delay,
                        store: Some((Entry::Waiting(now).encode(), c.retry_window)),
                    }
                } else if waited >= c.delay {
                    Decision::Pass {
                        delayed: Some(waited),
                        store: Some((Entry::Passed(now).encode(), c.lifetime)),
                    }
                } else {
                    Decision::Wait {
                        retry_in: c.delay - waited,
                        store: None,
                    }
                }
            }
            Some(Entry::Passed(at)) => Decision::Pass {
                delayed: None,
                // Renewed at most hourly, not by every message.
                store: (now.saturating_sub(at) >= 3600)
                    .then(|| (Entry::Passed(now).encode(), c.lifetime)),
            },
        }
    }
}

/// A stored triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// First seen at (unix seconds), not passed yet.
    Waiting(u64),
    /// Passed; last renewed at.
    Passed(u64),
}

impl Entry {
    fn encode(self) -> Vec<u8> {
        match self {
            Entry::Waiting(t) => format!("w {t}"),
            Entry::Passed(t) => format!("p {t}"),
        }
        .into_bytes()
    }

    fn parse(b: &[u8]) -> Option<Entry> {
        let s = std::str::from_utf8(b).ok()?;
        let (k, t) = s.split_once(' ')?;
        let t = t.parse().ok()?;
        match k {
            "w" => Some(Entry::Waiting(t)),
            "p" => Some(Entry::Passed(t)),
            _ => None,
        }
    }
}

/// The answer for one recipient, and what to store (value, lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 451 4.7.1; the client may retry in this many seconds.
    Wait {
        /// Seconds until a retry passes.
        retry_in: u64,
        /// The entry to write.
        store: Option<(Vec<u8>, u64)>,
    },
    /// Accept the recipient.
    Pass {
        /// Seconds it was held up, the first time it passes.
        delayed: Option<u64>,
        /// The entry to write.
        store: Option<(Vec<u8>, u64)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let json = format!("{{\"delay\": 60, \"retry_window\": 600{extra}}}");
        Policy::new(serde_json::from_str(&json).unwrap()).unwrap()
    }

    #[test]
    fn a_triple_waits_then_passes_and_is_remembered() {
        let p = policy("");
        let d = p.decide(None, 1000);
        let Decision::Wait {
            retry_in: 60,
            store: Some((v, 600)),
        } = d
        else {
            panic!("{d:?}")
        };
        // Too early: still waiting, the first attempt's time kept.
        assert_eq!(
            p.decide(Some(&v), 1030),
            Decision::Wait {
                retry_in: 30,
                store: None
            }
        );
        let d = p.decide(Some(&v), 1061);
        let Decision::Pass {
            delayed: Some(61),
            store: Some((passed, lifetime)),
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(lifetime, 35 * 86400);
        assert_eq!(
            p.decide(Some(&passed), 2000),
            Decision::Pass {
                delayed: None,
                store: None
            }
        );
        // Renewed after an hour.
        assert!(matches!(
            p.decide(Some(&passed), 1061 + 3600),
            Decision::Pass { store: Some(_), .. }
        ));
        // A retry after the window starts again.
        assert!(matches!(
            p.decide(Some(&v), 1601),
            Decision::Wait {
                retry_in: 60,
                store: Some(_)
            }
        ));
        // Garbage is a new triple.
        assert!(matches!(p.decide(Some(b"junk"), 5), Decision::Wait { .. }));
    }

    #[test]
    fn triples_use_the_client_network() {
        let p = policy("");
        let a = p.triple("192.0.2.10".parse().unwrap(), "S@Example.org", "u@x.test");
        let b = p.triple("192.0.2.200".parse().unwrap(), "s@example.org", "U@X.test");
        assert_eq!(a, "192.0.2.0/24 s@example.org u@x.test");
        assert_eq!(a, b);
        let c = p.triple("192.0.3.10".parse().unwrap(), "s@example.org", "u@x.test");
        assert_ne!(a, c);
        let v6 = p.triple("2001:db8:1:2:3::4".parse().unwrap(), "", "u@x.test");
        assert_eq!(v6, "2001:db8:1:2::/64  u@x.test");
        let mapped = p.triple(
            "::ffff:192.0.2.7".parse().unwrap(),
            "s@example.org",
            "u@x.test",
        );
        assert_eq!(mapped, a);
    }

    #[test]
    fn allow_lists() {
        let p = policy(
            r#", "allow_clients": ["198.51.100.0/24", "2001:db8::/32"],
                "allow_senders": ["partner.example", "one@other.example"],
                "allow_recipients": ["postmaster@x.test"]"#,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p.allowed(ip("198.51.100.9"), "a@b.c", "u@x.test", false),
            Some("client allowed")
        );
        assert_eq!(
            p.allowed(ip("2001:db8:5::1"), "a@b.c", "u@x.test", false),
            Some("client allowed")
        );
        assert_eq!(
            p.allowed(ip("192.0.2.1"), "x@mail.partner.example", "u@x.test", false),
            Some("sender allowed")
        );
        assert_eq!(
            p.allowed(ip("192.0.2.1"), "one@other.example", "u@x.test", false),
            Some("sender allowed")
        );
        assert_eq!(
            p.allowed(ip("192.0.2.1"), "two@other.example", "u@x.test", false),
            None
        );
        assert_eq!(
            p.allowed(ip("192.0.2.1"), "", "Postmaster@x.test", false),
            Some("recipient allowed")
        );
        assert_eq!(
            p.allowed(ip("192.0.2.1"), "", "u@x.test", true),
            Some("authenticated client")
        );
        assert!(
            Policy::new(serde_json::from_str(r#"{"allow_clients": ["nope"]}"#).unwrap()).is_err()
        );
        assert!(
            Policy::new(serde_json::from_str(r#"{"delay": 600, "retry_window": 60}"#).unwrap())
                .is_err()
        );
    }
}
