//! Client TLS configurations: one per connection, with the certificate
//! check its plan asks for ([`super::verify`]), and TLS sessions kept per
//! connection key.
//!
//! rustls keys its session store by server name only. We key it by peer IP,
//! port, SNI and the certificate check (its kind, the TLSA set's digest or
//! the names and CAs; Exim 4.96 keys by a hash of the same things), by
//! giving each key its own in-memory store, so a session verified under one
//! policy or TLSA set is never resumed under another. rustls 0.23 cannot
//! serialise client sessions, so they are lost at restart.

use super::policy::Auth;
use super::verify::{Check, Verifier};
use crate::config::TlsPolicy;
use crate::spool::TlsDetails;
use rustls::ClientConfig;
use rustls::client::ClientSessionMemoryCache;
use rustls::pki_types::{ServerName, TrustAnchor};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Debian's (and most systems') bundle of trusted CAs.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

type Roots = Arc<Vec<TrustAnchor<'static>>>;

/// Client TLS configurations with per-destination verifiers and session
/// stores.
pub struct ClientTls {
    base: Arc<ClientConfig>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    resumption: bool,
    configs: Mutex<HashMap<String, Arc<ClientConfig>>>,
    /// Extra CA file trusted besides the system roots.
    extra_ca: Option<PathBuf>,
    /// Loaded CA sets, by file (`None`: system roots plus the extra file).
    roots: Mutex<HashMap<Option<PathBuf>, Roots>>,
}

/// The certificate check for one connection, and its session-cache tag.
#[derive(Clone)]
pub struct Verification {
    /// The verifier to install.
    pub verifier: Arc<Verifier>,
    /// What distinguishes it for TLS session resumption.
    pub tag: String,
}

const MAX_KEYS: usize = 10_000;

impl ClientTls {
    /// Build; `resumption` off gives every connection a full handshake;
    /// `extra_ca` is trusted besides the system roots at PKIX levels.
    pub fn new(resumption: bool, extra_ca: Option<PathBuf>) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new(
                Check::None,
                provider.clone(),
            )))
            .with_no_client_auth();
        ClientTls {
            base: Arc::new(cfg),
            provider,
            resumption,
            configs: Mutex::new(HashMap::new()),
            extra_ca,
            roots: Mutex::new(HashMap::new()),
        }
    }

    fn roots(&self, ca_file: Option<&PathBuf>) -> Roots {
        let key = ca_file.cloned();
        let mut m = self.roots.lock().unwrap();
        Arc::clone(m.entry(key).or_insert_with(|| {
            let files: Vec<PathBuf> = match ca_file {
                Some(f) => vec![f.clone()],
                None => std::iter::once(PathBuf::from(SYSTEM_ROOTS))
                    .chain(self.extra_ca.clone())
                    .collect(),
            };
            Arc::new(super::verify::load_roots(&files))
        }))
    }

    /// Whether `chain` (leaf first) passes the PKIX check against the
    /// system roots and the extra CA file for one of `names`: what an
    /// MTA-STS policy in `testing` mode would have demanded, checked after
    /// the fact for the report.
    pub fn check_pkix(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'static>],
        names: &[String],
    ) -> Result<(), super::verify::CheckError> {
        let Some((ee, rest)) = chain.split_first() else {
            return Err(super::verify::CheckError {
                kind: super::tlsrpt::result::ResultType::ValidationFailure,
                text: "no certificate".into(),
            });
        };
        super::verify::pkix(
            ee,
            rest,
            &self.roots(None),
            names,
            rustls::pki_types::UnixTime::now(),
            self.provider.signature_verification_algorithms.all,
        )
    }

    /// The check a plan's `auth` asks for towards `host` (next hop
    /// `nexthop`, DANE-TA names `dane_names`) under `policy`.
    pub fn verification(
        &self,
        auth: &Auth,
        policy: &TlsPolicy,
        host: &str,
        nexthop: &str,
        dane_names: &[String],
    ) -> Verification {
        let (check, tag) = match auth {
            Auth::None => (Check::None, "none".to_string()),
            Auth::Dane(records) => (
                Check::Dane {
                    records: records.clone(),
                    names: dane_names.to_vec(),
                },
                format!(
                    "dane:{}:{}",
                    super::dane::digest(records),
                    dane_names.join(",")
                ),
            ),
            Auth::Pkix => {
                let names: Vec<String> = policy
                    .names()
                    .into_iter()
                    .map(|n| match n.as_str() {
                        "hostname" => host.to_ascii_lowercase(),
                        "nexthop" => nexthop.to_ascii_lowercase(),
                        "dot-nexthop" => format!(".{}", nexthop.to_ascii_lowercase()),
                        _ => n.to_ascii_lowercase(),
                    })
                    .collect();
                let tag = format!(
                    "pkix:{}:{}",
                    names.join(","),
                    policy
                        .ca_file
                        .as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default()
                );
                (
                    Check::Pkix {
                        roots: self.roots(policy.ca_file.as_ref()),
                        names,
                    },
                    tag,
                )
            }
        };
        Verification {
            verifier: Arc::new(Verifier::new(check, self.provider.clone())),
            tag,
        }
    }

    /// The configuration for a connection to `addr` with server name `sni`
    /// and certificate check `v`. With resumption, one configuration (its
    /// verifier and session store) per key: rustls resumes a session only
    /// under the verifier that verified it.
    pub fn config_for(&self, addr: SocketAddr, sni: &str, v: Verification) -> Arc<ClientConfig> {
        let build = |v: Verification, resumption: rustls::client::Resumption| {
            let mut cfg = (*self.base).clone();
            cfg.dangerous().set_certificate_verifier(v.verifier);
            cfg.resumption = resumption;
            Arc::new(cfg)
        };
        if !self.resumption {
            return build(v, rustls::client::Resumption::disabled());
        }
        let key = format!(
            "{}|{}|{}|{}",
            addr.ip(),
            addr.port(),
            sni.to_lowercase(),
            v.tag
        );
        let mut m = self.configs.lock().unwrap();
        if m.len() >= MAX_KEYS && !m.contains_key(&key) {
            m.clear();
        }
        Arc::clone(m.entry(key).or_insert_with(|| {
            let store = Arc::new(ClientSessionMemoryCache::new(4));
            build(v, rustls::client::Resumption::store(store))
        }))
    }
}

/// The server name to present: the host name, or the IP for literals.
pub fn server_name(host: &str, addr: SocketAddr) -> ServerName<'static> {
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
}

/// Describe an established client connection.
pub fn details(conn: &rustls::ClientConnection) -> TlsDetails {
    crate::tls::common_details(conn)
}
