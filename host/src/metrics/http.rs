//! The `/metrics` endpoint: HTTP/1.1 on `[metrics] listen`, GET only,
//! the text exposition format; every other path is 404. It has no
//! authentication: bind it to loopback or a management network.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of the text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, super::render()),
        (&Method::GET | &Method::HEAD, _) => {
            (StatusCode::NOT_FOUND, "not found: try /metrics\n".into())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(TEXT_FORMAT),
    );
    r
}

/// Serve scrapes on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let svc =
                hyper::service::service_fn(|req| async move { Ok::<_, Infallible>(answer(&req)) });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
            // A scraper that stalls is dropped.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}
