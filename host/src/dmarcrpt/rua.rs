//! `rua` destinations (RFC 7489 §6.2, §7.1): `mailto:` URIs with an
//! optional size limit (`!10m`), and the check that a destination outside
//! the policy domain agreed to receive its reports.

/// One destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rua {
    /// The mailbox.
    pub address: String,
    /// The largest report it takes, in octets (of the gzipped report).
    pub limit: Option<u64>,
}

impl Rua {
    /// The address's domain, lowercased.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map_or(String::new(), |(_, d)| d.to_ascii_lowercase())
    }
}

/// The `mailto:` destinations of a `rua` list; other schemes and
/// unusable URIs are left out (their reasons are returned).
pub fn parse(uris: &[String]) -> (Vec<Rua>, Vec<String>) {
    let (mut out, mut bad) = (vec![], vec![]);
    for u in uris {
        let u = u.trim();
        let Some(rest) = u
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("mailto:"))
            .map(|_| &u[7..])
        else {
            bad.push(format!("{u}: only mailto: destinations are used"));
            continue;
        };
        let (addr, limit) = match rest.rsplit_once('!') {
            Some((a, l)) => match size(l) {
                Some(n) => (a, Some(n)),
                None => {
                    bad.push(format!("{u}: bad size limit {l:?}"));
                    continue;
                }
            },
            None => (rest, None),
        };
        let addr = crate::smtp::command::unescape_hex(addr, b'%');
        match addr.rsplit_once('@') {
            Some((l, d))
                if !l.is_empty() && d.contains('.') && !addr.contains(['<', '>', ',', ' ']) =>
            {
                out.push(Rua {
                    address: addr.clone(),
                    limit,
                })
            }
            _ => bad.push(format!("{u}: not a mail address")),
        }
    }
    (out, bad)
}

fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = num.parse().ok()?;
    let m: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(m)
}

/// The name whose TXT record must say `v=DMARC1` before reports for
/// `policy_domain` go to a mailbox at `dest_domain`; none when the
/// destination is the policy domain or under it (RFC 7489 §7.1; without a
/// public suffix list in the host, every other destination is checked,
/// which is at worst one lookup too many).
pub fn verification_name(policy_domain: &str, dest_domain: &str) -> Option<String> {
    let p = policy_domain.trim_end_matches('.').to_ascii_lowercase();
    let d = dest_domain.trim_end_matches('.').to_ascii_lowercase();
    if d == p || d.ends_with(&format!(".{p}")) {
        return None;
    }
    Some(format!("{p}._report._dmarc.{d}"))
}

/// Whether the TXT records at the verification name agree.
pub fn agrees(txts: &[String]) -> bool {
    txts.iter().any(|t| {
        t.trim_start()
            .strip_prefix("v=DMARC1")
            .is_some_and(|r| r.trim_start().is_empty() || r.trim_start().starts_with(';'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_limits_and_verification() {
        let (ok, bad) = parse(&[
            "mailto:rua@example.com!10m".into(),
            "MAILTO:a%40b@x.test".into(),
            "https://example.com/rua".into(),
            "mailto:x@y.test!10q".into(),
            "mailto:nobody".into(),
        ]);
        assert_eq!(
            ok,
            [
                Rua {
                    address: "rua@example.com".into(),
                    limit: Some(10 << 20)
                },
                Rua {
                    address: "a@b@x.test".into(),
                    limit: None
                }
            ]
        );
        assert_eq!(bad.len(), 3);
        assert_eq!(verification_name("example.com", "Example.COM"), None);
        assert_eq!(
            verification_name("example.com", "reports.example.com"),
            None
        );
        assert_eq!(
            verification_name("example.com", "thirdparty.test").as_deref(),
            Some("example.com._report._dmarc.thirdparty.test")
        );
        assert!(agrees(&["v=DMARC1".into()]));
        assert!(agrees(&["v=DMARC1; rua=mailto:x@y".into()]));
        assert!(!agrees(&["v=DMARC2".into(), "hello".into()]));
    }
}
