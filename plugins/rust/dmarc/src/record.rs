//! The DMARC policy record (RFC 7489 §6.3, with DMARCbis `np` and `psd`):
//! `v=DMARC1` first, then tags separated by `;`. Unknown tags are ignored;
//! a bad `p` makes the record unusable unless it has a `rua`, when it is
//! taken as `p=none` (§6.6.3).

/// What the domain owner asks for mail that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Deliver as usual (monitoring).
    None,
    /// Treat as suspicious: our quarantine.
    Quarantine,
    /// Refuse at end of data.
    Reject,
}

impl Policy {
    /// The tag value.
    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    fn parse(v: &str) -> Option<Policy> {
        match v.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// The next milder policy: what a message not sampled by `pct` gets
    /// (§6.6.4).
    pub fn milder(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `p`: for the domain itself.
    pub p: Policy,
    /// `sp`: for its subdomains (default `p`).
    pub sp: Option<Policy>,
    /// `np`: for subdomains that do not exist (DMARCbis; default `sp`).
    pub np: Option<Policy>,
    /// `pct`: the share of failing mail the policy applies to.
    pub pct: u8,
    /// `adkim=s`: DKIM alignment strict.
    pub strict_dkim: bool,
    /// `aspf=s`: SPF alignment strict.
    pub strict_spf: bool,
    /// `rua`: where aggregate reports go (URIs as given).
    pub rua: Vec<String>,
    /// `psd=y`: the record is a public suffix operator's (DMARCbis).
    pub psd: bool,
}

impl Record {
    /// The policy as the aggregate report publishes it: `p=..; sp=..;
    /// np=..; adkim=..; aspf=..; pct=..` (defaults filled in).
    pub fn published(&self) -> String {
        let sp = self.sp.unwrap_or(self.p);
        let mut s = format!("p={}; sp={}", self.p.name(), sp.name());
        if let Some(np) = self.np {
            s.push_str(&format!("; np={}", np.name()));
        }
        let mode = |strict: bool| if strict { "s" } else { "r" };
        s.push_str(&format!(
            "; adkim={}; aspf={}; pct={}",
            mode(self.strict_dkim),
            mode(self.strict_spf),
            self.pct
        ));
        s
    }
}

/// Parse one TXT record's text; `None` when it is not a DMARC record
/// (the caller ignores those) or unusable.
pub fn parse(text: &str) -> Option<Record> {
    let mut tags = text.split(';').map(str::trim).filter(|t| !t.is_empty());
    let first = tags.next()?;
    let (k, v) = first.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("v") || v.trim() != "DMARC1" {
        return None;
    }
    let mut p: Option<Option<Policy>> = None;
    let mut r = Record {
        p: Policy::None,
        sp: None,
        np: None,
        pct: 100,
        strict_dkim: false,
        strict_spf: false,
        rua: vec![],
        psd: false,
    };
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "p" => p = Some(Policy::parse(v)),
            "sp" => r.sp = Policy::parse(v),
            "np" => r.np = Policy::parse(v),
            "pct" => {
                if let Ok(n) = v.parse::<u32>() {
                    r.pct = n.min(100) as u8;
                }
            }
            "adkim" => r.strict_dkim = v.eq_ignore_ascii_case("s"),
            "aspf" => r.strict_spf = v.eq_ignore_ascii_case("s"),
            "rua" => {
                r.rua = v
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect()
            }
            "psd" => r.psd = v.eq_ignore_ascii_case("y"),
            _ => {}
        }
    }
    match p {
        Some(Some(p)) => r.p = p,
        // No valid p: usable as p=none only when there is a rua.
        _ if !r.rua.is_empty() => r.p = Policy::None,
        _ => return None,
    }
    Some(r)
}

/// The one DMARC record among a name's TXT records: none when there is
/// none or more than one (§6.6.3 step 5).
pub fn pick(texts: &[String]) -> Option<Record> {
    let dmarc: Vec<&String> = texts
        .iter()
        .filter(|t| {
            t.trim_start()
                .get(..8)
                .is_some_and(|h| h.eq_ignore_ascii_case("v=DMARC1"))
        })
        .collect();
    match dmarc.as_slice() {
        [one] => parse(one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_record() {
        let r = parse("v=DMARC1; p=reject; sp=quarantine; np=reject; pct=50; adkim=s; aspf=r; rua=mailto:a@x.test, mailto:b@y.test; psd=n").unwrap();
        assert_eq!(r.p, Policy::Reject);
        assert_eq!(r.sp, Some(Policy::Quarantine));
        assert_eq!(r.np, Some(Policy::Reject));
        assert_eq!(r.pct, 50);
        assert!(r.strict_dkim && !r.strict_spf && !r.psd);
        assert_eq!(r.rua, vec!["mailto:a@x.test", "mailto:b@y.test"]);
        assert_eq!(
            r.published(),
            "p=reject; sp=quarantine; np=reject; adkim=s; aspf=r; pct=50"
        );
        // Defaults are spelled out for the report.
        assert_eq!(
            parse("v=DMARC1; p=none").unwrap().published(),
            "p=none; sp=none; adkim=r; aspf=r; pct=100"
        );
    }

    #[test]
    fn v_first_and_p_rules() {
        assert!(parse("p=reject; v=DMARC1").is_none());
        assert!(parse("v=DMARC2; p=reject").is_none());
        assert!(parse("v=DMARC1").is_none());
        assert!(parse("v=DMARC1; p=bogus").is_none());
        let r = parse("v=DMARC1; p=bogus; rua=mailto:r@x.test").unwrap();
        assert_eq!(r.p, Policy::None);
        assert_eq!(parse("v=DMARC1;p=none;pct=300").unwrap().pct, 100);
        assert_eq!(Policy::Reject.milder(), Policy::Quarantine);
        assert_eq!(Policy::Quarantine.milder(), Policy::None);
    }

    #[test]
    fn exactly_one() {
        let one = vec!["v=spf1 -all".to_string(), "v=DMARC1; p=none".to_string()];
        assert!(pick(&one).is_some());
        let two = vec![
            "v=DMARC1; p=none".to_string(),
            "v=DMARC1; p=reject".to_string(),
        ];
        assert!(pick(&two).is_none());
        assert!(pick(&[]).is_none());
    }
}
