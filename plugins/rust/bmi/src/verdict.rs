//! Verdicts as Brightmail's BMI had them, free of I/O: each covers a set
//! of recipients and says deliver normally, deliver to an alternate
//! location, or do not deliver, with the rules that fired and an opaque
//! string for the recipients' copies. They travel with the message in
//! one spool variable (`bmi.verdicts`, JSON) from the data hook to the
//! route hook; one that cannot be decoded means deliver normally.

use crate::spamd::Scan;
use serde::{Deserialize, Serialize};

/// The spool variable that holds the verdicts.
pub const VAR: &str = "bmi.verdicts";

/// What happens to a recipient's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Deliver normally (`bmi_deliver_default`).
    Deliver,
    /// Deliver to the profile's alternate address (`bmi_deliver_alternate`).
    Alternate,
    /// Do not deliver (`bmi_dont_deliver`).
    Drop,
}

impl Disposition {
    /// The lower-case name used in config, logs and the header.
    pub fn name(self) -> &'static str {
        match self {
            Disposition::Deliver => "deliver",
            Disposition::Alternate => "alternate",
            Disposition::Drop => "drop",
        }
    }
}

/// A profile: how a recipient who opted in wants spamd's answer used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The spamd user whose preferences (`required_score`, rules) apply;
    /// the profile's name when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// What a message spamd calls spam (score at or over the user's
    /// `required_score`) gets.
    #[serde(default = "deliver")]
    pub spam: Disposition,
    /// At or over this score a message is dropped whatever `spam` says.
    #[serde(default)]
    pub drop_score: Option<f64>,
    /// The alternate location: an address template with `{local}`,
    /// `{domain}` and `{address}` for the recipient's (e.g.
    /// `{local}+spam@{domain}`, or `{address}` at a quarantine domain the
    /// routes table sends to another host).
    #[serde(default)]
    pub alternate: Option<String>,
}

fn deliver() -> Disposition {
    Disposition::Deliver
}

impl Profile {
    /// Check the profile named `name`.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let user = self.user.as_deref().unwrap_or(name);
        if !crate::spamd::user_ok(user) {
            return Err(format!("profile {name}: {user:?} is not a spamd user name"));
        }
        if let Some(s) = self.drop_score
            && !s.is_finite()
        {
            return Err(format!("profile {name}: drop_score must be a number"));
        }
        match &self.alternate {
            Some(t) if !t.contains('@') || t.contains(['<', '>', '\r', '\n', ' ']) => Err(format!(
                "profile {name}: alternate {t:?} is not an address template"
            )),
            None if self.spam == Disposition::Alternate => Err(format!(
                "profile {name}: spam = \"alternate\" needs an alternate address"
            )),
            _ => Ok(()),
        }
    }

    /// The disposition for a scan.
    pub fn decide(&self, scan: &Scan) -> Disposition {
        if self.drop_score.is_some_and(|d| scan.score >= d) {
            Disposition::Drop
        } else if scan.spam {
            self.spam
        } else {
            Disposition::Deliver
        }
    }
}

/// One verdict and the recipients it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The recipients, as the client gave them.
    pub rcpts: Vec<String>,
    /// The profile they share.
    pub profile: String,
    /// What their copies get.
    pub disposition: Disposition,
    /// The alternate address template (for `alternate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
    /// Score and threshold; none when the message was not scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<(f64, f64)>,
    /// The rules that fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Why there is no score (spamd down, message too large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscanned: Option<String>,
}

/// The most octets of rule names in a verdict string.
const MAX_RULES: usize = 1000;

impl Verdict {
    /// The verdict of a scan for `rcpts` under `profile`.
    pub fn scanned(rcpts: Vec<String>, name: &str, profile: &Profile, scan: &Scan) -> Verdict {
        Verdict {
            rcpts,
            profile: name.to_string(),
            disposition: profile.decide(scan),
            alternate: profile.alternate.clone(),
            score: Some((scan.score, scan.required)),
            rules: scan.rules.clone(),
            unscanned: None,
        }
    }

    /// Deliver normally: the scan could not be made (`why`).
    pub fn unscanned(rcpts: Vec<String>, name: &str, why: &str) -> Verdict {
        Verdict {
            rcpts,
            profile: name.to_string(),
            disposition: Disposition::Deliver,
            alternate: None,
            score: None,
            rules: Vec::new(),
            unscanned: Some(why.to_string()),
        }
    }

    /// The opaque verdict string each recipient's copy carries, e.g.
    /// `drop; profile=strict; score=1000.0; required=6.0; rules=GTUBE`.
    pub fn text(&self) -> String {
        let mut s = format!("{}; profile={}", self.disposition.name(), self.profile);
        if let Some((score, required)) = self.score {
            s.push_str(&format!("; score={score:.1}; required={required:.1}"));
        }
        if !self.rules.is_empty() {
            let mut rules = String::new();
            for r in &self.rules {
                if rules.len() + r.len() + 1 > MAX_RULES {
                    rules.push_str(",...");
                    break;
                }
                if !rules.is_empty() {
                    rules.push(',');
                }
                rules.push_str(r);
            }
            s.push_str(&format!("; rules={rules}"));
        }
        if let Some(w) = &self.unscanned {
            s.push_str(&format!("; unscanned ({w})"));
        }
        s.replace(['\r', '\n'], " ")
    }

    /// The alternate address for `rcpt` (the address being routed).
    pub fn alternate_for(&self, rcpt: &str) -> Option<String> {
        let t = self.alternate.as_deref()?;
        let (local, domain) = rcpt.rsplit_once('@').unwrap_or((rcpt, ""));
        Some(
            t.replace("{address}", rcpt)
                .replace("{local}", local)
                .replace("{domain}", domain),
        )
    }
}

/// Encode verdicts for the spool variable.
pub fn encode(v: &[Verdict]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Decode the spool variable.
pub fn decode(s: &str) -> Result<Vec<Verdict>, String> {
    serde_json::from_str(s).map_err(|e| e.to_string())
}

/// The verdict covering `rcpt` (compared without case, as BMI did).
pub fn find<'a>(verdicts: &'a [Verdict], rcpt: &str) -> Option<&'a Verdict> {
    verdicts
        .iter()
        .find(|v| v.rcpts.iter().any(|r| r.eq_ignore_ascii_case(rcpt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(score: f64, required: f64) -> Scan {
        Scan {
            spam: score >= required,
            score,
            required,
            rules: vec!["GTUBE".into(), "NO_RELAYS".into()],
        }
    }

    fn profile(spam: Disposition, drop: Option<f64>, alt: Option<&str>) -> Profile {
        Profile {
            user: None,
            spam,
            drop_score: drop,
            alternate: alt.map(str::to_string),
        }
    }

    #[test]
    fn dispositions_follow_the_profile() {
        let p = profile(
            Disposition::Alternate,
            Some(50.0),
            Some("{local}+spam@{domain}"),
        );
        assert_eq!(p.decide(&scan(1.0, 5.0)), Disposition::Deliver);
        assert_eq!(p.decide(&scan(6.0, 5.0)), Disposition::Alternate);
        assert_eq!(p.decide(&scan(1000.0, 5.0)), Disposition::Drop);
        let p = profile(Disposition::Drop, None, None);
        assert_eq!(p.decide(&scan(6.0, 5.0)), Disposition::Drop);
        // A drop score below the user's threshold still drops.
        let p = profile(Disposition::Deliver, Some(3.0), None);
        assert_eq!(p.decide(&scan(4.0, 5.0)), Disposition::Drop);
    }

    #[test]
    fn profiles_are_checked() {
        assert!(
            profile(Disposition::Alternate, None, None)
                .check("p")
                .is_err()
        );
        assert!(
            profile(Disposition::Deliver, None, Some("spam"))
                .check("p")
                .is_err()
        );
        assert!(
            profile(Disposition::Deliver, Some(f64::NAN), None)
                .check("p")
                .is_err()
        );
        assert!(profile(Disposition::Drop, None, None).check("p").is_ok());
        assert!(profile(Disposition::Drop, None, None).check("a b").is_err());
    }

    #[test]
    fn verdicts_round_trip_and_match_without_case() {
        let p = profile(Disposition::Alternate, None, Some("{local}+spam@{domain}"));
        let v = vec![
            Verdict::scanned(
                vec!["Bob@Example.org".into()],
                "lenient",
                &p,
                &scan(1000.0, 12.0),
            ),
            Verdict::unscanned(vec!["eve@example.org".into()], "strict", "spamd: timed out"),
        ];
        let back = decode(&encode(&v)).unwrap();
        assert_eq!(back, v);
        let b = find(&back, "bob@example.org").unwrap();
        assert_eq!(b.disposition, Disposition::Alternate);
        assert_eq!(
            b.alternate_for("bob@example.org").as_deref(),
            Some("bob+spam@example.org")
        );
        assert_eq!(
            b.text(),
            "alternate; profile=lenient; score=1000.0; required=12.0; rules=GTUBE,NO_RELAYS"
        );
        assert_eq!(
            find(&back, "eve@example.org").unwrap().text(),
            "deliver; profile=strict; unscanned (spamd: timed out)"
        );
        assert!(find(&back, "nobody@example.org").is_none());
        assert!(decode("[{\"garbage\":1}]").is_err());
        assert!(decode("not json").is_err());
    }

    #[test]
    fn long_rule_lists_are_cut() {
        let mut s = scan(10.0, 5.0);
        s.rules = (0..500).map(|i| format!("RULE_{i}")).collect();
        let v = Verdict::scanned(vec![], "p", &profile(Disposition::Drop, None, None), &s);
        let t = v.text();
        assert!(t.len() < 1100, "{}", t.len());
        assert!(t.ends_with(",..."));
    }
}
