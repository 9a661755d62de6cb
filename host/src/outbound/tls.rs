//! Client TLS: opportunistic (no certificate check, as Exim and Postfix do
//! by default; logged as CV=no), with TLS sessions kept per connection key.
//!
//! rustls keys its session store by server name only. We key it by peer IP,
//! port, SNI and our TLS settings instead (Exim 4.96 keys by a hash of the
//! same things), by giving each key its own in-memory store. rustls 0.23
//! cannot serialise client sessions, so they are lost at restart.

use crate::spool::TlsDetails;
use rustls::client::ClientSessionMemoryCache;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Client TLS configurations with per-destination session stores.
pub struct ClientTls {
    base: Arc<ClientConfig>,
    resumption: bool,
    stores: Mutex<HashMap<String, Arc<ClientSessionMemoryCache>>>,
}

const MAX_KEYS: usize = 10_000;

impl ClientTls {
    /// Build; `resumption` off gives every connection a full handshake.
    pub fn new(resumption: bool) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        ClientTls {
            base: Arc::new(cfg),
            resumption,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration for a connection to `addr` with server name `sni`.
    pub fn config_for(&self, addr: SocketAddr, sni: &str) -> Arc<ClientConfig> {
        let mut cfg = (*self.base).clone();
        if self.resumption {
            let key = format!(
                "{}|{}|{}|opportunistic",
                addr.ip(),
                addr.port(),
                sni.to_lowercase()
            );
            let store = {
                let mut m = self.stores.lock().unwrap();
                if m.len() >= MAX_KEYS && !m.contains_key(&key) {
                    m.clear();
                }
                Arc::clone(
                    m.entry(key)
                        .or_insert_with(|| ClientSessionMemoryCache::new(4).into()),
                )
            };
            cfg.resumption = rustls::client::Resumption::store(store);
        } else {
            cfg.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(cfg)
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
