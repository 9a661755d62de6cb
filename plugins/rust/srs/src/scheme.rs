//! The SRS address transformations, free of any host call: both hash
//! schemes, timestamps, forward and reverse. Time is passed in.
//!
//! * `mail-srs`: Mail::SRS (the Guarded subclass, its default) and libsrs2:
//!   HMAC-SHA1 over the lower-cased fields, the first `hash_length` base64
//!   characters, compared case-insensitively when the exact match fails,
//!   every secret tried; SRS0 and SRS1; timestamps in upper-case base32.
//! * `exim`: Exim's native `${srs_encode}` / `inbound_srs`: the first four
//!   hex characters of HMAC-MD5 over the lower-cased return path; SRS0
//!   only; timestamps in lower-case base32.
//!
//! Both keep the day number modulo 1024 in two base32 characters.

use base64::Engine;
use hmac::{Hmac, Mac};

/// Which hash scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Mail::SRS / libsrs2 (HMAC-SHA1, base64).
    MailSrs,
    /// Exim's native SRS (HMAC-MD5, hex, SRS0 only).
    Exim,
}

/// Settings of one SRS domain.
#[derive(Debug, Clone)]
pub struct Srs {
    /// The hash scheme.
    pub scheme: Scheme,
    /// Secrets: the first signs, every one verifies (rotation).
    pub secrets: Vec<String>,
    /// Maximum age of a reverse address, in days.
    pub max_age_days: u32,
    /// Hash characters written (and the minimum accepted), mail-srs only.
    pub hash_length: usize,
}

/// Why a reverse address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseError {
    /// Not an SRS address of the expected shape.
    Syntax(&'static str),
    /// The hash does not match any secret.
    BadHash,
    /// The timestamp is older than the maximum age.
    Expired,
}

impl std::fmt::Display for ReverseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReverseError::Syntax(s) => write!(f, "malformed SRS address: {s}"),
            ReverseError::BadHash => write!(f, "the SRS hash does not match"),
            ReverseError::Expired => write!(f, "the SRS address has expired"),
        }
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DAY: u64 = 86_400;
const SLOTS: u64 = 1024;

/// The two-character day stamp of `now` (upper case).
pub fn timestamp(now: u64) -> String {
    let days = now / DAY;
    let hi = BASE32[((days >> 5) & 31) as usize] as char;
    let lo = BASE32[(days & 31) as usize] as char;
    format!("{hi}{lo}")
}

fn timestamp_ok(ts: &str, now: u64, max_age_days: u32) -> Result<(), ReverseError> {
    let ts = ts.to_ascii_uppercase();
    if ts.len() != 2 {
        return Err(ReverseError::Syntax("timestamp is not two characters"));
    }
    let mut t: u64 = 0;
    for c in ts.bytes() {
        let v = BASE32
            .iter()
            .position(|&b| b == c)
            .ok_or(ReverseError::Syntax("timestamp is not base32"))?;
        t = t * 32 + v as u64;
    }
    // As Mail::SRS does: today modulo 1024, moved past the stamp.
    let mut today = (now / DAY) % SLOTS;
    while today < t {
        today += SLOTS;
    }
    if today <= t + max_age_days as u64 {
        Ok(())
    } else {
        Err(ReverseError::Expired)
    }
}

fn sha1_b64(secret: &str, fields: &[&str]) -> String {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    for f in fields {
        m.update(f.to_lowercase().as_bytes());
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(m.finalize().into_bytes())
}

fn md5_hex(secret: &str, text: &str) -> String {
    let mut m = Hmac::<md5::Md5>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(text.to_lowercase().as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Split `local@domain` at the last `@`; surrounding quotes of the local
/// part are removed.
pub fn split(addr: &str) -> Option<(String, String)> {
    let (l, d) = addr.rsplit_once('@')?;
    if l.is_empty() || d.is_empty() {
        return None;
    }
    let l = if l.len() >= 2 && l.starts_with('"') && l.ends_with('"') {
        l[1..l.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
    } else {
        l.to_string()
    };
    Some((l, d.to_string()))
}

/// `local@domain`, quoting the local part when it is not a dot-atom.
pub fn join(local: &str, domain: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| atext(c) || c == '.' || !c.is_ascii());
    if dot_atom {
        format!("{local}@{domain}")
    } else {
        let q = local.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{q}\"@{domain}")
    }
}

/// Case-insensitive prefix test that returns the rest.
fn strip_tag<'a>(s: &'a str, tag: &str) -> Option<(char, &'a str)> {
    if s.len() > tag.len()
        && s.is_char_boundary(tag.len())
        && s[..tag.len()].eq_ignore_ascii_case(tag)
    {
        let rest = &s[tag.len()..];
        let sep = rest.chars().next()?;
        if matches!(sep, '=' | '+' | '-') {
            return Some((sep, &rest[1..]));
        }
    }
    None
}

/// True when `local` is an SRS0 or SRS1 local part.
pub fn is_srs(local: &str) -> bool {
    strip_tag(local, "SRS0").is_some() || strip_tag(local, "SRS1").is_some()
}

impl Srs {
    fn sign(&self) -> &str {
        self.secrets.first().map_or("", String::as_str)
    }

    fn mail_srs_hash(&self, fields: &[&str]) -> String {
        sha1_b64(self.sign(), fields)[..self.hash_length.min(27)].to_string()
    }

    fn mail_srs_verify(&self, hash: &str, fields: &[&str]) -> bool {
        if hash.len() < self.hash_length {
            return false;
        }
        let valid: Vec<String> = self
            .secrets
            .iter()
            .map(|s| sha1_b64(s, fields))
            .filter(|v| v.len() >= hash.len())
            .map(|v| v[..hash.len()].to_string())
            .collect();
        valid.iter().any(|v| v == hash) || valid.iter().any(|v| v.eq_ignore_ascii_case(hash))
    }

    /// The SRS local part for `sender` (`local@domain`) forwarded at `now`.
    pub fn forward_local(&self, sender: &str, now: u64) -> Option<String> {
        let (user, host) = split(sender)?;
        Some(match self.scheme {
            Scheme::Exim => {
                let hash = &md5_hex(self.sign(), &format!("{user}@{host}"))[..4];
                let ts = timestamp(now).to_lowercase();
                format!("SRS0={hash}={ts}={host}={user}")
            }
            Scheme::MailSrs => {
                if let Some((sep, rest)) = strip_tag(&user, "SRS1") {
                    // SRS1=hash=srshost=srsuser: re-sign, keep the rest.
                    let mut f = rest.splitn(3, '=');
                    let (_, srshost, srsuser) = (f.next()?, f.next()?, f.next()?);
                    let hash = self.mail_srs_hash(&[srshost, srsuser]);
                    format!("SRS1{sep}{hash}={srshost}={srsuser}")
                } else if let Some((sep, rest)) = strip_tag(&user, "SRS0") {
                    // SRS0 from another forwarder: wrap it as SRS1, keeping
                    // the separator after the tag (hence "==").
                    let srsuser = format!("{sep}{rest}");
                    let hash = self.mail_srs_hash(&[&host, &srsuser]);
                    format!("SRS1={hash}={host}={srsuser}")
                } else {
                    let ts = timestamp(now);
                    let hash = self.mail_srs_hash(&[&ts, &host, &user]);
                    format!("SRS0={hash}={ts}={host}={user}")
                }
            }
        })
    }

    /// The forwarded sender: `sender` rewritten into `srs_domain`.
    pub fn forward(&self, sender: &str, srs_domain: &str, now: u64) -> Option<String> {
        Some(join(&self.forward_local(sender, now)?, srs_domain))
    }

    /// Decode an SRS local part back to the address it stands for.
    pub fn reverse(&self, local: &str, now: u64) -> Result<String, ReverseError> {
        match self.scheme {
            Scheme::Exim => {
                let (_, rest) = strip_tag(local, "SRS0")
                    .filter(|(sep, _)| *sep == '=')
                    .ok_or(ReverseError::Syntax("not SRS0="))?;
                let mut f = rest.splitn(4, '=');
                let (hash, ts, host, user) = (
                    f.next().unwrap_or(""),
                    f.next().ok_or(ReverseError::Syntax("no timestamp"))?,
                    f.next().ok_or(ReverseError::Syntax("no domain"))?,
                    f.next().ok_or(ReverseError::Syntax("no local part"))?,
                );
                if hash.len() != 4 {
                    return Err(ReverseError::Syntax("the hash is not four characters"));
                }
                let ok = self
                    .secrets
                    .iter()
                    .any(|s| md5_hex(s, &format!("{user}@{host}"))[..4].eq_ignore_ascii_case(hash));
                if !ok {
                    return Err(ReverseError::BadHash);
                }
                timestamp_ok(ts, now, self.max_age_days)?;
                Ok(join(user, host))
            }
            Scheme::MailSrs => {
                if let Some((_, rest)) = strip_tag(local, "SRS1") {
                    let mut f = rest.splitn(3, '=');
                    let (hash, srshost, srsuser) = (
                        f.next().unwrap_or(""),
                        f.next().ok_or(ReverseError::Syntax("no SRS host"))?,
                        f.next().ok_or(ReverseError::Syntax("no SRS user"))?,
                    );
                    if !self.mail_srs_verify(hash, &[srshost, srsuser]) {
                        return Err(ReverseError::BadHash);
                    }
                    return Ok(join(&format!("SRS0{srsuser}"), srshost));
                }
                let (_, rest) = strip_tag(local, "SRS0")
                    .ok_or(ReverseError::Syntax("neither SRS0 nor SRS1"))?;
                let mut f = rest.splitn(4, '=');
                let (hash, ts, host, user) = (
                    f.next().unwrap_or(""),
                    f.next().ok_or(ReverseError::Syntax("no timestamp"))?,
                    f.next().ok_or(ReverseError::Syntax("no domain"))?,
                    f.next().ok_or(ReverseError::Syntax("no local part"))?,
                );
                if !self.mail_srs_verify(hash, &[ts, host, user]) {
                    return Err(ReverseError::BadHash);
                }
                timestamp_ok(ts, now, self.max_age_days)?;
                Ok(join(user, host))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srs(scheme: Scheme) -> Srs {
        Srs {
            scheme,
            secrets: vec!["s3cret".into(), "old".into()],
            max_age_days: if scheme == Scheme::Exim { 10 } else { 21 },
            hash_length: 4,
        }
    }

    const NOW: u64 = 1_795_475_233;

    #[test]
    fn exim_vector() {
        // `exim4 -be '${srs_encode {s3cret}{Bob.Smith@Orig.Example}{fwd.example}}'`
        // printed this on the same day.
        let s = srs(Scheme::Exim);
        assert_eq!(
            s.forward("Bob.Smith@Orig.Example", "fwd.example", NOW)
                .unwrap(),
            "SRS0=8f20=jm=Orig.Example=Bob.Smith@fwd.example"
        );
        assert_eq!(
            s.reverse("SRS0=8f20=jm=Orig.Example=Bob.Smith", NOW)
                .unwrap(),
            "Bob.Smith@Orig.Example"
        );
        assert_eq!(
            s.reverse("SRS0=8f21=jm=Orig.Example=Bob.Smith", NOW),
            Err(ReverseError::BadHash)
        );
        assert_eq!(
            s.reverse("SRS0=8f20=jm=Orig.Example=Bob.Smith", NOW + 11 * DAY),
            Err(ReverseError::Expired)
        );
        assert!(s.reverse("SRS1=8f20=x==y=z", NOW).is_err());
    }

    #[test]
    fn mail_srs_round_trips() {
        let s = srs(Scheme::MailSrs);
        let f = s.forward("alice@orig.example", "fwd.example", NOW).unwrap();
        assert!(
            f.starts_with("SRS0=") && f.ends_with("=JM=orig.example=alice@fwd.example"),
            "{f}"
        );
        let (local, _) = split(&f).unwrap();
        assert_eq!(s.reverse(&local, NOW).unwrap(), "alice@orig.example");
        // Case smashed by some relay: still accepted.
        assert_eq!(
            s.reverse(&local.to_lowercase(), NOW).unwrap(),
            "alice@orig.example"
        );
        assert_eq!(
            s.reverse(&local, NOW + 22 * DAY),
            Err(ReverseError::Expired)
        );
        // Signed with the old secret: still verified.
        let old = Srs {
            secrets: vec!["old".into()],
            ..s.clone()
        };
        let (l2, _) = split(&old.forward("alice@orig.example", "f", NOW).unwrap()).unwrap();
        assert!(s.reverse(&l2, NOW).is_ok());
        let other = Srs {
            secrets: vec!["other".into()],
            ..s.clone()
        };
        assert_eq!(other.reverse(&local, NOW), Err(ReverseError::BadHash));
    }

    #[test]
    fn srs1_wraps_and_unwraps() {
        let s = srs(Scheme::MailSrs);
        let f = s
            .forward(
                "SRS0=abcd=JM=orig.example=alice@first.example",
                "fwd.example",
                NOW,
            )
            .unwrap();
        assert!(f.starts_with("SRS1="), "{f}");
        assert!(
            f.ends_with("=first.example==abcd=JM=orig.example=alice@fwd.example"),
            "{f}"
        );
        let (local, _) = split(&f).unwrap();
        assert_eq!(
            s.reverse(&local, NOW).unwrap(),
            "SRS0=abcd=JM=orig.example=alice@first.example"
        );
        // Re-forwarding an SRS1 address keeps its SRS host and user.
        let g = s
            .forward(
                &f.replace("@fwd.example", "@second.example"),
                "third.example",
                NOW,
            )
            .unwrap();
        assert!(
            g.ends_with("=first.example==abcd=JM=orig.example=alice@third.example"),
            "{g}"
        );
    }

    #[test]
    fn quoting() {
        let s = srs(Scheme::MailSrs);
        let f = s.forward("\"a b\"@x.example", "fwd.example", NOW).unwrap();
        assert!(
            f.starts_with("\"SRS0=") && f.ends_with("=x.example=a b\"@fwd.example"),
            "{f}"
        );
        let (local, _) = split(&f).unwrap();
        assert_eq!(s.reverse(&local, NOW).unwrap(), "\"a b\"@x.example");
    }

    #[test]
    fn stamps() {
        assert_eq!(timestamp(NOW), "JM");
        assert!(timestamp_ok("JM", NOW, 0).is_ok());
        assert!(timestamp_ok("jm", NOW + 3 * DAY, 3).is_ok());
        assert_eq!(
            timestamp_ok("JM", NOW + 4 * DAY, 3),
            Err(ReverseError::Expired)
        );
        assert!(timestamp_ok("J1", NOW, 3).is_err());
    }
}
