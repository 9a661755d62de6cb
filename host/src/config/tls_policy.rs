//! `[outbound.tls_policy]`: how the client uses TLS towards a destination,
//! by level as Postfix's `smtp_tls_policy_maps` does.
//!
//! Keys are an exact domain (`example.com`), a parent domain for all its
//! subdomains (`.example.com`), or a smarthost (`[relay.example]:587`,
//! `[relay.example]` for any port). Values are a level name or a table
//! `{ level = "...", match = [...], ca_file = "...", implicit = true }`.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::path::PathBuf;

/// The TLS security level for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsLevel {
    /// Never use TLS.
    None,
    /// STARTTLS when offered, any certificate (opportunistic; a failed
    /// handshake retries in clear).
    May,
    /// TLS is mandatory, the certificate is not checked.
    Encrypt,
    /// Opportunistic DANE (RFC 7672): where the MX host has DNSSEC-secure
    /// TLSA records, TLS is mandatory and authenticated by them; otherwise
    /// as `may`.
    Dane,
    /// Mandatory DANE: a host without secure, usable TLSA records is not
    /// used.
    DaneOnly,
    /// Mandatory TLS with a certificate chain to a trusted CA naming the
    /// host (by default the MX host name, which insecure DNS can forge).
    Verify,
    /// Mandatory TLS with a certificate chain to a trusted CA naming the
    /// next-hop domain or a subdomain of it (by default), so DNS forgery
    /// cannot redirect the mail.
    Secure,
}

impl TlsLevel {
    /// The name used in the configuration and in logs.
    pub fn name(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
            TlsLevel::Dane => "dane",
            TlsLevel::DaneOnly => "dane-only",
            TlsLevel::Verify => "verify",
            TlsLevel::Secure => "secure",
        }
    }

    /// Whether certificates are checked against CAs at this level.
    pub fn pkix(self) -> bool {
        matches!(self, TlsLevel::Verify | TlsLevel::Secure)
    }
}

/// One destination's policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPolicy {
    /// The level.
    pub level: TlsLevel,
    /// For `verify` and `secure`: names the certificate must carry, each a
    /// literal host name, `.domain` (any name below it), `hostname` (the
    /// MX or smarthost name), `nexthop` (the recipient domain or the
    /// smarthost name) or `dot-nexthop` (below the next-hop domain).
    #[serde(default, rename = "match")]
    pub match_names: Vec<String>,
    /// For `verify` and `secure`: trust this CA file (PEM) instead of the
    /// system roots and `outbound.tls_ca_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS from the first byte (RFC 8314, a submission port like 465)
    /// instead of STARTTLS.
    #[serde(default)]
    pub implicit: bool,
}

impl TlsPolicy {
    /// A policy of just a level.
    pub fn level(level: TlsLevel) -> TlsPolicy {
        TlsPolicy {
            level,
            match_names: vec![],
            ca_file: None,
            implicit: false,
        }
    }

    /// The names a certificate must match at a PKIX level: the configured
    /// ones, or the level's default.
    pub fn names(&self) -> Vec<String> {
        if !self.match_names.is_empty() {
            return self.match_names.clone();
        }
        match self.level {
            TlsLevel::Secure => vec!["nexthop".into(), "dot-nexthop".into()],
            _ => vec!["hostname".into()],
        }
    }

    /// What is wrong with this entry, if anything.
    pub fn problem(&self) -> Option<String> {
        if !self.level.pkix() && (!self.match_names.is_empty() || self.ca_file.is_some()) {
            return Some(format!(
                "match and ca_file apply only to the verify and secure levels, not {}",
                self.level.name()
            ));
        }
        if self.implicit && self.level == TlsLevel::None {
            return Some("implicit TLS with level none".into());
        }
        if let Some(n) = self.match_names.iter().find(|n| {
            let n = n.trim_start_matches('.');
            n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == '@')
        }) {
            return Some(format!("match name {n:?} is not a host or domain name"));
        }
        if let Some(f) = &self.ca_file
            && !f.is_file()
        {
            return Some(format!("ca_file {} does not exist", f.display()));
        }
        None
    }
}

impl<'de> Deserialize<'de> for TlsPolicyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TlsPolicyValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TLS level (none, may, encrypt, dane, dane-only, verify, secure) or a table with `level`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TlsPolicyValue, E> {
                TlsLevel::deserialize(de::value::StrDeserializer::<E>::new(s))
                    .map(|l| TlsPolicyValue(TlsPolicy::level(l)))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<TlsPolicyValue, A::Error> {
                TlsPolicy::deserialize(de::value::MapAccessDeserializer::new(m)).map(TlsPolicyValue)
            }
        }
        d.deserialize_any(V)
    }
}

/// A policy as written: a level name or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicyValue(pub TlsPolicy);

/// Whether `key` is a valid table key; the reason if not.
pub fn key_problem(key: &str) -> Option<String> {
    let name = if let Some(rest) = key.strip_prefix('[') {
        let Some((host, port)) = rest.split_once(']') else {
            return Some(format!("{key:?}: a smarthost key is [host] or [host]:port"));
        };
        if !port.is_empty()
            && port
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .is_none()
        {
            return Some(format!("{key:?}: bad port after [host]"));
        }
        host
    } else {
        key.strip_prefix('.').unwrap_or(key)
    };
    if name.is_empty()
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains(|c: char| c.is_whitespace() || c == '@' || c == '*')
    {
        return Some(format!(
            "{key:?}: a key is a domain, .domain (its subdomains) or [host]:port"
        ));
    }
    None
}

/// The keys a destination's policy is looked up under, in order: the
/// smarthost's `[host]:port`, then `[host]`, then the recipient domain,
/// then each parent as `.parent` (lower case).
pub fn keys(domain: &str, smarthost: Option<(&str, u16)>) -> Vec<String> {
    let mut out = vec![];
    if let Some((host, port)) = smarthost {
        let host = host.trim_end_matches('.').to_lowercase();
        out.push(format!("[{host}]:{port}"));
        out.push(format!("[{host}]"));
    }
    let domain = domain.trim_end_matches('.').to_lowercase();
    let mut rest = domain.as_str();
    out.push(domain.clone());
    while let Some((_, parent)) = rest.split_once('.') {
        out.push(format!(".{parent}"));
        rest = parent;
    }
    out
}

/// The policy for a destination: the first of [`keys`] in `table`;
/// `default` when nothing matches. Names compare case-insensitively.
pub fn lookup<'a>(
    table: &'a std::collections::BTreeMap<String, TlsPolicyValue>,
    domain: &str,
    smarthost: Option<(&str, u16)>,
    default: &'a TlsPolicy,
) -> &'a TlsPolicy {
    keys(domain, smarthost)
        .iter()
        .find_map(|k| {
            table
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| &v.0)
        })
        .unwrap_or(default)
}

/// A policy as a lookup table writes it, in Postfix's
/// `smtp_tls_policy_maps` form: the level, then optional `match=NAME:NAME`
/// (names as in [`TlsPolicy::match_names`]), `ca_file=PATH` and
/// `implicit`, separated by white space.
pub fn parse_value(value: &str) -> Result<TlsPolicy, String> {
    let mut words = value.split_whitespace();
    let level = words.next().ok_or("an empty TLS policy")?;
    let level = TlsLevel::deserialize(de::value::StrDeserializer::<de::value::Error>::new(
        &level.to_ascii_lowercase(),
    ))
    .map_err(|_| {
        format!(
            "{level:?} is not a TLS level (none, may, encrypt, dane, dane-only, verify, secure)"
        )
    })?;
    let mut p = TlsPolicy::level(level);
    for w in words {
        if let Some(m) = w.strip_prefix("match=") {
            p.match_names
                .extend(m.split(':').filter(|n| !n.is_empty()).map(str::to_string));
        } else if let Some(f) = w.strip_prefix("ca_file=") {
            p.ca_file = Some(PathBuf::from(f));
        } else if w == "implicit" {
            p.implicit = true;
        } else {
            return Err(format!(
                "{w:?}: expected match=NAME:NAME, ca_file=PATH or implicit"
            ));
        }
    }
    match p.problem() {
        Some(why) => Err(why),
        None => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(entries: &[(&str, TlsLevel)]) -> BTreeMap<String, TlsPolicyValue> {
        entries
            .iter()
            .map(|(k, l)| (k.to_string(), TlsPolicyValue(TlsPolicy::level(*l))))
            .collect()
    }

    #[test]
    fn lookup_order() {
        let t = table(&[
            ("example.com", TlsLevel::DaneOnly),
            (".example.com", TlsLevel::Verify),
            (".com", TlsLevel::Encrypt),
            ("[relay.test]:587", TlsLevel::Secure),
            ("[relay.test]", TlsLevel::None),
        ]);
        let d = TlsPolicy::level(TlsLevel::Dane);
        let l = |dom: &str, sh: Option<(&str, u16)>| lookup(&t, dom, sh, &d).level;
        assert_eq!(l("Example.COM", None), TlsLevel::DaneOnly);
        assert_eq!(l("mx.sub.example.com", None), TlsLevel::Verify);
        assert_eq!(l("other.com", None), TlsLevel::Encrypt);
        assert_eq!(l("other.net", None), TlsLevel::Dane);
        assert_eq!(
            l("example.com", Some(("relay.test", 587))),
            TlsLevel::Secure
        );
        assert_eq!(l("example.com", Some(("relay.test", 25))), TlsLevel::None);
        assert_eq!(
            l("example.com", Some(("other.test", 25))),
            TlsLevel::DaneOnly
        );
    }

    #[test]
    fn table_values() {
        let p = parse_value("secure match=.example.com:nexthop").unwrap();
        assert_eq!(p.level, TlsLevel::Secure);
        assert_eq!(p.match_names, vec![".example.com", "nexthop"]);
        let p = parse_value("Encrypt implicit").unwrap();
        assert!(p.implicit && p.level == TlsLevel::Encrypt);
        assert!(
            parse_value("sometimes")
                .unwrap_err()
                .contains("not a TLS level")
        );
        assert!(
            parse_value("may match=x.test")
                .unwrap_err()
                .contains("apply only")
        );
        assert!(parse_value("verify colour=red").is_err());
        assert!(parse_value("").is_err());
        assert_eq!(
            super::keys("Mx.Example.com.", Some(("Relay.test", 587))),
            [
                "[relay.test]:587",
                "[relay.test]",
                "mx.example.com",
                ".example.com",
                ".com"
            ]
        );
    }

    #[test]
    fn keys() {
        for ok in [
            "example.com",
            ".example.com",
            "[relay.test]:587",
            "[relay.test]",
            "[10.0.0.1]:25",
        ] {
            assert_eq!(key_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "a b",
            "*.example.com",
            "[relay.test",
            "[relay.test]:x",
            "user@x",
            "x.",
        ] {
            assert!(key_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn values() {
        #[derive(Deserialize)]
        struct T {
            p: BTreeMap<String, TlsPolicyValue>,
        }
        let t: T = toml::from_str(
            "[p]\n\"a.test\" = \"dane-only\"\n\"b.test\" = { level = \"secure\", match = [\".b.test\"] }\n",
        )
        .unwrap();
        assert_eq!(t.p["a.test"].0, TlsPolicy::level(TlsLevel::DaneOnly));
        assert_eq!(t.p["b.test"].0.names(), vec![".b.test".to_string()]);
        assert_eq!(
            TlsPolicy::level(TlsLevel::Secure).names(),
            vec!["nexthop".to_string(), "dot-nexthop".to_string()]
        );
        let e = toml::from_str::<T>("[p]\n\"a.test\" = \"sometimes\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = toml::from_str::<T>("[p]\n\"a.test\" = { level = \"may\", colour = 1 }\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("colour"), "{e}");
        let p = TlsPolicy {
            match_names: vec!["x.test".into()],
            ..TlsPolicy::level(TlsLevel::Encrypt)
        };
        assert!(p.problem().is_some());
    }
}
