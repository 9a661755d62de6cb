//! Value types of the configuration with their own syntax and errors.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::net::IpAddr;

/// A value that does not parse (a network, a smarthost, a service
/// address); config errors add the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<String> for InvalidValue {
    fn from(s: String) -> InvalidValue {
        InvalidValue(s)
    }
}

impl From<&str> for InvalidValue {
    fn from(s: &str) -> InvalidValue {
        InvalidValue(s.to_string())
    }
}

/// A duration in whole seconds, written "30s", "5m", "2h", "7d" or a number
/// of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl Seconds {
    /// As a std duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Seconds(n)),
            Raw::S(s) => parse_duration(&s).map(Seconds).ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid duration {s:?}: expected a number with s, m, h or d (\"30s\", \"5m\")"
                ))
            }),
        }
    }
}

fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mul = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A size in octets, written as a number or with K, M or G (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => {
                let t = s.trim();
                let (num, mul) = match t.chars().last() {
                    Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
                    Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
                    Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
                    _ => (t, 1),
                };
                num.trim()
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(mul))
                    .map(ByteSize)
                    .ok_or_else(|| {
                        de::Error::custom(format!(
                            "invalid size {s:?}: expected a number, optionally with K, M or G"
                        ))
                    })
            }
        }
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parse "addr/prefix" or a bare address.
    pub fn parse(s: &str) -> Result<Network, InvalidValue> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address {a:?} in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?} (0..={max})"))?,
        };
        Ok(Network { addr, prefix })
    }

    /// The network's address as written (host bits may be set).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is inside (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The prefix of a list entry that names a lookup table (`table:NAME`,
/// built with `mailgate table build NAME SOURCE`).
pub const TABLE_PREFIX: &str = "table:";

/// True for a usable table name: letters, digits, `-`, `_` and `.`, not
/// first (it names a file in the tables directory).
pub fn table_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The table named by a `table:NAME` entry, `None` for another entry.
fn table_ref(entry: &str) -> Result<Option<String>, InvalidValue> {
    match entry.trim().strip_prefix(TABLE_PREFIX) {
        Some(name) if table_name_ok(name.trim()) => Ok(Some(name.trim().to_string())),
        Some(name) => Err(format!(
            "{name:?} is not a table name (letters, digits, '-', '_' and '.', not first)"
        )
        .into()),
        None => Ok(None),
    }
}

/// A list of names (domains, local parts) whose entries may also be
/// `table:NAME`: a name is in the list when it is written there or found
/// in one of the tables (see `table::Tables::in_names`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList {
    names: Vec<String>,
    tables: Vec<String>,
}

impl NameList {
    /// A list of literal names.
    pub fn of(names: &[&str]) -> NameList {
        NameList {
            names: names.iter().map(|n| n.to_lowercase()).collect(),
            tables: vec![],
        }
    }

    /// The names written in the list (lower case).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tables the list names.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// True when the list has neither names nor tables.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.tables.is_empty()
    }

    /// True when `name` is written in the list (tables not consulted).
    pub fn contains_listed(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        let mut list = NameList::default();
        for it in items {
            match table_ref(&it).map_err(de::Error::custom)? {
                Some(t) => list.tables.push(t),
                None if it.trim().is_empty() => return Err(de::Error::custom("an empty name")),
                None => list.names.push(it.trim().to_lowercase()),
            }
        }
        Ok(list)
    }
}

/// A list of networks, `*` for all hosts, and `table:NAME` entries (CIDR
/// tables, or keyed tables of addresses): see `table::Tables::in_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList {
    all: bool,
    nets: Vec<Network>,
    tables: Vec<String>,
}

impl HostList {
    /// 127.0.0.0/8 and ::1.
    pub fn loopback() -> HostList {
        HostList {
            all: false,
            nets: vec![
                Network::parse("127.0.0.0/8").unwrap(),
                Network::parse("::1/128").unwrap(),
            ],
            tables: vec![],
        }
    }

    /// Every host.
    pub fn everyone() -> HostList {
        HostList {
            all: true,
            nets: vec![],
            tables: vec![],
        }
    }

    /// True when `ip` matches a network written in the list (its tables
    /// are not consulted: `table::Tables::in_hosts` does both).
    pub fn contains_listed(&self, ip: IpAddr) -> bool {
        self.all || self.nets.iter().any(|n| n.contains(ip))
    }

    /// The tables the list names.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }
}

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        let mut list = HostList::default();
        for it in items {
            if it.trim() == "*" {
                list.all = true;
            } else if let Some(t) = table_ref(&it).map_err(de::Error::custom)? {
                list.tables.push(t);
            } else {
                list.nets
                    .push(Network::parse(&it).map_err(de::Error::custom)?);
            }
        }
        Ok(list)
    }
}

/// Parse `host:port`, `[ip]:port`, `ip:port`, or a bare host (port 25).
pub fn parse_smarthost(s: &str) -> Result<(String, u16), InvalidValue> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("missing ]")?;
        ip.parse::<IpAddr>()
            .map_err(|_| format!("bad address {ip}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p}"))?,
            None if after.is_empty() => 25,
            None => return Err(format!("unexpected {after:?}").into()),
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
        return Err(format!("bad host name {host:?}").into());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let n6 = Network::parse("2001:db8::/32").unwrap();
        assert!(n6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!n6.contains("10.1.0.1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nonsense").is_err());
    }

    #[test]
    fn lists_take_table_entries() {
        let l: NameList = toml::from_str::<std::collections::BTreeMap<String, NameList>>(
            "l = [\"A.test\", \"table:doms\"]",
        )
        .unwrap()
        .remove("l")
        .unwrap();
        assert_eq!(l.names(), ["a.test"]);
        assert_eq!(l.tables(), ["doms"]);
        assert!(l.contains_listed("a.TEST"));
        let h: HostList = toml::from_str::<std::collections::BTreeMap<String, HostList>>(
            "l = [\"10.0.0.0/8\", \"table:nets\"]",
        )
        .unwrap()
        .remove("l")
        .unwrap();
        assert_eq!(h.tables(), ["nets"]);
        assert!(h.contains_listed("10.1.1.1".parse().unwrap()));
        let bad =
            toml::from_str::<std::collections::BTreeMap<String, NameList>>("l = [\"table:../x\"]")
                .unwrap_err();
        assert!(bad.to_string().contains("not a table name"), "{bad}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("7d"), Some(604800));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("m"), None);
    }

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
