//! HTTPS connections for the gateway's own web requests (MTA-STS policy
//! fetches, TLS report POSTs): the host resolved by the gateway's
//! resolver, never the system's; rustls with webpki against the trusted
//! CAs and the name; a certificate failure kept apart from other failures,
//! as TLS reports distinguish them.

use crate::dns::Dns;
use rustls::pki_types::{ServerName, TrustAnchor};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// DNS, TCP or a TLS failure other than the certificate.
    #[error("{0}")]
    Connect(String),
    /// The server's certificate did not validate.
    #[error("{0}")]
    Certificate(String),
}

/// The client side: trusted CAs and the TLS configuration.
pub struct Https {
    tls: Arc<rustls::ClientConfig>,
}

impl Https {
    /// Trusting `roots` (none: every certificate check fails).
    pub fn new(roots: Vec<TrustAnchor<'static>>) -> Https {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let store = rustls::RootCertStore { roots };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        )
        .build();
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions");
        let cfg = match verifier {
            Ok(v) => cfg.with_webpki_verifier(v).with_no_client_auth(),
            Err(_) => cfg
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        Https { tls: Arc::new(cfg) }
    }

    /// A TLS connection to `host` on `port`, trying its addresses in turn.
    pub async fn connect(
        &self,
        dns: &Dns,
        host: &str,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let f = |s: String| ConnectError::Connect(s);
        let ips = dns
            .lookup_ip(host)
            .await
            .map_err(|e| f(format!("{host}: {e}")))?;
        let mut last = f(format!("{host} has no address"));
        for ip in ips {
            let tcp = match TcpStream::connect((ip, port)).await {
                Ok(t) => t,
                Err(e) => {
                    last = f(format!("connect to {host} [{ip}]:{port}: {e}"));
                    continue;
                }
            };
            let name = ServerName::try_from(host.to_string()).map_err(|e| f(e.to_string()))?;
            return tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    let cert = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| {
                            matches!(
                                r,
                                rustls::Error::InvalidCertificate(_)
                                    | rustls::Error::NoCertificatesPresented
                            )
                        });
                    if cert {
                        ConnectError::Certificate(format!("TLS with {host}: {e}"))
                    } else {
                        f(format!("TLS with {host}: {e}"))
                    }
                });
        }
        Err(last)
    }
}
