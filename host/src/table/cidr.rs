//! The in-memory index of a CIDR table: for each prefix length present, a
//! hash of the masked networks, so that a lookup costs one probe per
//! prefix length (at most 33 for IPv4, 129 for IPv6) whatever the table's
//! size, and still returns the first matching entry in source order.

use crate::config::Network;
use std::collections::HashMap;
use std::net::IpAddr;

/// Networks and their values, searched as the source lists them.
#[derive(Debug, Default)]
pub struct CidrIndex {
    v4: Vec<(u8, HashMap<u32, usize>)>,
    v6: Vec<(u8, HashMap<u128, usize>)>,
    values: Vec<String>,
}

fn mask4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - prefix))
    }
}

fn mask6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - prefix))
    }
}

impl CidrIndex {
    /// Add the next entry in source order (an earlier entry for the same
    /// network stays first).
    pub fn push(&mut self, net: Network, value: String) {
        let idx = self.values.len();
        self.values.push(value);
        match net.addr() {
            IpAddr::V4(a) => {
                let p = net.prefix();
                let m = mask4(u32::from(a), p);
                let slot = match self.v4.iter().position(|(q, _)| *q == p) {
                    Some(i) => i,
                    None => {
                        self.v4.push((p, HashMap::new()));
                        self.v4.len() - 1
                    }
                };
                self.v4[slot].1.entry(m).or_insert(idx);
            }
            IpAddr::V6(a) => {
                let p = net.prefix();
                let m = mask6(u128::from(a), p);
                let slot = match self.v6.iter().position(|(q, _)| *q == p) {
                    Some(i) => i,
                    None => {
                        self.v6.push((p, HashMap::new()));
                        self.v6.len() - 1
                    }
                };
                self.v6[slot].1.entry(m).or_insert(idx);
            }
        }
    }

    /// The value of the first entry (in source order) whose network holds
    /// `ip`; IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn get(&self, ip: IpAddr) -> Option<&str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let best = match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .filter_map(|(p, m)| m.get(&mask4(a, *p)).copied())
                    .min()
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .filter_map(|(p, m)| m.get(&mask6(a, *p)).copied())
                    .min()
            }
        };
        best.map(|i| self.values[i].as_str())
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str)]) -> CidrIndex {
        let mut i = CidrIndex::default();
        for (n, v) in entries {
            i.push(Network::parse(n).unwrap(), v.to_string());
        }
        i
    }

    #[test]
    fn the_first_match_in_source_order_wins() {
        let i = index(&[
            ("192.0.2.7", "host"),
            ("192.0.2.0/24", "net"),
            ("192.0.0.0/16", "wide"),
            ("192.0.2.0/25", "later, never first"),
            ("2001:db8::/32", "six"),
            ("0.0.0.0/0", "default"),
        ]);
        let g = |s: &str| i.get(s.parse().unwrap());
        assert_eq!(g("192.0.2.7"), Some("host"));
        assert_eq!(g("192.0.2.8"), Some("net"));
        assert_eq!(g("192.0.9.1"), Some("wide"));
        assert_eq!(g("10.0.0.1"), Some("default"));
        assert_eq!(g("::ffff:192.0.2.7"), Some("host"));
        assert_eq!(g("2001:db8:1::5"), Some("six"));
        assert_eq!(g("2001:db9::1"), None);
        assert_eq!(i.len(), 6);
    }

    #[test]
    fn host_bits_in_a_network_are_ignored() {
        let i = index(&[("10.1.2.3/8", "ten")]);
        assert_eq!(i.get("10.200.0.1".parse().unwrap()), Some("ten"));
    }
}
