//! Fetching a policy (RFC 8461 §3.3): `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! over rustls with the certificate checked against the trusted CAs and
//! the name, through hyper's HTTP/1.1 client; no redirects, a size cap,
//! `text/plain` only, one deadline for the whole exchange. The host name is
//! resolved by the gateway's resolver, never the system's.

use crate::dns::Dns;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// RFC 8461 §3.3: policy bodies are at most 64 KiB.
pub const MAX_POLICY: usize = 64 * 1024;

/// Why a fetch failed, in the classes TLS reports distinguish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// DNS, connect, HTTP status, redirect, size, type, timeout
    /// (`sts-policy-fetch-error`).
    #[error("MTA-STS policy fetch failed: {0}")]
    Fetch(String),
    /// The HTTPS certificate did not validate (`sts-webpki-invalid`).
    #[error("MTA-STS policy host certificate invalid: {0}")]
    Certificate(String),
}

/// The HTTPS client side.
pub struct Fetcher {
    https: Arc<crate::outbound::https::Https>,
    port: u16,
    timeout: Duration,
}

impl Fetcher {
    /// Over `https`; policy hosts on `port` (443 but in tests).
    pub fn new(https: Arc<crate::outbound::https::Https>, port: u16, timeout: Duration) -> Fetcher {
        Fetcher {
            https,
            port,
            timeout,
        }
    }

    /// The policy text of `domain`.
    pub async fn fetch(&self, dns: &Dns, domain: &str) -> Result<String, FetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_inner(dns, domain)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Fetch("timed out".into())),
        }
    }

    async fn fetch_inner(&self, dns: &Dns, domain: &str) -> Result<String, FetchError> {
        use crate::outbound::https::ConnectError;
        let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
        let tls = self
            .https
            .connect(dns, &host, self.port)
            .await
            .map_err(|e| match e {
                ConnectError::Connect(t) => FetchError::Fetch(t),
                ConnectError::Certificate(t) => FetchError::Certificate(t),
            })?;
        get(tls, &host).await
    }
}

/// GET the well-known path over an established connection.
async fn get<S>(io: S, host: &str) -> Result<String, FetchError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let f = |s: String| FetchError::Fetch(s);
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<hyper::body::Bytes>,
    >(hyper_util::rt::TokioIo::new(io))
    .await
    .map_err(|e| f(format!("HTTP with {host}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get("/.well-known/mta-sts.txt")
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "mailgate")
        .body(http_body_util::Empty::new())
        .map_err(|e| f(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| f(format!("HTTP with {host}: {e}")))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(f(format!(
            "{host} answered {status}: redirects are not followed (RFC 8461 §3.3)"
        )));
    }
    if status != hyper::StatusCode::OK {
        return Err(f(format!("{host} answered {status}")));
    }
    let ctype = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.trim().to_ascii_lowercase().starts_with("text/plain") {
        return Err(f(format!(
            "{host} sent Content-Type {ctype:?}, not text/plain"
        )));
    }
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| f(format!("HTTP body from {host}: {e}")))?;
        if let Some(d) = frame.data_ref() {
            text.extend_from_slice(d);
            if text.len() > MAX_POLICY {
                return Err(f(format!(
                    "policy from {host} is larger than {MAX_POLICY} octets"
                )));
            }
        }
    }
    String::from_utf8(text).map_err(|_| f(format!("policy from {host} is not UTF-8")))
}
