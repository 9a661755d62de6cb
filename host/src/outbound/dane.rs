//! DANE for SMTP (RFC 7672, RFC 6698, RFC 7671, RFC 7218): which TLSA
//! records are usable, and whether a server's certificate chain matches
//! them. Pure functions over DER; [`super::verify`] calls them from inside
//! the TLS handshake.
//!
//! DANE-EE(3) matches the leaf certificate or its key, names and dates
//! ignored (RFC 7672 §3.1.1). DANE-TA(2) matches a certificate of the
//! chain (or, for a full certificate, one not sent), which becomes the
//! trust anchor of an ordinary chain check; the leaf must then carry one
//! of the reference names (RFC 7672 §3.2.2: the TLSA base domain, the MX
//! host, or the next-hop domain). PKIX-TA(0) and PKIX-EE(1) are unusable
//! for SMTP (RFC 7672 §3.1.3), as are unknown selectors and matching
//! types and digests of the wrong length.

use crate::dns::Tlsa;
use rustls::pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};

/// The records a client may use (RFC 7672 §3.1): DANE-TA and DANE-EE,
/// selectors 0 and 1, matching types 0, 1 and 2 with the right length.
pub fn usable(records: &[Tlsa]) -> Vec<Tlsa> {
    records
        .iter()
        .filter(|r| matches!(r.usage, 2 | 3) && matches!(r.selector, 0 | 1))
        .filter(|r| match r.matching {
            0 => !r.data.is_empty(),
            1 => r.data.len() == 32,
            2 => r.data.len() == 64,
            _ => false,
        })
        .cloned()
        .collect()
}

/// A digest of a TLSA set (order-independent), to key TLS sessions so a
/// changed set never resumes a session verified under the old one.
pub fn digest(records: &[Tlsa]) -> String {
    let mut sorted = records.to_vec();
    sorted.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for r in &sorted {
        ctx.update(&[r.usage, r.selector, r.matching]);
        ctx.update(&(r.data.len() as u32).to_be_bytes());
        ctx.update(&r.data);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bytes a selector picks from a certificate.
fn selected(cert: &CertificateDer<'_>, selector: u8) -> Option<Vec<u8>> {
    match selector {
        0 => Some(cert.as_ref().to_vec()),
        1 => webpki::EndEntityCert::try_from(cert)
            .ok()
            .map(|c| c.subject_public_key_info().as_ref().to_vec()),
        _ => None,
    }
}

/// Whether `cert` matches `r` (selector and matching type).
pub fn matches(r: &Tlsa, cert: &CertificateDer<'_>) -> bool {
    let Some(bytes) = selected(cert, r.selector) else {
        return false;
    };
    let value: Vec<u8> = match r.matching {
        0 => bytes,
        1 => ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .to_vec(),
        2 => ring::digest::digest(&ring::digest::SHA512, &bytes)
            .as_ref()
            .to_vec(),
        _ => return false,
    };
    // Not secret: the data is public DNS.
    value == r.data
}

/// Why a chain does not satisfy the TLSA records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneError {
    /// No record matches any certificate of the chain.
    #[error("no TLSA record matches the server's certificate chain")]
    NoMatch,
    /// A DANE-TA record matched, but the chain from it is broken.
    #[error("the chain to the DANE-TA trust anchor does not verify: {0}")]
    Chain(String),
    /// A DANE-TA record matched, but the leaf names none of the reference
    /// names.
    #[error("the certificate (DANE-TA) does not name {0}")]
    Name(String),
}

/// Check a server's chain (`chain[0]` the leaf) against usable records,
/// with `names` the reference identifiers for DANE-TA.
pub fn verify(
    chain: &[CertificateDer<'_>],
    records: &[Tlsa],
    names: &[String],
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), DaneError> {
    let Some(leaf) = chain.first() else {
        return Err(DaneError::NoMatch);
    };
    if records.iter().any(|r| r.usage == 3 && matches(r, leaf)) {
        return Ok(());
    }
    let mut last = DaneError::NoMatch;
    for r in records.iter().filter(|r| r.usage == 2) {
        // The anchor: a certificate of the chain that matches, or the
        // record's own full certificate (RFC 7671 §5.2.2 lets a server
        // leave out a TA whose certificate is in DNS).
        let from_dns =
            (r.selector == 0 && r.matching == 0).then(|| CertificateDer::from(r.data.clone()));
        let anchors: Vec<CertificateDer<'_>> = chain
            .iter()
            .filter(|c| matches(r, c))
            .cloned()
            .chain(from_dns)
            .collect();
        for anchor_der in &anchors {
            let anchor = match webpki::anchor_from_trusted_cert(anchor_der) {
                Ok(a) => a,
                Err(e) => {
                    last = DaneError::Chain(format!("unusable anchor: {e}"));
                    continue;
                }
            };
            let ee = match webpki::EndEntityCert::try_from(leaf) {
                Ok(c) => c,
                Err(e) => return Err(DaneError::Chain(e.to_string())),
            };
            // A self-issued leaf that is its own anchor needs no path.
            if anchor_der.as_ref() != leaf.as_ref()
                && let Err(e) = ee.verify_for_usage(
                    algs,
                    &[anchor],
                    &chain[1..],
                    now,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
            {
                last = DaneError::Chain(e.to_string());
                continue;
            }
            let named = names.iter().any(|n| {
                ServerName::try_from(n.as_str())
                    .ok()
                    .is_some_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
            });
            if named {
                return Ok(());
            }
            last = DaneError::Name(names.join(" or "));
        }
    }
    Err(last)
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    struct Pki {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        leaf_spki: Vec<u8>,
        other_ca: CertificateDer<'static>,
    }

    fn pki() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.example.test".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(vec![]).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other_ca = other.self_signed(&other_key).unwrap();
        Pki {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            leaf_spki: rcgen::PublicKeyData::subject_public_key_info(&leaf_key),
            other_ca: other_ca.der().clone(),
        }
    }

    fn check(chain: &[CertificateDer<'_>], recs: &[Tlsa], name: &str) -> Result<(), DaneError> {
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        verify(
            chain,
            &usable(recs),
            &[name.to_string()],
            UnixTime::now(),
            algs,
        )
    }

    #[test]
    fn usable_records() {
        let r = usable(&[
            rec(0, 0, 1, vec![0; 32]),
            rec(1, 1, 1, vec![0; 32]),
            rec(2, 0, 1, vec![0; 32]),
            rec(3, 1, 2, vec![0; 64]),
            rec(3, 1, 1, vec![0; 31]),
            rec(3, 2, 1, vec![0; 32]),
            rec(3, 1, 3, vec![0; 32]),
            rec(4, 1, 1, vec![0; 32]),
        ]);
        assert_eq!(
            r,
            vec![rec(2, 0, 1, vec![0; 32]), rec(3, 1, 2, vec![0; 64])]
        );
    }

    #[test]
    fn dane_ee_matches_leaf_ignoring_names() {
        let p = pki();
        let chain = [p.leaf.clone(), p.ca.clone()];
        let spki = rec(3, 1, 1, sha256(&p.leaf_spki));
        assert_eq!(check(&chain, &[spki.clone()], "other.test"), Ok(()));
        let full = rec(3, 0, 1, sha256(p.leaf.as_ref()));
        assert_eq!(check(&chain, &[full], "other.test"), Ok(()));
        let exact = rec(3, 1, 0, p.leaf_spki.clone());
        assert_eq!(check(&chain, &[exact], "x.test"), Ok(()));
        let sha512 = rec(
            3,
            1,
            2,
            ring::digest::digest(&ring::digest::SHA512, &p.leaf_spki)
                .as_ref()
                .to_vec(),
        );
        assert_eq!(check(&chain, &[sha512], "x.test"), Ok(()));
        // A DANE-EE record for the CA matches nothing: EE is the leaf only.
        let ca = rec(3, 0, 1, sha256(p.ca.as_ref()));
        assert_eq!(
            check(&chain, &[ca], "mx.example.test"),
            Err(DaneError::NoMatch)
        );
        let mut wrong = sha256(&p.leaf_spki);
        wrong[0] ^= 1;
        assert_eq!(
            check(&chain, &[rec(3, 1, 1, wrong)], "mx.example.test"),
            Err(DaneError::NoMatch)
        );
    }

    #[test]
    fn dane_ta_needs_chain_and_name() {
        let p = pki();
        let chain = [p.leaf.clone(), p.ca.clone()];
        let ta = rec(2, 0, 1, sha256(p.ca.as_ref()));
        assert_eq!(check(&chain, &[ta.clone()], "mx.example.test"), Ok(()));
        assert_eq!(
            check(&chain, &[ta.clone()], "other.test"),
            Err(DaneError::Name("other.test".into()))
        );
        // The TA must be in the chain (or in DNS as a full certificate).
        assert_eq!(
            check(&[p.leaf.clone()], &[ta], "mx.example.test"),
            Err(DaneError::NoMatch)
        );
        let full = rec(2, 0, 0, p.ca.as_ref().to_vec());
        assert_eq!(check(&[p.leaf.clone()], &[full], "mx.example.test"), Ok(()));
        // A chain that presents an unrelated CA matching the record does
        // not verify the leaf.
        let other = rec(2, 0, 1, sha256(p.other_ca.as_ref()));
        let forged = [p.leaf.clone(), p.other_ca.clone()];
        assert!(matches!(
            check(&forged, &[other], "mx.example.test"),
            Err(DaneError::Chain(_))
        ));
    }

    #[test]
    fn digest_ignores_order() {
        let a = rec(3, 1, 1, vec![1; 32]);
        let b = rec(2, 0, 1, vec![2; 32]);
        assert_eq!(
            digest(&[a.clone(), b.clone()]),
            digest(&[b.clone(), a.clone()])
        );
        assert_ne!(digest(&[a.clone()]), digest(&[a, b]));
    }
}
