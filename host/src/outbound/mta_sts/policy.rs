//! MTA-STS texts (RFC 8461): the `_mta-sts` TXT record and the policy file,
//! parsed strictly, and the MX host patterns matched as §4.1 says.

/// A policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only to matching MX hosts with a valid certificate.
    Enforce,
    /// Deliver anyway; report failures.
    Testing,
    /// No policy (a domain withdrawing one).
    None,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// MX patterns (`mx.example.com`, `*.example.net`), lower case.
    pub mx: Vec<String>,
    /// Seconds it may be cached.
    pub max_age: u64,
}

/// Why a text is not a valid policy or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// The largest max_age RFC 8461 §3.2 allows (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The `id` of an `_mta-sts` TXT record (`v=STSv1; id=...`), or why it is
/// not one. Several records are an error (§3.1).
pub fn record_id(txts: &[String]) -> Result<Option<String>, PolicyError> {
    let sts: Vec<&String> = txts
        .iter()
        .filter(|t| t.trim_start().starts_with("v=STSv1"))
        .collect();
    match sts.as_slice() {
        [] => Ok(None),
        [one] => {
            let mut id = None;
            for field in one.split(';') {
                let field = field.trim();
                if let Some(v) = field.strip_prefix("id=") {
                    if v.is_empty() || v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric())
                    {
                        return Err(PolicyError(format!("bad id {v:?} in the _mta-sts record")));
                    }
                    id = Some(v.to_string());
                }
            }
            id.map(Some)
                .ok_or_else(|| PolicyError("the _mta-sts record has no id".into()))
        }
        _ => Err(PolicyError("more than one _mta-sts record".into())),
    }
}

/// Parse a policy file (§3.2): `key: value` lines, CRLF or LF; version,
/// mode and max_age exactly once, at least one mx unless the mode is none.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let bad = |s: String| Err(PolicyError(s));
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return bad(format!("policy line without a colon: {line:?}"));
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "version" if version.is_none() => version = Some(v.to_string()),
            "mode" if mode.is_none() => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => return bad(format!("unknown mode {v:?}")),
                })
            }
            "max_age" if max_age.is_none() => {
                let n: u64 = match v.parse() {
                    Ok(n) if v.len() <= 10 && v.chars().all(|c| c.is_ascii_digit()) => n,
                    _ => return bad(format!("bad max_age {v:?}")),
                };
                max_age = Some(n.min(MAX_AGE_LIMIT));
            }
            "mx" => {
                let p = v.to_ascii_lowercase();
                let name = p.strip_prefix("*.").unwrap_or(&p);
                if name.is_empty()
                    || name.contains('*')
                    || !name.split('.').all(|l| {
                        !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
                {
                    return bad(format!("bad mx pattern {v:?}"));
                }
                mx.push(p);
            }
            "version" | "mode" | "max_age" => return bad(format!("{k} given twice")),
            // §3.2: unknown keys are ignored.
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return bad("version is not STSv1".into());
    }
    let mode = mode.ok_or_else(|| PolicyError("no mode".into()))?;
    let max_age = max_age.ok_or_else(|| PolicyError("no max_age".into()))?;
    if mx.is_empty() && mode != Mode::None {
        return bad("no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

impl Policy {
    /// The policy as the lines of its file (for TLS reports'
    /// `policy-string`, RFC 8460 §4.4): version, mode, each `mx`, max_age.
    pub fn lines(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        };
        let mut v = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
        v.extend(self.mx.iter().map(|m| format!("mx: {m}")));
        v.push(format!("max_age: {}", self.max_age));
        v
    }

    /// Whether MX host `host` matches a pattern (§4.1: exact, or `*.`
    /// for exactly one leftmost label).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => *p == host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = |v: &[&str]| record_id(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            r(&["v=STSv1; id=20261201T1"]),
            Ok(Some("20261201T1".into()))
        );
        assert_eq!(r(&["v=spf1 -all"]), Ok(None));
        assert!(r(&["v=STSv1; id=a", "v=STSv1; id=b"]).is_err());
        assert!(r(&["v=STSv1;"]).is_err());
        assert!(r(&["v=STSv1; id=bad-id"]).is_err());
    }

    #[test]
    fn policies() {
        let p = parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nextension: ignored\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.matches("MAIL.example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("a.b.example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("evil-example.com"));
        assert_eq!(
            parse("version: STSv1\nmode: none\nmax_age: 99999999999\n")
                .map(|p| p.max_age)
                .ok(),
            None
        );
        assert_eq!(
            parse("version: STSv1\nmode: none\nmax_age: 99999999\n")
                .unwrap()
                .max_age,
            MAX_AGE_LIMIT
        );
        for bad in [
            "mode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: sometimes\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\n",
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
            "<html>not a policy</html>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
