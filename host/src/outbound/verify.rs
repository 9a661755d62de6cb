//! The client's certificate check, one per connection: none (opportunistic
//! and `encrypt`), DANE against the destination's TLSA records, or PKIX
//! against trusted CAs with the policy's names (`verify`, `secure`).
//!
//! The check runs inside the handshake (rustls calls
//! [`ServerCertVerifier::verify_server_cert`] before the server's
//! CertificateVerify is accepted), and the handshake signatures are always
//! checked with the provider's algorithms: a server that merely replays
//! another's certificate, without its private key, fails here whatever the
//! certificate matches.

use super::dane;
use crate::dns::Tlsa;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// What the certificate must satisfy.
#[derive(Debug, Clone)]
pub enum Check {
    /// Nothing (the connection is encrypted, not authenticated).
    None,
    /// Usable TLSA records; `names` are the DANE-TA reference identifiers.
    Dane {
        /// The usable records.
        records: Vec<Tlsa>,
        /// TLSA base domain, MX host name, next-hop domain.
        names: Vec<String>,
    },
    /// A chain to one of `roots`, and a name matching one of `names`
    /// (literal names, or `.domain` for any name below it).
    Pkix {
        /// Trusted CAs.
        roots: Arc<Vec<TrustAnchor<'static>>>,
        /// Acceptable names.
        names: Vec<String>,
    },
}

/// A [`ServerCertVerifier`] for one [`Check`].
#[derive(Debug)]
pub struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(check: Check, provider: Arc<CryptoProvider>) -> Verifier {
        Verifier { check, provider }
    }

    fn fail(reason: String) -> rustls::Error {
        rustls::Error::General(reason)
    }
}

/// Whether the leaf carries a name in `names` (`.domain`: any name strictly
/// below the domain; a wildcard `*.domain` counts).
fn pkix_name_ok(ee: &webpki::EndEntityCert<'_>, names: &[String]) -> bool {
    names.iter().any(|n| {
        if let Some(parent) = n.strip_prefix('.') {
            let parent = parent.to_ascii_lowercase();
            ee.valid_dns_names()
                .any(|d| d.to_ascii_lowercase().ends_with(&format!(".{parent}")))
        } else {
            ServerName::try_from(n.as_str())
                .ok()
                .is_some_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
        }
    })
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let algs = self.provider.signature_verification_algorithms.all;
        match &self.check {
            Check::None => Ok(ServerCertVerified::assertion()),
            Check::Dane { records, names } => {
                let mut chain = vec![end_entity.clone()];
                chain.extend(intermediates.iter().cloned());
                dane::verify(&chain, records, names, now, algs)
                    .map(|()| ServerCertVerified::assertion())
                    .map_err(|e| Verifier::fail(format!("DANE: {e}")))
            }
            Check::Pkix { roots, names } => {
                let ee = webpki::EndEntityCert::try_from(end_entity)
                    .map_err(|e| Verifier::fail(format!("bad certificate: {e}")))?;
                ee.verify_for_usage(
                    algs,
                    roots,
                    intermediates,
                    now,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .map_err(|e| Verifier::fail(format!("certificate not trusted: {e}")))?;
                if !pkix_name_ok(&ee, names) {
                    return Err(Verifier::fail(format!(
                        "certificate does not name {}",
                        names.join(" or ")
                    )));
                }
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Trust anchors from PEM files (the system bundle and extra CA files);
/// unreadable files are skipped with a warning, bad certificates too.
pub fn load_roots(files: &[std::path::PathBuf]) -> Vec<TrustAnchor<'static>> {
    let mut roots = Vec::new();
    for f in files {
        let Ok(pem) = std::fs::read(f) else {
            tracing::warn!(file = %f.display(), "CA file unreadable");
            continue;
        };
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            match webpki::anchor_from_trusted_cert(&cert) {
                Ok(a) => roots.push(a.to_owned()),
                Err(e) => {
                    tracing::debug!(file = %f.display(), error = %e, "CA certificate skipped")
                }
            }
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn pkix_names() {
        let c = cert(&["mx1.example.com", "*.mail.example.net"]);
        let ee = webpki::EndEntityCert::try_from(&c).unwrap();
        let ok =
            |n: &[&str]| pkix_name_ok(&ee, &n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["mx1.example.com"]));
        assert!(ok(&["MX1.example.COM"]));
        assert!(!ok(&["example.com"]));
        assert!(ok(&[".example.com"]));
        assert!(!ok(&[".mx1.example.com"]));
        assert!(ok(&["a.mail.example.net"]));
        assert!(ok(&[".mail.example.net"]));
        assert!(ok(&[".example.net"]));
        assert!(!ok(&[".other.net", "other.net"]));
    }
}
