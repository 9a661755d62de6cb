//! The `crypto` interface (grant `crypto`): digests, canonical body hashes,
//! DKIM-style signature verification with ring, and signing with the
//! host-held keys of the plugin's `keys` table, so that the sandbox runs
//! the protocol and the host the arithmetic.

use crate::config::auth::{KeyMaterial, read_signing_key};
use crate::config::plugin::Capability;
use crate::plugin::bindings::mailgate::plugin::crypto::{self as wit, Algorithm, Canonicalization};
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::host::message::MessageData;
use crate::plugin::state::State;
use ring::signature::{self, KeyPair as _};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::Resource;

/// A private key held for a plugin; the plugin only names it.
pub enum HeldKey {
    /// rsa-sha256.
    Rsa(signature::RsaKeyPair),
    /// ed25519-sha256.
    Ed25519(signature::Ed25519KeyPair),
}

impl HeldKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            HeldKey::Rsa(_) => Algorithm::RsaSha256,
            HeldKey::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The public key as DKIM publishes it (`p=` before base64): PKCS#1
    /// RSAPublicKey for RSA, the raw 32 octets for Ed25519.
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            HeldKey::Rsa(k) => k.public().as_ref().to_vec(),
            HeldKey::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// Sign `data`: RSASSA-PKCS1-v1_5 SHA-256, or Ed25519 over SHA-256 of
    /// the data (RFC 8463).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            HeldKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    data,
                    &mut sig,
                )
                .map_err(|_| "RSA signing failed".to_string())?;
                Ok(sig)
            }
            HeldKey::Ed25519(k) => {
                let d = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(k.sign(d.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// Load the keys of a plugin's `keys` table (a reason naming the key on
/// error).
pub fn load_keys(
    keys: &std::collections::BTreeMap<String, PathBuf>,
) -> Result<HashMap<String, Arc<HeldKey>>, String> {
    let mut out = HashMap::new();
    for (name, path) in keys {
        let k = match read_signing_key(path).map_err(|e| format!("key {name}: {e}"))? {
            KeyMaterial::Rsa(der) => {
                let bytes = der.secret_der();
                let kp = match der {
                    rustls::pki_types::PrivateKeyDer::Pkcs1(_) => {
                        signature::RsaKeyPair::from_der(bytes)
                    }
                    _ => signature::RsaKeyPair::from_pkcs8(bytes),
                };
                HeldKey::Rsa(kp.map_err(|e| format!("key {name}: {e}"))?)
            }
            KeyMaterial::Ed25519(der) => HeldKey::Ed25519(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                    .map_err(|e| format!("key {name}: {e}"))?,
            ),
        };
        out.insert(name.clone(), Arc::new(k));
    }
    Ok(out)
}

/// The digest of `data` with the algorithm's hash.
pub fn digest(alg: Algorithm, data: &[u8]) -> Vec<u8> {
    let d = match alg {
        Algorithm::RsaSha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::RsaSha256 | Algorithm::Ed25519Sha256 => &ring::digest::SHA256,
    };
    ring::digest::digest(d, data).as_ref().to_vec()
}

/// The canonical body hash (RFC 6376 §3.4.3, §3.4.4, whole body).
pub fn body_hash(body: &[u8], canon: Canonicalization, alg: Algorithm) -> Vec<u8> {
    use mail_auth::dkim::Canonicalization as C;
    use mail_auth::dkim::canonicalize::BodyHasher;
    let d = match alg {
        Algorithm::RsaSha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::RsaSha256 | Algorithm::Ed25519Sha256 => &ring::digest::SHA256,
    };
    let c = match canon {
        Canonicalization::Simple => C::Simple,
        Canonicalization::Relaxed => C::Relaxed,
    };
    let mut h = BodyHasher::new(ring::digest::Context::new(d), c, 0);
    h.write(body);
    let (ctx, _) = h.finish();
    ctx.finish().as_ref().to_vec()
}

/// The RSAPublicKey inside a SubjectPublicKeyInfo, or `key` itself when it
/// is not one (DKIM records carry either).
fn rsa_public_key(key: &[u8]) -> &[u8] {
    // SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING { 0, key } }
    fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let inner = || {
        let (t, spki, _) = element(key)?;
        let (t2, alg, rest) = element(spki)?;
        let (t3, bits, _) = element(rest)?;
        const RSA_OID: &[u8] = &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        (t == 0x30 && t2 == 0x30 && t3 == 0x03 && alg.starts_with(RSA_OID)).then_some(())?;
        bits.strip_prefix(&[0u8])
    };
    inner().unwrap_or(key)
}

/// Verify a DKIM-style signature (see the WIT documentation of `verify`).
pub fn verify(alg: Algorithm, public_key: &[u8], data: &[u8], sig: &[u8]) -> Result<bool, String> {
    match alg {
        Algorithm::RsaSha1 | Algorithm::RsaSha256 => {
            let key = rsa_public_key(public_key);
            let params = if alg == Algorithm::RsaSha1 {
                &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
            } else {
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
            };
            // ring gives one error for a bad key and a bad signature;
            // tell them apart by the key's structure.
            match signature::UnparsedPublicKey::new(params, key).verify(data, sig) {
                Ok(()) => Ok(true),
                Err(_) if rsa_modulus_bits(key).is_some_and(|b| (1024..=8192).contains(&b)) => {
                    Ok(false)
                }
                Err(_) => Err("not an RSA public key of 1024 to 8192 bits".into()),
            }
        }
        Algorithm::Ed25519Sha256 => {
            if public_key.len() != 32 {
                return Err("an Ed25519 public key has 32 octets".into());
            }
            let d = ring::digest::digest(&ring::digest::SHA256, data);
            Ok(
                signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
                    .verify(d.as_ref(), sig)
                    .is_ok(),
            )
        }
    }
}

/// The size in bits of a DER RSAPublicKey's modulus.
fn rsa_modulus_bits(key: &[u8]) -> Option<usize> {
    let rest = key.strip_prefix(&[0x30])?;
    let skip_len = |b: &[u8]| -> Option<(usize, usize)> {
        let first = *b.first()?;
        if first < 0x80 {
            return Some((first as usize, 1));
        }
        let n = (first & 0x7f) as usize;
        let len = b
            .get(1..1 + n)?
            .iter()
            .fold(0usize, |a, &x| (a << 8) | x as usize);
        Some((len, 1 + n))
    };
    let (_, hdr) = skip_len(rest)?;
    let rest = rest.get(hdr..)?.strip_prefix(&[0x02])?;
    let (len, hdr) = skip_len(rest)?;
    let modulus = rest.get(hdr..hdr + len)?;
    let zeros = modulus.iter().take_while(|&&b| b == 0).count();
    let first = *modulus.get(zeros)?;
    Some((len - zeros - 1) * 8 + (8 - first.leading_zeros() as usize))
}

impl wit::Host for State {
    async fn digest(&mut self, alg: Algorithm, data: Vec<u8>) -> Result<Vec<u8>, CapError> {
        self.granted(Capability::Crypto)?;
        Ok(digest(alg, &data))
    }

    async fn body_hash(
        &mut self,
        msg: Resource<MessageData>,
        canon: Canonicalization,
        alg: Algorithm,
    ) -> Result<Vec<u8>, CapError> {
        self.granted(Capability::Crypto)?;
        let m = self
            .table
            .get(&msg)
            .map_err(|e| CapError::Failed(e.to_string()))?;
        Ok(body_hash(&m.body[m.body_start..], canon, alg))
    }

    async fn verify(
        &mut self,
        alg: Algorithm,
        public_key: Vec<u8>,
        data: Vec<u8>,
        sig: Vec<u8>,
    ) -> Result<bool, CapError> {
        self.granted(Capability::Crypto)?;
        verify(alg, &public_key, &data, &sig).map_err(CapError::Failed)
    }

    async fn key_algorithm(&mut self, key: String) -> Result<Algorithm, CapError> {
        self.granted(Capability::Crypto)?;
        Ok(self.key(&key)?.algorithm())
    }

    async fn sign(&mut self, key: String, data: Vec<u8>) -> Result<Vec<u8>, CapError> {
        self.granted(Capability::Crypto)?;
        self.key(&key)?.sign(&data).map_err(CapError::Failed)
    }
}

impl State {
    fn key(&self, name: &str) -> Result<Arc<HeldKey>, CapError> {
        self.plugin
            .keys
            .get(name)
            .cloned()
            .ok_or_else(|| CapError::Failed(format!("no key {name:?} in this plugin's keys")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519() -> HeldKey {
        let rng = ring::rand::SystemRandom::new();
        let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        HeldKey::Ed25519(signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    #[test]
    fn ed25519_signs_and_verifies_over_the_digest() {
        let k = ed25519();
        let sig = k.sign(b"data").unwrap();
        let p = k.public_key();
        assert!(verify(Algorithm::Ed25519Sha256, &p, b"data", &sig).unwrap());
        assert!(!verify(Algorithm::Ed25519Sha256, &p, b"other", &sig).unwrap());
        assert!(verify(Algorithm::Ed25519Sha256, &p[..31], b"data", &sig).is_err());
    }

    #[test]
    fn rsa_keys_in_both_forms_verify_and_garbage_is_an_error() {
        use base64::Engine;
        let new = crate::inbound::auth::keygen::generate(false, 2048).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &new.pem).unwrap();
        let keys = load_keys(&[("seal".to_string(), path)].into_iter().collect()).unwrap();
        let k = &keys["seal"];
        assert_eq!(k.algorithm(), Algorithm::RsaSha256);
        let sig = k.sign(b"data").unwrap();
        let pkcs1 = k.public_key();
        assert_eq!(rsa_modulus_bits(&pkcs1), Some(2048));
        assert!(verify(Algorithm::RsaSha256, &pkcs1, b"data", &sig).unwrap());
        assert!(!verify(Algorithm::RsaSha256, &pkcs1, b"datb", &sig).unwrap());
        // The record's p= is a SubjectPublicKeyInfo, as DNS usually has it.
        let p = new.record.split("p=").nth(1).unwrap();
        let spki = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        assert_eq!(rsa_public_key(&spki), &pkcs1[..]);
        assert!(verify(Algorithm::RsaSha256, &spki, b"data", &sig).unwrap());
        assert!(verify(Algorithm::RsaSha256, b"garbage", b"data", &sig).is_err());
    }

    #[test]
    fn body_hash_matches_the_rfc_empty_body_values() {
        use base64::Engine;
        let b64 = |v: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(v);
        // RFC 6376 §3.4.3/§3.4.4: an empty body is CRLF (simple) or
        // nothing (relaxed).
        assert_eq!(
            b64(body_hash(
                b"",
                Canonicalization::Simple,
                Algorithm::RsaSha256
            )),
            "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="
        );
        assert_eq!(
            b64(body_hash(
                b"",
                Canonicalization::Relaxed,
                Algorithm::RsaSha256
            )),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            body_hash(
                b" a \r\n\r\n",
                Canonicalization::Relaxed,
                Algorithm::RsaSha256
            ),
            digest(Algorithm::RsaSha256, b" a\r\n")
        );
    }
}
