//! Where a domain wants its TLS reports (RFC 8460 §3): the `_smtp._tls`
//! TXT record's `rua` list of `mailto:` and `https:` URIs, and the HTTPS
//! submission (§5.4: a POST of the gzipped report as
//! `application/tlsrpt+gzip`; any 2xx is a success).

use crate::dns::Dns;
use crate::outbound::https::Https;
use std::time::Duration;

/// One reporting destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    /// Mail to this address.
    Mailto(String),
    /// POST to this URL.
    Https(String),
}

/// Why a record is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLSRPT record: {0}")]
pub struct RecordError(pub String);

/// The destinations of a `_smtp._tls` TXT RRset (each entry one record,
/// its strings joined); `Ok(None)` when none is a TLSRPT record. Several
/// TLSRPT records, a missing or empty `rua`, or an unknown URI scheme
/// only (RFC 8460 §3: unknown schemes are ignored) are errors.
pub fn parse(txts: &[String]) -> Result<Option<Vec<Rua>>, RecordError> {
    let recs: Vec<&String> = txts
        .iter()
        .filter(|t| {
            t.trim_start()
                .strip_prefix("v=TLSRPTv1")
                .map(str::trim_start)
                .is_some_and(|r| r.is_empty() || r.starts_with(';'))
        })
        .collect();
    let rec = match recs.as_slice() {
        [] => return Ok(None),
        [r] => r,
        _ => return Err(RecordError("more than one v=TLSRPTv1 record".into())),
    };
    let mut rua = None;
    for field in rec.split(';').skip(1) {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let Some((k, v)) = field.split_once('=') else {
            return Err(RecordError(format!("bad field {field:?}")));
        };
        if k.trim().eq_ignore_ascii_case("rua") {
            rua = Some(v.trim().to_string());
        }
    }
    let Some(rua) = rua else {
        return Err(RecordError("no rua".into()));
    };
    let mut out = Vec::new();
    for uri in rua.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let lower = uri.to_ascii_lowercase();
        if lower.starts_with("mailto:") {
            let addr = crate::smtp::command::unescape_hex(&uri[7..], b'%');
            let addr = addr.split('?').next().unwrap_or("").to_string();
            if !addr.contains('@') {
                return Err(RecordError(format!("bad mailto address in {uri:?}")));
            }
            out.push(Rua::Mailto(addr));
        } else if lower.starts_with("https://") {
            if uri.parse::<hyper::Uri>().is_err() {
                return Err(RecordError(format!("bad URL {uri:?}")));
            }
            out.push(Rua::Https(uri.to_string()));
        }
    }
    if out.is_empty() {
        return Err(RecordError(format!("no usable rua in {rua:?}")));
    }
    Ok(Some(out))
}

/// Join a TXT record's presentation strings (`"a" "b"` -> `ab`).
pub fn txt_text(presentation: &str) -> String {
    let t = presentation.trim();
    if t.starts_with('"') {
        t.trim_matches('"').replace("\" \"", "")
    } else {
        t.to_string()
    }
}

/// POST `gz` to `url` (`https://host[:port]/path`), within `timeout`.
pub async fn post(
    https: &Https,
    dns: &Dns,
    url: &str,
    gz: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, post_inner(https, dns, url, gz)).await {
        Ok(r) => r,
        Err(_) => Err(format!("{url}: timed out")),
    }
}

async fn post_inner(https: &Https, dns: &Dns, url: &str, gz: Vec<u8>) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let tls = https
        .connect(dns, host, port)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<hyper::body::Bytes>,
    >(hyper_util::rt::TokioIo::new(tls))
    .await
    .map_err(|e| format!("HTTP with {host}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "mailgate")
        .header(hyper::header::CONTENT_TYPE, "application/tlsrpt+gzip")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(gz)))
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP with {host}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Option<Vec<Rua>>, RecordError> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn records() {
        assert_eq!(p(&["v=spf1 -all"]), Ok(None));
        assert_eq!(
            p(&["v=TLSRPTv1; rua=mailto:tls%2Breports@example.com, https://r.example/x?y=1"]),
            Ok(Some(vec![
                Rua::Mailto("tls+reports@example.com".into()),
                Rua::Https("https://r.example/x?y=1".into())
            ]))
        );
        assert_eq!(
            p(&["v=TLSRPTv1;rua=mailto:a@b.example"]),
            Ok(Some(vec![Rua::Mailto("a@b.example".into())]))
        );
        assert!(p(&["v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1; rua=mailto:c@d"]).is_err());
        assert!(p(&["v=TLSRPTv1;"]).is_err());
        assert!(p(&["v=TLSRPTv1; rua=ftp://x.example/"]).is_err());
        assert!(p(&["v=TLSRPTv1; rua=mailto:nobody"]).is_err());
        // Not a TLSRPT record at all.
        assert_eq!(p(&["v=TLSRPTv10; rua=mailto:a@b"]), Ok(None));
        assert_eq!(
            txt_text("\"v=TLSRPTv1; \" \"rua=mailto:a@b\""),
            "v=TLSRPTv1; rua=mailto:a@b"
        );
    }
}
