//! The server's certificates: the default one and more chosen by SNI, each
//! with an OCSP response to staple while it is current, reloaded when
//! their files change or on SIGHUP. A handshake picks from the set that is
//! current when it starts, so a reload never disturbs a connection: open
//! sessions keep the certificate they began with, the next handshake gets
//! the new one.

use super::TlsError;
use super::ocsp::{self, Staple, Status};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Where one certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// PEM chain.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
    /// DER OCSP response, if any is configured or present.
    pub ocsp: Option<PathBuf>,
    /// Whether a missing OCSP file is an error (configured explicitly).
    pub ocsp_required: bool,
    /// Another key type for the default certificate's names
    /// (`[[tls.alternative]]`), not an SNI entry of its own.
    pub alternative: bool,
}

/// One loaded certificate.
#[derive(Debug)]
struct Entry {
    plain: Arc<CertifiedKey>,
    stapled: Option<(Arc<CertifiedKey>, Staple)>,
    names: Vec<String>,
}

/// A loaded set: entries in configuration order (the first is the
/// default), names to the entries that serve them (several when they
/// differ in key type).
#[derive(Debug)]
pub struct Certificates {
    entries: Vec<Entry>,
    by_name: HashMap<String, Vec<usize>>,
    /// The default certificate and its alternatives.
    default: Vec<usize>,
    /// Modification times of the files it was loaded from.
    stamps: Vec<Option<SystemTime>>,
}

impl Certificates {
    /// The entry for a server name (exact, then a wildcard for its parent,
    /// else the default) whose key the client can use (`schemes`, its
    /// signature algorithms), an ECDSA or Ed25519 key before an RSA one;
    /// the first when none fits (the handshake then fails as it must).
    fn pick(&self, sni: Option<&str>, schemes: &[rustls::SignatureScheme]) -> &Entry {
        let group = sni
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|n| {
                self.by_name.get(&n).or_else(|| {
                    n.split_once('.')
                        .and_then(|(_, parent)| self.by_name.get(&format!("*.{parent}")))
                })
            })
            .unwrap_or(&self.default);
        let usable = |i: &&usize| self.entries[**i].plain.key.choose_scheme(schemes).is_some();
        let rsa =
            |i: &&usize| self.entries[**i].plain.key.algorithm() == rustls::SignatureAlgorithm::RSA;
        let i = group
            .iter()
            .filter(usable)
            .find(|i| !rsa(i))
            .or_else(|| group.iter().find(usable))
            .unwrap_or(&group[0]);
        &self.entries[*i]
    }

    /// The certified key to present now for `sni` to a client offering
    /// `schemes`: with its staple while that is current.
    pub fn resolve_at(
        &self,
        sni: Option<&str>,
        schemes: &[rustls::SignatureScheme],
        now: i64,
    ) -> Arc<CertifiedKey> {
        let e = self.pick(sni, schemes);
        match &e.stapled {
            Some((ck, s)) if s.this_update <= now + 300 && now < s.next_update => Arc::clone(ck),
            _ => Arc::clone(&e.plain),
        }
    }

    /// The names each certificate answers for (the default's first).
    pub fn names(&self) -> Vec<Vec<String>> {
        self.entries.iter().map(|e| e.names.clone()).collect()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn stamps(sources: &[Source]) -> Vec<Option<SystemTime>> {
    sources
        .iter()
        .flat_map(|s| [Some(&s.cert), Some(&s.key), s.ocsp.as_ref()])
        .map(|p| p.and_then(|p| mtime(p)))
        .collect()
}

fn load_one(src: &Source, provider: &rustls::crypto::CryptoProvider) -> Result<Entry, TlsError> {
    let (certs, key) = super::load_pem(&src.cert, &src.key)?;
    let name = src.cert.display().to_string();
    let ck = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| TlsError::Pem(name.clone(), format!("certificate and key: {e}")))?;
    let leaf = webpki::EndEntityCert::try_from(&ck.cert[0])
        .map_err(|e| TlsError::Pem(name.clone(), e.to_string()))?;
    let names: Vec<String> = leaf
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let serial = leaf.serial().to_vec();
    let stapled = match &src.ocsp {
        Some(p) => match std::fs::read(p) {
            Ok(der) => {
                let staple = ocsp::parse(&der, &serial)
                    .map_err(|e| TlsError::Pem(p.display().to_string(), e.to_string()))?;
                match staple.status {
                    Status::Good => {}
                    Status::Revoked => {
                        tracing::warn!(file = %p.display(), "the OCSP response says the certificate is revoked")
                    }
                    Status::Unknown => {
                        return Err(TlsError::Pem(
                            p.display().to_string(),
                            "the OCSP responder does not know the certificate".into(),
                        ));
                    }
                }
                let mut with = ck.clone();
                with.ocsp = Some(staple.der.clone());
                Some((Arc::new(with), staple))
            }
            Err(_) if !src.ocsp_required => None,
            Err(e) => return Err(TlsError::Io(p.display().to_string(), e)),
        },
        None => None,
    };
    Ok(Entry {
        plain: Arc::new(ck),
        stapled,
        names,
    })
}

/// Load every source (all or nothing).
pub fn load(
    sources: &[Source],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Certificates, TlsError> {
    let before = stamps(sources);
    let mut entries = Vec::new();
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    let mut default = vec![0];
    for (i, s) in sources.iter().enumerate() {
        let e = load_one(s, provider)?;
        if i > 0 && s.alternative {
            default.push(i);
        } else if i > 0 {
            for n in &e.names {
                by_name.entry(n.clone()).or_default().push(i);
            }
        }
        entries.push(e);
    }
    // The default answers for its own names unless SNI entries claim
    // them.
    for n in &entries[0].names {
        by_name.entry(n.clone()).or_insert_with(|| default.clone());
    }
    Ok(Certificates {
        entries,
        by_name,
        default,
        stamps: before,
    })
}

/// The server's certificate resolver: the current set, swapped whole on
/// reload.
#[derive(Debug)]
pub struct CertStore {
    sources: Vec<Source>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<Certificates>>,
}

impl CertStore {
    /// Load `sources` (the first is the default).
    pub fn new(
        sources: Vec<Source>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<CertStore, TlsError> {
        let set = load(&sources, &provider)?;
        Ok(CertStore {
            sources,
            provider,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The set in use.
    pub fn current(&self) -> Arc<Certificates> {
        Arc::clone(&self.current.read().unwrap())
    }

    /// Whether a file changed since the current set was loaded.
    pub fn changed(&self) -> bool {
        stamps(&self.sources) != self.current().stamps
    }

    /// Load the files again and swap the new set in; on an error the
    /// current set stays. `Ok(true)` when something was reloaded.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        if !force && !self.changed() {
            return Ok(false);
        }
        let set = load(&self.sources, &self.provider)?;
        *self.current.write().unwrap() = Arc::new(set);
        Ok(true)
    }

    /// Check the files every `interval` and reload when they change;
    /// `on_result` reports each reload or failure (once per change).
    pub fn watch(
        self: Arc<Self>,
        interval: std::time::Duration,
        on_result: impl Fn(Result<(), TlsError>) + Send + 'static,
    ) {
        tokio::spawn(async move {
            let mut failed_at: Option<Vec<Option<SystemTime>>> = None;
            loop {
                tokio::time::sleep(interval).await;
                if !self.changed() {
                    continue;
                }
                let now = stamps(&self.sources);
                if failed_at.as_ref() == Some(&now) {
                    continue;
                }
                let store = Arc::clone(&self);
                let r = tokio::task::spawn_blocking(move || store.reload(false))
                    .await
                    .unwrap_or(Ok(false));
                match r {
                    Ok(true) => {
                        failed_at = None;
                        on_result(Ok(()));
                    }
                    Ok(false) => {}
                    Err(e) => {
                        failed_at = Some(now);
                        on_result(Err(e));
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().resolve_at(
            hello.server_name(),
            hello.signature_schemes(),
            super::tickets::now() as i64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> Source {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = dir.join(format!("{stem}.pem"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        Source {
            cert: c.clone(),
            key: k,
            ocsp: Some(PathBuf::from(format!("{}.ocsp", c.display()))),
            ocsp_required: false,
            alternative: false,
        }
    }

    /// An RSA-2048 self-signed certificate (ring cannot generate RSA
    /// keys: openssl does).
    fn write_rsa_cert(dir: &Path, stem: &str, names: &[&str]) -> Source {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl");
        let key = rcgen::KeyPair::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let c = dir.join(format!("{stem}.pem"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        Source {
            cert: c,
            key: k,
            ocsp: None,
            ocsp_required: false,
            alternative: false,
        }
    }

    const ALL: &[rustls::SignatureScheme] = &[
        rustls::SignatureScheme::RSA_PSS_SHA256,
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
    ];

    #[test]
    fn alternative_key_types() {
        use rustls::SignatureAlgorithm::{ECDSA, RSA};
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let rsa = write_rsa_cert(dir.path(), "rsa", &["mx.a.test"]);
        let mut ec = write_cert(dir.path(), "ec", &["mx.a.test"]);
        ec.alternative = true;
        let sni_rsa = write_rsa_cert(dir.path(), "sni-rsa", &["mx.b.test"]);
        let sni_ec = write_cert(dir.path(), "sni-ec", &["mx.b.test"]);
        let store = CertStore::new(vec![rsa, ec, sni_rsa, sni_ec], provider).unwrap();
        let set = store.current();
        let alg = |sni: Option<&str>, schemes: &[rustls::SignatureScheme]| {
            set.resolve_at(sni, schemes, 0).key.algorithm()
        };
        // ECDSA to clients that take it, RSA to the others; without SNI
        // and for unknown names too; the same for two SNI entries.
        for sni in [
            None,
            Some("mx.a.test"),
            Some("other.test"),
            Some("mx.b.test"),
        ] {
            assert_eq!(alg(sni, ALL), ECDSA, "{sni:?}");
            assert_eq!(
                alg(sni, &[rustls::SignatureScheme::RSA_PSS_SHA256]),
                RSA,
                "{sni:?}"
            );
        }
        // mx.b.test gets its own certificates, not the default's.
        let b = set.resolve_at(Some("mx.b.test"), ALL, 0);
        assert!(!Arc::ptr_eq(&b, &set.resolve_at(None, ALL, 0)));
        // A client that can use neither gets the first; its handshake
        // fails in rustls as it must.
        assert_eq!(alg(None, &[rustls::SignatureScheme::ED448]), RSA);
    }

    fn leaf_serial(ck: &CertifiedKey) -> Vec<u8> {
        webpki::EndEntityCert::try_from(&ck.cert[0])
            .unwrap()
            .serial()
            .to_vec()
    }

    #[test]
    fn sni_staples_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let a = write_cert(dir.path(), "a", &["mx.a.test"]);
        let b = write_cert(dir.path(), "b", &["*.b.test", "b.test"]);
        let store = CertStore::new(vec![a.clone(), b.clone()], provider).unwrap();
        let set = store.current();
        let a_ck = set.resolve_at(None, ALL, 0);
        assert!(Arc::ptr_eq(
            &set.resolve_at(Some("mx.a.test"), ALL, 0),
            &a_ck
        ));
        assert!(Arc::ptr_eq(
            &set.resolve_at(Some("unknown.test"), ALL, 0),
            &a_ck
        ));
        let b_ck = set.resolve_at(Some("MX.b.test."), ALL, 0);
        assert!(!Arc::ptr_eq(&b_ck, &a_ck));
        assert!(Arc::ptr_eq(&set.resolve_at(Some("b.test"), ALL, 0), &b_ck));
        assert!(a_ck.ocsp.is_none());

        // A staple for A: served between thisUpdate and nextUpdate only.
        let serial = leaf_serial(&a_ck);
        let resp = ocsp::tests::response(&serial, 0x80, Some("20261208000000Z"));
        std::fs::write(a.ocsp.as_ref().unwrap(), &resp).unwrap();
        assert!(store.reload(true).unwrap());
        let set = store.current();
        let this = 1_796_083_200; // 2026-12-01T00:00:00Z
        assert_eq!(
            set.resolve_at(None, ALL, this + 10).ocsp.as_deref(),
            Some(&resp[..])
        );
        assert!(set.resolve_at(None, ALL, this + 8 * 86400).ocsp.is_none());
        assert!(set.resolve_at(None, ALL, this - 86400).ocsp.is_none());
        // The old set is still whole for whoever holds it.
        assert!(a_ck.ocsp.is_none());

        // A staple for another certificate is refused; the old set stays.
        let other = ocsp::tests::response(&[9, 9, 9], 0x80, Some("20261208000000Z"));
        std::fs::write(a.ocsp.as_ref().unwrap(), &other).unwrap();
        assert!(store.reload(true).is_err());
        assert!(
            store
                .current()
                .resolve_at(None, ALL, this + 10)
                .ocsp
                .is_some()
        );

        // A new certificate in place of B is picked up.
        std::fs::remove_file(a.ocsp.as_ref().unwrap()).unwrap();
        write_cert(dir.path(), "b", &["*.b.test"]);
        assert!(store.reload(true).unwrap());
        let b2 = store.current().resolve_at(Some("x.b.test"), ALL, 0);
        assert_ne!(b2.cert[0], b_ck.cert[0]);
        // A key that does not match its certificate is refused.
        let c = write_cert(dir.path(), "c", &["c.test"]);
        std::fs::copy(&a.key, &c.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert!(CertStore::new(vec![c], provider).is_err());
    }
}
