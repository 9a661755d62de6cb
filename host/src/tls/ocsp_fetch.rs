//! Fetching OCSP responses for our own certificates (`tls.ocsp_fetch`):
//! the responder from the certificate's Authority Information Access
//! extension, a request for the certificate (RFC 6960 §4.1, SHA-1 CertID as
//! responders expect), POSTed over HTTP, the answer checked to be a
//! successful, current response about this certificate and written to the
//! certificate's OCSP file (atomically), where the certificate store picks
//! it up as it does any changed file. Refreshed at half the validity of the
//! current response; a failed fetch keeps the file as it is.

use super::certs::Source;
use super::ocsp::{self, Staple};
use http_body_util::BodyExt;
use std::time::Duration;

/// Why no response was fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OCSP fetch for {cert}: {reason}")]
pub struct FetchError {
    /// The certificate file.
    pub cert: String,
    /// What went wrong.
    pub reason: String,
}

fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    ocsp::tlv(input).ok()
}

const OID_AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
const OID_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

/// The OCSP responder URL in a certificate's AIA extension.
pub fn responder_url(cert_der: &[u8]) -> Option<String> {
    let (_, cert, _) = element(cert_der)?;
    let (_, tbs, _) = element(cert)?;
    // Walk the TBSCertificate to its [3] extensions.
    let mut rest = tbs;
    while !rest.is_empty() {
        let (tag, content, next) = element(rest)?;
        rest = next;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = element(content)?;
        while !exts.is_empty() {
            let (_, ext, next) = element(exts)?;
            exts = next;
            let (_, oid, after) = element(ext)?;
            if oid != OID_AIA {
                continue;
            }
            // Optional critical BOOLEAN, then the OCTET STRING.
            let (mut tag, mut value, mut after) = element(after)?;
            if tag == 0x01 {
                (tag, value, after) = element(after)?;
            }
            let _ = after;
            if tag != 0x04 {
                return None;
            }
            let (_, mut descs, _) = element(value)?;
            while !descs.is_empty() {
                let (_, desc, next) = element(descs)?;
                descs = next;
                let (_, method, loc) = element(desc)?;
                let (ltag, uri, _) = element(loc)?;
                if method == OID_OCSP && ltag == 0x86 {
                    return String::from_utf8(uri.to_vec()).ok();
                }
            }
        }
    }
    None
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 128 {
        v.push(n as u8);
    } else if n < 256 {
        v.extend([0x81, n as u8]);
    } else {
        v.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

/// An OCSP request for `leaf`, issued by `issuer` (both DER).
pub fn request(leaf: &[u8], issuer: &[u8]) -> Option<Vec<u8>> {
    let (leaf, issuer) = (
        rustls::pki_types::CertificateDer::from(leaf),
        rustls::pki_types::CertificateDer::from(issuer),
    );
    let l = webpki::EndEntityCert::try_from(&leaf).ok()?;
    let i = webpki::EndEntityCert::try_from(&issuer).ok()?;
    let sha1 = |b: &[u8]| ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b);
    let name_hash = sha1(&der(0x30, i.subject()));
    let spki = i.subject_public_key_info();
    let (_, spki_inner, _) = element(spki.as_ref())?;
    let (_, _alg, rest) = element(spki_inner)?;
    let (tag, bits, _) = element(rest)?;
    if tag != 0x03 || bits.is_empty() {
        return None;
    }
    let key_hash = sha1(&bits[1..]);
    let alg = der(
        0x30,
        &[der(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a]), vec![0x05, 0x00]].concat(),
    );
    let mut serial = l.serial().to_vec();
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    let cert_id = der(
        0x30,
        &[
            alg,
            der(0x04, name_hash.as_ref()),
            der(0x04, key_hash.as_ref()),
            der(0x02, &serial),
        ]
        .concat(),
    );
    let request = der(0x30, &cert_id);
    let list = der(0x30, &request);
    let tbs = der(0x30, &list);
    Some(der(0x30, &tbs))
}

/// POST `body` to an `http://` URL; the response body (at most 64 KiB).
async fn post(dns: &crate::dns::Dns, url: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("responder {url} is not http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?,
        ),
        None => (authority, 80),
    };
    let ips = dns
        .lookup_ip(host.trim_start_matches('[').trim_end_matches(']'))
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let ip = *ips
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<hyper::body::Bytes>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/ocsp-request")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("responder answered {}", resp.status()));
    }
    let mut b = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = b.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            out.extend_from_slice(d);
            if out.len() > 64 * 1024 {
                return Err("response larger than 64 KiB".into());
            }
        }
    }
    Ok(out)
}

/// The staple currently on disk for `src`, if it is valid for `serial`.
fn on_disk(src: &Source, serial: &[u8]) -> Option<Staple> {
    let der = std::fs::read(src.ocsp.as_ref()?).ok()?;
    ocsp::parse(&der, serial).ok()
}

/// When the staple of `src` should be fetched again (Unix time): at half
/// its validity; now when there is none.
fn due(src: &Source, serial: &[u8]) -> i64 {
    match on_disk(src, serial) {
        Some(s) => s.this_update + (s.next_update - s.this_update) / 2,
        None => 0,
    }
}

/// Fetch and store a fresh response for `src` if one is due; returns
/// when to look again.
pub async fn refresh(
    dns: &crate::dns::Dns,
    src: &Source,
    timeout: Duration,
) -> Result<i64, FetchError> {
    let fail = |reason: String| FetchError {
        cert: src.cert.display().to_string(),
        reason,
    };
    let (certs, _) = super::load_pem(&src.cert, &src.key).map_err(|e| fail(e.to_string()))?;
    if certs.len() < 2 {
        return Err(fail("the chain has no issuer certificate".into()));
    }
    let leaf = webpki::EndEntityCert::try_from(&certs[0]).map_err(|e| fail(e.to_string()))?;
    let serial = leaf.serial().to_vec();
    let now = chrono::Utc::now().timestamp();
    let at = due(src, &serial);
    if at > now {
        return Ok(at);
    }
    let url = responder_url(certs[0].as_ref())
        .ok_or_else(|| fail("the certificate names no OCSP responder".into()))?;
    let req = request(certs[0].as_ref(), certs[1].as_ref())
        .ok_or_else(|| fail("cannot build the request".into()))?;
    let body = tokio::time::timeout(timeout, post(dns, &url, req))
        .await
        .map_err(|_| fail(format!("{url}: timed out")))?
        .map_err(|e| fail(format!("{url}: {e}")))?;
    let staple = ocsp::parse(&body, &serial).map_err(|e| fail(format!("{url}: {e}")))?;
    if staple.next_update <= now {
        return Err(fail(format!("{url}: the response is already stale")));
    }
    let path = src
        .ocsp
        .as_ref()
        .ok_or_else(|| fail("no OCSP file to write".into()))?;
    let tmp = path.with_extension("ocsp.tmp");
    std::fs::write(&tmp, &body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(staple.this_update + (staple.next_update - staple.this_update) / 2)
}

/// Keep the staples of `sources` fresh: each is looked at when due (and
/// at least every hour; after a failure, in five minutes).
pub fn spawn(
    dns: std::sync::Arc<crate::dns::Dns>,
    sources: Vec<Source>,
    on_error: impl Fn(FetchError) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now().timestamp();
            let mut next = now + 3600;
            for s in &sources {
                match refresh(&dns, s, Duration::from_secs(30)).await {
                    Ok(at) => next = next.min(at.max(now + 10)),
                    Err(e) => {
                        next = next.min(now + 300);
                        on_error(e);
                    }
                }
            }
            let wait = (next - chrono::Utc::now().timestamp()).max(1) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    });
}
