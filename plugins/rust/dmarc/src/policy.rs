//! DMARC evaluation without I/O: DNS comes through [`Dns`], so the rules
//! are tested natively.
//!
//! - Policy discovery (RFC 7489 §6.6.3): `_dmarc.<From domain>`, else the
//!   record of its Organizational Domain (public suffix list), whose `sp`
//!   (or `np` for a subdomain that does not exist, DMARCbis) applies.
//!   Without a list, the DMARCbis tree walk: the first record found going
//!   up from the From domain (at most 8 labels deep) is the policy, and
//!   the Organizational Domain is the highest domain on the way with a
//!   record (`psd=y` marks a public suffix's record: its child is it).
//! - Identifier alignment (§3.1): the SPF-authenticated MAIL FROM domain
//!   and each passing DKIM `d=` against the From domain, strict (equal) or
//!   relaxed (same Organizational Domain).
//! - Disposition: the requested policy for failing mail, or the next
//!   milder one for mail `pct` does not sample (§6.6.4).

use crate::psl::Psl;
use crate::record::{self, Policy, Record};

/// DNS as DMARC needs it.
pub trait Dns {
    /// The texts of `name`'s TXT records; empty when it has none.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, String>;
    /// Whether `name` exists (has A, AAAA or MX records).
    fn exists(&mut self, name: &str) -> Result<bool, String>;
}

/// The DMARC result (RFC 8601 §2.7.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Aligned SPF or DKIM passed.
    Pass,
    /// The domain has a policy and nothing aligned passed.
    Fail,
    /// No policy published.
    None,
    /// DNS failed while looking for the policy.
    TempError,
    /// The message has no single From domain.
    PermError,
}

impl Outcome {
    /// The A-R result word.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

/// What the host's checks say about a message.
#[derive(Debug, Default, Clone)]
pub struct Authenticated {
    /// The MAIL FROM (or HELO, for `<>`) domain when SPF passed for it.
    pub spf_pass: Option<String>,
    /// Every `d=` whose signature passed.
    pub dkim_pass: Vec<String>,
}

/// The evaluation of one message.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The From domain.
    pub from: String,
    /// The result.
    pub outcome: Outcome,
    /// The record that applied and where it was found.
    pub record: Option<(String, Record)>,
    /// The policy the domain asks for this message (`p`, `sp` or `np`).
    pub requested: Policy,
    /// SPF aligned and passed.
    pub spf_aligned: bool,
    /// A DKIM signature aligned and passed.
    pub dkim_aligned: bool,
    /// Why it is temperror or permerror.
    pub reason: Option<String>,
}

/// Policy discovery and Organizational Domains, with or without a list.
pub struct Discovery<'a, D: Dns> {
    /// The resolver.
    pub dns: &'a mut D,
    /// The public suffix list; none for the tree walk.
    pub psl: Option<&'a Psl>,
}

/// Deepest name the tree walk starts from (DMARCbis §4.10.1).
const MAX_WALK_LABELS: usize = 8;

impl<D: Dns> Discovery<'_, D> {
    fn record_at(&mut self, domain: &str) -> Result<Option<Record>, String> {
        let texts = self.dns.txt(&format!("_dmarc.{domain}"))?;
        Ok(record::pick(&texts))
    }

    /// The names the tree walk asks about, from `domain` up, the
    /// top-level domain excluded.
    fn walk(domain: &str) -> Vec<String> {
        let labels: Vec<&str> = domain.split('.').collect();
        let mut out = vec![domain.to_string()];
        // Deeper than 8 labels: go straight to the last 7.
        let start = if labels.len() > MAX_WALK_LABELS {
            labels.len() - (MAX_WALK_LABELS - 1)
        } else {
            1
        };
        for i in start..labels.len().saturating_sub(1) {
            out.push(labels[i..].join("."));
        }
        out
    }

    /// The Organizational Domain of `domain`.
    pub fn org_domain(&mut self, domain: &str) -> Result<String, String> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(p) = self.psl {
            return Ok(p.org_domain(&d));
        }
        let path = Self::walk(&d);
        let mut org: Option<String> = None;
        // From the top down: the highest name with a record, or the child
        // of a public suffix's record.
        for (i, name) in path.iter().enumerate().rev() {
            if let Some(r) = self.record_at(name)? {
                if r.psd {
                    if i > 0 {
                        return Ok(path[i - 1].clone());
                    }
                    continue;
                }
                org = Some(name.clone());
                break;
            }
        }
        Ok(org.unwrap_or(d))
    }

    /// The policy record for mail from `from`: (where, record, found at
    /// `from` itself).
    fn policy(&mut self, from: &str) -> Result<Option<(String, Record, bool)>, String> {
        if let Some(r) = self.record_at(from)? {
            return Ok(Some((from.to_string(), r, true)));
        }
        if self.psl.is_some() {
            let org = self.org_domain(from)?;
            if org != from
                && let Some(r) = self.record_at(&org)?
            {
                return Ok(Some((org, r, false)));
            }
            return Ok(None);
        }
        for name in Self::walk(from).into_iter().skip(1) {
            if let Some(r) = self.record_at(&name)? {
                return Ok(Some((name, r, false)));
            }
        }
        Ok(None)
    }

    fn aligned(&mut self, id: &str, from: &str, strict: bool) -> Result<bool, String> {
        let id = id.trim_end_matches('.').to_ascii_lowercase();
        if id == from {
            return Ok(true);
        }
        if strict {
            return Ok(false);
        }
        Ok(self.org_domain(&id)? == self.org_domain(from)?)
    }

    /// Evaluate a message from `from` (the From domain; none when the
    /// message has no single one) with what the host authenticated.
    pub fn evaluate(&mut self, from: Option<&str>, auth: &Authenticated) -> Evaluation {
        let Some(from) = from.map(|f| f.trim_end_matches('.').to_ascii_lowercase()) else {
            return Evaluation {
                from: String::new(),
                outcome: Outcome::PermError,
                record: None,
                requested: Policy::None,
                spf_aligned: false,
                dkim_aligned: false,
                reason: Some("no single From domain".into()),
            };
        };
        let mut e = Evaluation {
            from: from.clone(),
            outcome: Outcome::None,
            record: None,
            requested: Policy::None,
            spf_aligned: false,
            dkim_aligned: false,
            reason: None,
        };
        let found = match self.policy(&from) {
            Ok(f) => f,
            Err(why) => {
                e.outcome = Outcome::TempError;
                e.reason = Some(why);
                return e;
            }
        };
        let Some((at, r, own)) = found else {
            return e;
        };
        let check = |d: &mut Self| -> Result<(bool, bool), String> {
            let spf = match &auth.spf_pass {
                Some(s) => d.aligned(s, &from, r.strict_spf)?,
                None => false,
            };
            let mut dkim = false;
            for s in &auth.dkim_pass {
                if d.aligned(s, &from, r.strict_dkim)? {
                    dkim = true;
                    break;
                }
            }
            Ok((spf, dkim))
        };
        match check(self) {
            Ok((spf, dkim)) => {
                e.spf_aligned = spf;
                e.dkim_aligned = dkim;
            }
            Err(why) => {
                e.outcome = Outcome::TempError;
                e.reason = Some(why);
                e.record = Some((at, r));
                return e;
            }
        }
        e.requested = if own {
            r.p
        } else {
            let sub = r.sp.unwrap_or(r.p);
            match r.np {
                Some(np) => match self.dns.exists(&from) {
                    Ok(false) => np,
                    Ok(true) => sub,
                    // Whether it exists is unknown: the subdomain policy.
                    Err(_) => sub,
                },
                None => sub,
            }
        };
        e.outcome = if e.spf_aligned || e.dkim_aligned {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        e.record = Some((at, r));
        e
    }
}

/// The disposition of a failing message: the requested policy when the
/// sample (0..=99) falls within `pct`, else the next milder one.
pub fn disposition(e: &Evaluation, sample: u8) -> Policy {
    if e.outcome != Outcome::Fail {
        return Policy::None;
    }
    let pct = e.record.as_ref().map_or(100, |(_, r)| r.pct);
    if sample < pct {
        e.requested
    } else {
        e.requested.milder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Zone {
        txt: HashMap<String, Vec<String>>,
        hosts: Vec<String>,
        fail: Vec<String>,
        asked: Vec<String>,
    }

    impl Dns for Zone {
        fn txt(&mut self, name: &str) -> Result<Vec<String>, String> {
            self.asked.push(name.to_string());
            if self.fail.iter().any(|f| f == name) {
                return Err(format!("{name}: SERVFAIL"));
            }
            Ok(self.txt.get(name).cloned().unwrap_or_default())
        }
        fn exists(&mut self, name: &str) -> Result<bool, String> {
            Ok(self.hosts.iter().any(|h| h == name))
        }
    }

    fn zone(records: &[(&str, &str)]) -> Zone {
        let mut z = Zone::default();
        for (n, t) in records {
            z.txt.entry(n.to_string()).or_default().push(t.to_string());
        }
        z
    }

    fn psl() -> Psl {
        Psl::parse("test\nco.test\n")
    }

    fn spf(d: &str) -> Authenticated {
        Authenticated {
            spf_pass: Some(d.into()),
            dkim_pass: vec![],
        }
    }

    fn dkim(d: &str) -> Authenticated {
        Authenticated {
            spf_pass: None,
            dkim_pass: vec![d.into()],
        }
    }

    #[test]
    fn relaxed_and_strict_alignment() {
        let p = psl();
        let mut z = zone(&[("_dmarc.ex.test", "v=DMARC1; p=reject")]);
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        let e = d.evaluate(Some("ex.test"), &spf("bounce.ex.test"));
        assert_eq!((e.outcome, e.spf_aligned), (Outcome::Pass, true));
        let e = d.evaluate(Some("ex.test"), &dkim("other.test"));
        assert_eq!(e.outcome, Outcome::Fail);
        assert_eq!(disposition(&e, 0), Policy::Reject);
        let mut z = zone(&[("_dmarc.ex.test", "v=DMARC1; p=reject; adkim=s; aspf=s")]);
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        assert_eq!(
            d.evaluate(Some("ex.test"), &dkim("mail.ex.test")).outcome,
            Outcome::Fail
        );
        assert_eq!(
            d.evaluate(Some("ex.test"), &spf("bounce.ex.test")).outcome,
            Outcome::Fail
        );
        assert_eq!(
            d.evaluate(Some("ex.test"), &dkim("EX.test.")).outcome,
            Outcome::Pass
        );
    }

    #[test]
    fn subdomains_take_sp_and_np() {
        let p = psl();
        let mut z = zone(&[(
            "_dmarc.ex.co.test",
            "v=DMARC1; p=none; sp=quarantine; np=reject",
        )]);
        z.hosts.push("mail.ex.co.test".into());
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        let e = d.evaluate(Some("mail.ex.co.test"), &Authenticated::default());
        assert_eq!(e.record.as_ref().unwrap().0, "ex.co.test");
        assert_eq!(e.requested, Policy::Quarantine);
        let e = d.evaluate(Some("ghost.ex.co.test"), &Authenticated::default());
        assert_eq!(e.requested, Policy::Reject);
        let e = d.evaluate(Some("ex.co.test"), &Authenticated::default());
        assert_eq!(e.requested, Policy::None);
        // pct: outside the sample, one step milder.
        let mut z = zone(&[("_dmarc.ex.test", "v=DMARC1; p=reject; pct=20")]);
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        let e = d.evaluate(Some("ex.test"), &Authenticated::default());
        assert_eq!(disposition(&e, 19), Policy::Reject);
        assert_eq!(disposition(&e, 20), Policy::Quarantine);
    }

    #[test]
    fn none_temperror_permerror() {
        let p = psl();
        let mut z = zone(&[]);
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        assert_eq!(
            d.evaluate(Some("a.ex.test"), &spf("a.ex.test")).outcome,
            Outcome::None
        );
        assert_eq!(d.evaluate(None, &spf("x")).outcome, Outcome::PermError);
        let mut z = zone(&[]);
        z.fail.push("_dmarc.ex.test".into());
        let mut d = Discovery {
            dns: &mut z,
            psl: Some(&p),
        };
        let e = d.evaluate(Some("ex.test"), &spf("ex.test"));
        assert_eq!(e.outcome, Outcome::TempError);
        assert_eq!(disposition(&e, 0), Policy::None);
    }

    #[test]
    fn tree_walk_without_a_list() {
        let mut z = zone(&[
            ("_dmarc.ex.co.test", "v=DMARC1; p=reject; sp=quarantine"),
            ("_dmarc.co.test", "v=DMARC1; p=none; psd=y"),
        ]);
        let mut d = Discovery {
            dns: &mut z,
            psl: None,
        };
        assert_eq!(d.org_domain("a.b.ex.co.test").unwrap(), "ex.co.test");
        let e = d.evaluate(Some("a.b.ex.co.test"), &dkim("mail.ex.co.test"));
        assert_eq!(e.outcome, Outcome::Pass);
        assert_eq!(e.record.as_ref().unwrap().0, "ex.co.test");
        let e = d.evaluate(Some("a.b.ex.co.test"), &dkim("other.co.test"));
        assert_eq!(
            (e.outcome, e.requested),
            (Outcome::Fail, Policy::Quarantine)
        );
        // Never asks about the top-level domain, and at most 8 labels deep.
        assert!(!z.asked.iter().any(|n| n == "_dmarc.test"));
        let long = Discovery::<Zone>::walk("a.b.c.d.e.f.g.h.i.j.test");
        assert_eq!(long[0], "a.b.c.d.e.f.g.h.i.j.test");
        assert_eq!(long[1], "e.f.g.h.i.j.test");
        assert_eq!(long.last().unwrap(), "j.test");
    }
}
