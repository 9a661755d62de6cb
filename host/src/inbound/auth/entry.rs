//! One authentication result (RFC 8601 §2.2 `resinfo`): a method, its
//! result, an optional reason and comment, and the properties that say
//! what was checked (`smtp.mailfrom`, `header.d`, ...). The host writes
//! these into its Authentication-Results header and hands them to plugins
//! as `checks`, so both see the same verdicts from the same data.

use mail_auth::{DkimOutput, DkimResult, IprevOutput, IprevResult, SpfOutput, SpfResult};
use std::net::IpAddr;

/// One method's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `iprev`, `spf`, `dkim`, ... (plugins add `arc`, `dmarc`).
    pub method: String,
    /// `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`,
    /// `permerror`, `policy`.
    pub result: String,
    /// Why, for results other than pass (`reason=` in the header).
    pub reason: Option<String>,
    /// Free text shown as an RFC 5322 comment after the result.
    pub comment: Option<String>,
    /// (ptype.property, value), in order.
    pub props: Vec<(String, String)>,
}

impl Entry {
    fn new(method: &str, result: &str) -> Entry {
        Entry {
            method: method.into(),
            result: result.into(),
            reason: None,
            comment: None,
            props: vec![],
        }
    }

    fn prop(mut self, name: &str, value: impl Into<String>) -> Entry {
        self.props.push((name.into(), value.into()));
        self
    }

    /// iprev for the client at `ip`; the comment names the verified host.
    pub fn iprev(o: &IprevOutput, ip: IpAddr) -> Entry {
        let (result, reason) = match o.result() {
            IprevResult::Pass => ("pass", None),
            IprevResult::Fail(e) => ("fail", Some(e.to_string())),
            IprevResult::TempError(e) => ("temperror", Some(e.to_string())),
            IprevResult::PermError(e) => ("permerror", Some(e.to_string())),
            IprevResult::None => ("none", None),
        };
        let mut e = Entry::new("iprev", result).prop("policy.iprev", ip.to_string());
        e.reason = reason;
        if let Some(ptr) = o.ptr.as_ref().and_then(|p| p.first()) {
            e.comment = Some(ptr.trim_end_matches('.').to_string());
        }
        e
    }

    /// SPF for the HELO identity.
    pub fn spf_helo(o: &SpfOutput, helo: &str) -> Entry {
        Entry::spf(o).prop("smtp.helo", helo)
    }

    /// SPF for the MAIL FROM identity (`postmaster@helo` for `<>`, which
    /// is what SPF checked, RFC 7208 §2.4).
    pub fn spf_mail(o: &SpfOutput, sender: &str, helo: &str) -> Entry {
        let who = if sender.is_empty() {
            format!("postmaster@{helo}")
        } else {
            sender.to_string()
        };
        Entry::spf(o).prop("smtp.mailfrom", who)
    }

    fn spf(o: &SpfOutput) -> Entry {
        let r = match o.result() {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
            SpfResult::None => "none",
        };
        let mut e = Entry::new("spf", r);
        if let Some(x) = o.explanation() {
            e.reason = Some(x.to_string());
        }
        e
    }

    /// SPF that ran out of time: `temperror`.
    pub fn spf_timeout(identity: &str, value: &str) -> Entry {
        let mut e = Entry::new("spf", "temperror").prop(identity, value);
        e.reason = Some("DNS lookups took too long".into());
        e
    }

    /// One DKIM signature. An `rsa-sha1` signature that verifies is a
    /// `policy` result: RFC 8301 forbids treating it as valid. A body
    /// length limit (`l=`) is noted, since the rest of the body is
    /// unsigned.
    pub fn dkim(o: &DkimOutput<'_>) -> Entry {
        use mail_auth::common::crypto::Algorithm;
        let sig = o.signature();
        let sha1 = sig.is_some_and(|s| s.a == Algorithm::RsaSha1);
        let (result, reason) = match o.result() {
            DkimResult::Pass if sha1 => (
                "policy",
                Some("rsa-sha1 is not accepted (RFC 8301)".to_string()),
            ),
            DkimResult::Pass => ("pass", None),
            // mail-auth calls a body hash mismatch neutral; it is a
            // signature that failed to verify (RFC 6376 §6.1.3, RFC 8601
            // §2.7.1).
            DkimResult::Neutral(
                e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch),
            ) => ("fail", Some(e.to_string())),
            DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
            DkimResult::Fail(e) => ("fail", Some(e.to_string())),
            DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
            DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
            DkimResult::None => ("none", None),
        };
        let mut e = Entry::new("dkim", result);
        e.reason = reason;
        if let Some(s) = sig {
            e = Entry::signature_props(e, s);
        }
        e
    }

    /// A signature not verified in time: `temperror`.
    pub fn dkim_timeout(s: &mail_auth::dkim::Signature) -> Entry {
        let mut e = Entry::signature_props(Entry::new("dkim", "temperror"), s);
        e.reason = Some("key lookup took too long".into());
        e
    }

    fn signature_props(mut e: Entry, s: &mail_auth::dkim::Signature) -> Entry {
        use mail_auth::common::crypto::Algorithm;
        e = e.prop("header.d", s.d.to_ascii_lowercase());
        if !s.i.is_empty() {
            e = e.prop("header.i", s.i.clone());
        }
        e = e.prop("header.s", s.s.clone()).prop(
            "header.a",
            match s.a {
                Algorithm::RsaSha1 => "rsa-sha1",
                Algorithm::RsaSha256 => "rsa-sha256",
                Algorithm::Ed25519Sha256 => "ed25519-sha256",
            },
        );
        if let Some(b) = s.b.get(..6) {
            use base64::Engine;
            e = e.prop(
                "header.b",
                base64::engine::general_purpose::STANDARD.encode(b),
            );
        }
        if s.l > 0 {
            e.comment = Some(format!("body length limit l={}", s.l));
        }
        e
    }

    /// A DKIM-Signature field that is not a signature (`permerror`).
    pub fn dkim_malformed(e: &mail_auth::Error) -> Entry {
        let mut x = Entry::new("dkim", "permerror");
        x.reason = Some(format!("malformed signature: {e}"));
        x
    }

    /// No DKIM signature at all.
    pub fn dkim_none() -> Entry {
        Entry::new("dkim", "none")
    }

    /// The `resinfo` text: `spf=pass (comment) reason="..." smtp.mailfrom=a@b`.
    pub fn resinfo(&self) -> String {
        let mut s = format!("{}={}", self.method, self.result);
        if let Some(c) = &self.comment {
            s.push_str(" (");
            s.push_str(&comment(c));
            s.push(')');
        }
        if let Some(r) = &self.reason {
            s.push_str(" reason=");
            s.push_str(&quoted(r));
        }
        for (n, v) in &self.props {
            s.push(' ');
            s.push_str(n);
            s.push('=');
            s.push_str(&pvalue(v));
        }
        s
    }

    /// The properties as plugins get them in `check-result.detail`:
    /// `header.d=example.com header.s=sel ...`, then `l=N` for a body
    /// length limit.
    pub fn detail(&self) -> String {
        let mut parts: Vec<String> = self
            .props
            .iter()
            .map(|(n, v)| format!("{n}={}", pvalue(v)))
            .collect();
        if let Some(c) = &self.comment
            && let Some(l) = c.strip_prefix("body length limit ")
        {
            parts.push(l.to_string());
        }
        parts.join(" ")
    }
}

/// A property value: as it is when it is a token or an address (RFC 8601
/// §2.2 `pvalue`), otherwise a quoted string.
fn pvalue(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@:".contains(&b) || b >= 0x80
        });
    if plain { v.to_string() } else { quoted(v) }
}

fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\r' | '\n' | '\t' => s.push(' '),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn comment(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '(' | ')' | '\\' | '\r' | '\n' => ' ',
            c => c,
        })
        .collect()
}

/// Our Authentication-Results header, with its name and CRLF: one entry
/// per line, `none` when there is nothing to say.
pub fn header(authserv_id: &str, entries: &[String]) -> String {
    if entries.is_empty() {
        return format!("Authentication-Results: {authserv_id}; none\r\n");
    }
    let mut h = format!("Authentication-Results: {authserv_id}");
    for e in entries {
        h.push_str(";\r\n\t");
        h.push_str(e);
    }
    h.push_str("\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resinfo_quotes_what_is_not_a_token() {
        let e = Entry {
            method: "spf".into(),
            result: "fail".into(),
            reason: Some("not \"permitted\"".into()),
            comment: Some("a (b)".into()),
            props: vec![
                ("smtp.mailfrom".into(), "a+b@example.com".into()),
                ("smtp.helo".into(), "bad name\r\n".into()),
            ],
        };
        assert_eq!(
            e.resinfo(),
            "spf=fail (a  b ) reason=\"not \\\"permitted\\\"\" smtp.mailfrom=a+b@example.com smtp.helo=\"bad name  \""
        );
        assert_eq!(
            e.detail(),
            "smtp.mailfrom=a+b@example.com smtp.helo=\"bad name  \""
        );
    }

    #[test]
    fn header_lines() {
        assert_eq!(
            header("mx.test", &[]),
            "Authentication-Results: mx.test; none\r\n"
        );
        assert_eq!(
            header(
                "mx.test",
                &["spf=pass smtp.mailfrom=a@b".into(), "dkim=none".into()]
            ),
            "Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=a@b;\r\n\tdkim=none\r\n"
        );
    }

    #[test]
    fn length_limit_in_detail() {
        let e = Entry {
            method: "dkim".into(),
            result: "pass".into(),
            reason: None,
            comment: Some("body length limit l=12".into()),
            props: vec![("header.d".into(), "example.com".into())],
        };
        assert_eq!(e.detail(), "header.d=example.com l=12");
        assert_eq!(
            e.resinfo(),
            "dkim=pass (body length limit l=12) header.d=example.com"
        );
    }
}
