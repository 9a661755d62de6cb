//! rustls server configuration: certificates (configured, or a self-signed
//! one generated on first start and kept in the data directory; more by
//! SNI; OCSP staples; reloaded on change, see [`certs`]) and session
//! tickets whose keys are rotated and kept in the cache database, so that
//! resumption (TLS 1.2 tickets and TLS 1.3 PSK) survives a restart
//! ([`tickets`]).

mod certs;
pub mod ocsp;
pub mod ocsp_fetch;
mod shared_tickets;
mod tickets;

pub use certs::{CertStore, Certificates, Source};
pub use shared_tickets::SharedTicketer;
pub use tickets::PersistentTicketer;

use crate::config::Config;
use crate::spool::TlsDetails;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, ServerConnection};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors while setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// PEM content was unusable.
    #[error("{0}: {1}")]
    Pem(String, String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The cache database failed.
    #[error("cache database: {0}")]
    Cache(String),
}

pub(super) fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cname = cert.display().to_string();
    let kname = key.display().to_string();
    let cbytes = std::fs::read(cert).map_err(|e| TlsError::Io(cname.clone(), e))?;
    let kbytes = std::fs::read(key).map_err(|e| TlsError::Io(kname.clone(), e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cbytes[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(cname.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(cname, "no CERTIFICATE block found".into()));
    }
    let key = rustls_pemfile::private_key(&mut &kbytes[..])
        .map_err(|e| TlsError::Pem(kname.clone(), e.to_string()))?
        .ok_or_else(|| TlsError::Pem(kname, "no PRIVATE KEY block found".into()))?;
    Ok((certs, key))
}

/// The OCSP file of a certificate: configured, or `<cert>.ocsp`.
fn ocsp_source(cert: &Path, configured: Option<&PathBuf>) -> (Option<PathBuf>, bool) {
    match configured {
        Some(p) => (Some(p.clone()), true),
        None => (
            Some(PathBuf::from(format!("{}.ocsp", cert.display()))),
            false,
        ),
    }
}

/// Where the certificates come from: the configured default (or the
/// self-signed one in `<data_dir>/tls/`, generated on first use), then the
/// SNI ones.
pub fn sources(cfg: &Config) -> Result<Vec<Source>, TlsError> {
    let default = match (&cfg.tls.certificate, &cfg.tls.private_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => self_signed(cfg)?,
    };
    let (ocsp, required) = ocsp_source(&default.0, cfg.tls.ocsp.as_ref());
    let mut v = vec![Source {
        cert: default.0,
        key: default.1,
        ocsp,
        ocsp_required: required,
        alternative: false,
    }];
    for (s, alternative) in cfg
        .tls
        .alternative
        .iter()
        .map(|s| (s, true))
        .chain(cfg.tls.sni.iter().map(|s| (s, false)))
    {
        let (ocsp, required) = ocsp_source(&s.certificate, s.ocsp.as_ref());
        v.push(Source {
            cert: s.certificate.clone(),
            key: s.private_key.clone(),
            ocsp,
            ocsp_required: required,
            alternative,
        });
    }
    Ok(v)
}

/// The self-signed certificate's files, made on first use.
fn self_signed(cfg: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = cfg.server.data_dir.join("tls");
    let c = dir.join("selfsigned-cert.pem");
    let k = dir.join("selfsigned-key.pem");
    if c.exists() && k.exists() {
        return Ok((c, k));
    }
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Io(dir.display().to_string(), e))?;
    let ck = rcgen::generate_simple_self_signed(vec![cfg.server.hostname.clone()])
        .map_err(|e| TlsError::Pem("self-signed certificate".into(), e.to_string()))?;
    std::fs::write(&c, ck.cert.pem()).map_err(|e| TlsError::Io(c.display().to_string(), e))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&k)
            .map_err(|e| TlsError::Io(k.display().to_string(), e))?;
        f.write_all(ck.signing_key.serialize_pem().as_bytes())
            .map_err(|e| TlsError::Io(k.display().to_string(), e))?;
    }
    tracing::info!(certificate = %c.display(), "generated a self-signed certificate");
    Ok((c, k))
}

/// Build the server configuration, with the certificate store it serves
/// from (for reloads). Ticket keys come from the pool's Redis when the
/// store has one, else from this node's cache.
pub async fn server_config(
    cfg: &Config,
    shared: &crate::store::Store,
) -> Result<(Arc<ServerConfig>, Arc<CertStore>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertStore::new(sources(cfg)?, Arc::clone(&provider))?);
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&store) as Arc<dyn rustls::server::ResolvesServerCert>);
    if cfg.server.tls_resumption {
        let lifetime = cfg.tls.ticket_lifetime.0.min(u64::from(u32::MAX)) as u32;
        let rotation = cfg.tls.ticket_key_rotation.0.max(60);
        sc.ticketer = match shared.redis() {
            Some(r) => Arc::new(SharedTicketer::load(Arc::clone(r), lifetime, rotation).await?),
            None => Arc::new(PersistentTicketer::new(
                shared.cache().clone(),
                lifetime,
                rotation,
            )?),
        };
        sc.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    } else {
        sc.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        sc.send_tls13_tickets = 0;
    }
    Ok((Arc::new(sc), store))
}

/// Version, cipher, key bits and resumption of an established
/// connection (server or client side).
pub fn common_details(conn: &rustls::CommonState) -> TlsDetails {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2",
        _ => "TLS",
    };
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let cipher = suite
        .strip_prefix("TLS13_")
        .map_or(suite.clone(), |s| format!("TLS_{s}"));
    TlsDetails {
        version: version.into(),
        bits: if cipher.contains("128") { 128 } else { 256 },
        cipher,
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        sni: None,
    }
}

/// Describe an established server connection for logs and headers.
pub fn details(conn: &ServerConnection) -> TlsDetails {
    TlsDetails {
        sni: conn.server_name().map(str::to_string),
        ..common_details(conn)
    }
}
