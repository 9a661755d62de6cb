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
use crate::outbound::tlsrpt::result::ResultType;
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

    fn fail(kind: ResultType, text: String) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(CheckError { kind, text }),
        )))
    }
}

/// Why a certificate check failed, in TLS reports' terms; it travels
/// inside the rustls error so the driver can tell the kinds apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct CheckError {
    /// The RFC 8460 failure type.
    pub kind: ResultType,
    /// What was wrong.
    pub text: String,
}

impl CheckError {
    /// The check failure inside a handshake error, if it was one.
    pub fn of_handshake(e: &std::io::Error) -> Option<ResultType> {
        let r = e.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(match r {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
                o.0.downcast_ref::<CheckError>()
                    .map(|c| c.kind)
                    .unwrap_or(ResultType::ValidationFailure)
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet) => {
                ResultType::CertificateExpired
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                ResultType::CertificateNotTrusted
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            ) => ResultType::CertificateHostMismatch,
            _ => ResultType::ValidationFailure,
        })
    }
}

/// The PKIX check: a chain from `ee` through `intermediates` to one of
/// `roots`, valid now, naming one of `names`.
pub fn pkix(
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[TrustAnchor<'_>],
    names: &[String],
    now: UnixTime,
    algs: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> Result<(), CheckError> {
    let ee = webpki::EndEntityCert::try_from(ee).map_err(|e| CheckError {
        kind: ResultType::ValidationFailure,
        text: format!("bad certificate: {e}"),
    })?;
    ee.verify_for_usage(
        algs,
        roots,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| CheckError {
        kind: ResultType::of_webpki(&e),
        text: format!("certificate not trusted: {e}"),
    })?;
    if !pkix_name_ok(&ee, names) {
        return Err(CheckError {
            kind: ResultType::CertificateHostMismatch,
            text: format!("certificate does not name {}", names.join(" or ")),
        });
    }
    Ok(())
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
                    .map_err(|e| {
                        let kind = match e {
                            dane::DaneError::Name(_) => ResultType::CertificateHostMismatch,
                            _ => ResultType::TlsaInvalid,
                        };
                        Verifier::fail(kind, format!("DANE: {e}"))
                    })
            }
            Check::Pkix { roots, names } => {
                pkix(end_entity, intermediates, roots, names, now, algs)
                    .map(|()| ServerCertVerified::assertion())
                    .map_err(|e| Verifier::fail(e.kind, e.text))
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
