//! DKIM signing (RFC 6376, RFC 8463) at acceptance: the keys of `[[dkim]]`
//! loaded once, chosen by the From domain (the most specific configured
//! domain that is it or a parent of it, so `d=` aligns with From for
//! DMARC), rsa-sha256 and ed25519-sha256, relaxed/relaxed, `t=` always and
//! `x=` when configured.

use crate::config::auth::{DKIM_HEADERS, DkimKey, KeyMaterial};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use std::collections::HashMap;

enum Key {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

struct Loaded {
    selector: String,
    key: Key,
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
                // Each name twice: the second one is never found in the
                // message, so mail-auth lists it once more in h= (RFC
                // 6376 §5.4.2: a name beyond the fields present signs
                // their absence).
                headers = headers.iter().flat_map(|h| [h.clone(), h.clone()]).collect();
            }
            let expire = k.expire.map_or(0, |s| s.0);
            let key = match k.read_key()? {
                KeyMaterial::Rsa(der) => {
                    let rsa = RsaKey::<Sha256>::from_key_der(der)
                        .map_err(|e| format!("dkim key {}: {e}", k.key.display()))?;
                    Key::Rsa(
                        DkimSigner::from_key(rsa)
                            .domain(k.domain.to_ascii_lowercase())
                            .selector(k.selector.clone())
                            .headers(headers)
                            .header_canonicalization(Canonicalization::Relaxed)
                            .body_canonicalization(Canonicalization::Relaxed)
                            .expiration(expire),
                    )
                }
                KeyMaterial::Ed25519(der) => {
                    let ed = Ed25519Key::from_pkcs8_maybe_unchecked_der(&der)
                        .map_err(|e| format!("dkim key {}: {e}", k.key.display()))?;
                    Key::Ed25519(
                        DkimSigner::from_key(ed)
                            .domain(k.domain.to_ascii_lowercase())
                            .selector(k.selector.clone())
                            .headers(headers)
                            .header_canonicalization(Canonicalization::Relaxed)
                            .body_canonicalization(Canonicalization::Relaxed)
                            .expiration(expire),
                    )
                }
            };
            by_domain
                .entry(k.domain.to_ascii_lowercase())
                .or_default()
                .push(Loaded {
                    selector: k.selector.clone(),
                    key,
                });
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

    /// The DKIM-Signature header fields (each with its name and CRLF) for
    /// `message`, one per key of the signing domain for `from`; empty
    /// when no domain matches.
    pub fn sign(&self, message: &[u8], from: &str) -> Result<String, SignError> {
        let Some(domain) = self.domain_for(from) else {
            return Ok(String::new());
        };
        let mut out = String::new();
        for l in &self.by_domain[domain] {
            let sig = match &l.key {
                Key::Rsa(s) => s.sign(message),
                Key::Ed25519(s) => s.sign(message),
            };
            let sig = sig.map_err(|e| SignError {
                domain: domain.to_string(),
                selector: l.selector.clone(),
                reason: e.to_string(),
            })?;
            out.push_str(&sig.to_header());
        }
        Ok(out)
    }
}
