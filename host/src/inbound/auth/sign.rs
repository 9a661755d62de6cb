//! DKIM signing (RFC 6376, RFC 8463) at acceptance: the keys of `[[dkim]]`
//! loaded once, chosen by the From domain (the most specific configured
//! domain that is it or a parent of it, so `d=` aligns with From for
//! DMARC), rsa-sha256 and ed25519-sha256, relaxed/relaxed, `t=` always and
//! `x=` when configured.
//!
//! mail-auth canonicalizes, hashes and signs; the DKIM-Signature field is
//! written here. mail-auth folds base64 values anywhere, `bh=` included,
//! which RFC 6376 allows but verifiers such as dkimpy 1.1 refuse; ours
//! folds only between tags, between names in `h=`, and inside `b=`.

use crate::config::auth::{DKIM_HEADERS, DkimKey, KeyMaterial};
use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderStream, Writable, Writer};
use mail_auth::dkim::{Canonicalization, Signature};
use std::collections::HashMap;

enum Key {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

struct Loaded {
    key: Key,
    /// v, a, d, s, c and the names to sign; `x` relative.
    template: Signature,
}

/// Every configured signing key, by domain.
pub struct Signer {
    by_domain: HashMap<String, Vec<Loaded>>,
}

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("DKIM signing for {domain} with selector {selector} failed: {reason}")]
pub struct SignError {
    /// The signing domain.
    pub domain: String,
    /// The key's selector.
    pub selector: String,
    /// What mail-auth said.
    pub reason: String,
}

impl Signer {
    /// Load the keys (`config check` has read them already; an error here
    /// names the file).
    pub fn new(keys: &[DkimKey]) -> Result<Signer, String> {
        use mail_auth::common::crypto::Algorithm;
        let mut by_domain: HashMap<String, Vec<Loaded>> = HashMap::new();
        for k in keys {
            let mut headers: Vec<String> = match &k.headers {
                Some(h) => h.clone(),
                None => DKIM_HEADERS.iter().map(|s| s.to_string()).collect(),
            };
            if !headers.iter().any(|h| h.eq_ignore_ascii_case("From")) {
                headers.insert(0, "From".into());
            }
            if k.oversign {
                // Each name twice: the second is never found in the
                // message, so it is listed once more in h= than the field
                // occurs, which signs its absence (RFC 6376 §5.4.2).
                headers = headers
                    .iter()
                    .flat_map(|h| [h.clone(), h.clone()])
                    .collect();
            }
            let (key, a) = match k.read_key()? {
                KeyMaterial::Rsa(der) => (
                    Key::Rsa(
                        RsaKey::<Sha256>::from_key_der(der)
                            .map_err(|e| format!("dkim key {}: {e}", k.key.display()))?,
                    ),
                    Algorithm::RsaSha256,
                ),
                KeyMaterial::Ed25519(der) => (
                    Key::Ed25519(
                        Ed25519Key::from_pkcs8_maybe_unchecked_der(&der)
                            .map_err(|e| format!("dkim key {}: {e}", k.key.display()))?,
                    ),
                    Algorithm::Ed25519Sha256,
                ),
            };
            let template = Signature {
                v: 1,
                a,
                d: k.domain.to_ascii_lowercase(),
                s: k.selector.clone(),
                h: headers,
                x: k.expire.map_or(0, |s| s.0),
                ch: Canonicalization::Relaxed,
                cb: Canonicalization::Relaxed,
                ..Default::default()
            };
            by_domain
                .entry(k.domain.to_ascii_lowercase())
                .or_default()
                .push(Loaded { key, template });
        }
        Ok(Signer { by_domain })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The signing domain for mail whose From domain is `from`: `from`
    /// itself or its nearest parent with keys.
    pub fn domain_for(&self, from: &str) -> Option<&str> {
        let from = from.to_ascii_lowercase();
        let mut d = from.as_str();
        loop {
            if let Some((k, _)) = self.by_domain.get_key_value(d) {
                return Some(k);
            }
            d = d.split_once('.')?.1;
        }
    }

    /// Sign `data` by its From domain and prepend the signatures; nothing
    /// when it has no From domain or no key for it.
    pub fn sign_into(&self, data: &mut Vec<u8>) -> Result<(), SignError> {
        let Some(from) =
            crate::smtp::header::header_value(data, "From").and_then(|f| from_domain(&f))
        else {
            return Ok(());
        };
        let sigs = self.sign(data, &from)?;
        if !sigs.is_empty() {
            let mut d = sigs.into_bytes();
            d.extend_from_slice(data);
            *data = d;
        }
        Ok(())
    }

    /// The DKIM-Signature header fields (each with its name and CRLF) for
    /// `message`, one per key of the signing domain for `from`; empty
    /// when no domain matches.
    pub fn sign(&self, message: &[u8], from: &str) -> Result<String, SignError> {
        let Some(domain) = self.domain_for(from) else {
            return Ok(String::new());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = String::new();
        for l in &self.by_domain[domain] {
            let field = l.sign(message, now).map_err(|e| SignError {
                domain: domain.to_string(),
                selector: l.template.s.clone(),
                reason: e.to_string(),
            })?;
            out.push_str(&field);
        }
        Ok(out)
    }
}

impl crate::queue::Finish for Signer {
    fn finish(&self, message: &mut Vec<u8>) -> Result<(), String> {
        self.sign_into(message).map_err(|e| e.to_string())
    }
}

/// The domain of the (first) address in a From value.
pub fn from_domain(value: &str) -> Option<String> {
    let v = value.trim();
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(i), Some(j)) if j > i => &v[i + 1..j],
        _ => v.split(',').next().unwrap_or(v),
    };
    let d = addr.trim().rsplit_once('@')?.1.trim();
    (!d.is_empty()).then(|| d.to_ascii_lowercase())
}

impl Loaded {
    fn sign(&self, message: &[u8], now: u64) -> mail_auth::Result<String> {
        let (_, headers, signed, body) = self.template.canonicalize(Fields { m: message, pos: 0 });
        let mut sig = self.template.clone();
        sig.bh = match &self.key {
            Key::Rsa(k) => k.hash(body).as_ref().to_vec(),
            Key::Ed25519(k) => k.hash(body).as_ref().to_vec(),
        };
        sig.t = now;
        sig.x = if sig.x > 0 { now + sig.x } else { 0 };
        // Names absent from the message need listing once only.
        let mut fields = Fields { m: message, pos: 0 };
        let mut present = std::collections::HashSet::new();
        while let Some((name, _)) = fields.next_header() {
            present.insert(String::from_utf8_lossy(name).trim().to_ascii_lowercase());
        }
        let mut absent = std::collections::HashSet::new();
        sig.h = signed
            .into_iter()
            .filter(|h| {
                let h = h.to_ascii_lowercase();
                present.contains(&h) || absent.insert(h)
            })
            .collect();
        let unsigned = field(&sig, None);
        let input = Input {
            headers,
            own: relaxed(&unsigned),
        };
        sig.b = match &self.key {
            Key::Rsa(k) => k.sign(input)?,
            Key::Ed25519(k) => k.sign(input)?,
        };
        Ok(field(&sig, Some(&sig.b)))
    }
}

/// The header fields of a message (name; value after the colon with its
/// CRLF) and then its body, as mail-auth's canonicalization reads them.
struct Fields<'x> {
    m: &'x [u8],
    pos: usize,
}

impl<'x> HeaderStream<'x> for Fields<'x> {
    fn next_header(&mut self) -> Option<(&'x [u8], &'x [u8])> {
        let rest = &self.m[self.pos..];
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
        // The field ends at the first line end not followed by WSP.
        let mut end = 0;
        loop {
            match memchr::memchr(b'\n', &rest[end..]) {
                Some(i) => {
                    end += i + 1;
                    if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    end = rest.len();
                    break;
                }
            }
        }
        let field = &rest[..end];
        self.pos += end;
        match memchr::memchr(b':', field) {
            Some(c) => Some((&field[..c], &field[c + 1..])),
            None => Some((field, b"")),
        }
    }

    fn body(&mut self) -> &'x [u8] {
        let rest = &self.m[self.pos..];
        if let Some(b) = rest.strip_prefix(b"\r\n") {
            b
        } else if let Some(b) = rest.strip_prefix(b"\n") {
            b
        } else {
            rest
        }
    }
}

/// What is signed: the canonical signed fields, then our own field
/// (relaxed, `b=` empty, no CRLF).
struct Input<'a> {
    headers: mail_auth::dkim::canonicalize::CanonicalHeaders<'a>,
    own: String,
}

impl Writable for Input<'_> {
    fn write(self, w: &mut impl Writer) {
        self.headers.write(w);
        w.write(self.own.as_bytes());
    }
}

/// The DKIM-Signature field with its CRLF; `b=` empty when `b` is none.
/// Lines stay under 78 octets: folds go between tags, between names of
/// `h=`, and inside `b=`.
fn field(s: &Signature, b: Option<&[u8]>) -> String {
    use mail_auth::common::crypto::Algorithm;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut f = Folder {
        out: String::from("DKIM-Signature:"),
        col: 15,
    };
    let a = match s.a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    };
    f.tag(&format!("v={};", s.v));
    f.tag(&format!("a={a};"));
    f.tag("c=relaxed/relaxed;");
    f.tag(&format!("d={};", s.d));
    f.tag(&format!("s={};", s.s));
    f.tag(&format!("t={};", s.t));
    if s.x > 0 {
        f.tag(&format!("x={};", s.x));
    }
    for (i, h) in s.h.iter().enumerate() {
        let last = i + 1 == s.h.len();
        let piece = match (i, last) {
            (0, true) => format!("h={h};"),
            (0, false) => format!("h={h}:"),
            (_, true) => format!("{h};"),
            (_, false) => format!("{h}:"),
        };
        if i == 0 {
            f.tag(&piece);
        } else {
            f.glued(&piece);
        }
    }
    f.tag(&format!("bh={};", b64.encode(&s.bh)));
    f.tag("b=");
    if let Some(b) = b {
        let text = b64.encode(b);
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let room = 77usize.saturating_sub(f.col).max(1);
            if room < 8 {
                f.out.push_str("\r\n\t");
                f.col = 1;
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            f.out.push_str(now);
            f.col += now.len();
            rest = later;
        }
    }
    f.out.push_str("\r\n");
    f.out
}

struct Folder {
    out: String,
    col: usize,
}

impl Folder {
    /// A tag after a space, or on a new line when it does not fit.
    fn tag(&mut self, t: &str) {
        if self.col + 1 + t.len() > 77 {
            self.out.push_str("\r\n\t");
            self.col = 1;
        } else {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(t);
        self.col += t.len();
    }

    /// A piece right after the last, or on a new line when it does not fit.
    fn glued(&mut self, t: &str) {
        if self.col + t.len() > 77 {
            self.out.push_str("\r\n\t");
            self.col = 1;
        }
        self.out.push_str(t);
        self.col += t.len();
    }
}

/// Relaxed canonical form (RFC 6376 §3.4.2) of our own field as it is
/// signed: lower-case name, unfolded, runs of whitespace made one space,
/// none around the colon or at the end, and no CRLF.
fn relaxed(field: &str) -> String {
    let (name, value) = field.split_once(':').unwrap_or((field, ""));
    let mut v = String::with_capacity(value.len());
    let mut space = false;
    for c in value.chars() {
        match c {
            '\r' | '\n' => {}
            ' ' | '\t' => space = true,
            c => {
                if space && !v.is_empty() {
                    v.push(' ');
                }
                space = false;
                v.push(c);
            }
        }
    }
    format!("{}:{v}", name.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        assert_eq!(
            from_domain("Alice <A@Example.COM>").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            from_domain("\"Doe, J\" <j@d.test>").as_deref(),
            Some("d.test")
        );
        assert_eq!(from_domain("b@c.test, d@e.test").as_deref(), Some("c.test"));
        assert_eq!(from_domain("undisclosed"), None);
    }

    #[test]
    fn folds_only_between_tags_and_in_b() {
        let s = Signature {
            v: 1,
            a: mail_auth::common::crypto::Algorithm::RsaSha256,
            d: "example.com".into(),
            s: "sel".into(),
            t: 1_700_000_000,
            x: 1_700_604_800,
            h: [
                "From",
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type",
                "Reply-To",
                "Cc",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            bh: vec![7; 32],
            ..Default::default()
        };
        let f = field(&s, Some(&[9u8; 256]));
        for line in f.split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
        let bh = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(f.contains(&format!("bh={bh};")), "{f}");
        assert!(
            f.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;")
        );
        // Without b=, as signed: one line, single spaces, ends with "b=".
        let r = relaxed(&field(&s, None));
        assert!(r.starts_with("dkim-signature:v=1; a=rsa-sha256;"), "{r}");
        assert!(r.ends_with(" b="), "{r}");
        assert!(
            !r.contains("  ") && !r.contains('\r') && !r.contains('\t'),
            "{r}"
        );
    }
}
