//! A load client for inbound throughput with a new connection and a full
//! TLS 1.3 handshake per message (what smtp-source cannot do): `SESSIONS`
//! workers each connect, EHLO, STARTTLS, handshake (no resumption, no
//! certificate check), EHLO, pipeline MAIL/RCPT/DATA, send `SIZE` octets,
//! wait for the 250, send QUIT and close without waiting for the 221.
//! Prints messages per second. Used by `bench/throughput.sh` (CASE=tls).
//!
//!     cargo run --release --example tls_source -- 127.0.0.1:2525 20 5000 1024 [plain]

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

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
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Read one (possibly multi-line) reply; its code.
async fn reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Res<u16> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err("connection closed".into());
        }
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return Ok(line[..3].parse()?);
        }
    }
}

async fn expect<R: AsyncRead + Unpin>(r: &mut BufReader<R>, code: u16) -> Res<()> {
    let got = reply(r).await?;
    if got != code {
        return Err(format!("expected {code}, got {got}").into());
    }
    Ok(())
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    body: &[u8],
) -> Res<()> {
    s.get_mut().write_all(b"EHLO client.test\r\n").await?;
    expect(s, 250).await?;
    s.get_mut()
        .write_all(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<x@local.test>\r\nDATA\r\n")
        .await?;
    expect(s, 250).await?;
    expect(s, 250).await?;
    expect(s, 354).await?;
    s.get_mut().write_all(body).await?;
    expect(s, 250).await?;
    s.get_mut().write_all(b"QUIT\r\n").await?;
    Ok(())
}

async fn one(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>, body: &[u8]) -> Res<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut s = BufReader::new(tcp);
    expect(&mut s, 220).await?;
    let Some(cfg) = tls else {
        return transaction(&mut s, body).await;
    };
    s.get_mut().write_all(b"EHLO client.test\r\n").await?;
    expect(&mut s, 250).await?;
    s.get_mut().write_all(b"STARTTLS\r\n").await?;
    expect(&mut s, 220).await?;
    let tcp = s.into_inner();
    let t = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
        .connect(ServerName::try_from("mx.local.test")?, tcp)
        .await?;
    transaction(&mut BufReader::new(t), body).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: tls_source ADDR SESSIONS MESSAGES SIZE [plain]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let sessions: usize = args[2].parse().expect("SESSIONS");
    let messages: usize = args[3].parse().expect("MESSAGES");
    let size: usize = args[4].parse().expect("SIZE");
    let plain = args.get(5).is_some_and(|a| a == "plain");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    let mut body = b"Subject: tls bench\r\n\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n",
        );
    }
    body.extend_from_slice(b".\r\n");
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (addr, cfg, body, next, failed) = (
            addr.clone(),
            Arc::clone(&cfg),
            Arc::clone(&body),
            Arc::clone(&next),
            Arc::clone(&failed),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < messages {
                if let Err(e) = one(&addr, (!plain).then_some(&cfg), &body).await
                    && failed.fetch_add(1, Ordering::Relaxed) < 5
                {
                    eprintln!("tls_source: {e}");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let bad = failed.load(Ordering::Relaxed);
    println!(
        "{:.1} msg/s {} ok {} failed {:.3} s",
        (messages - bad) as f64 / secs,
        messages - bad,
        bad,
        secs
    );
}
