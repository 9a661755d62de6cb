//! A discard SMTP server for benchmarks: it speaks through mailgate's own
//! session state machine, advertises PIPELINING, PIPECONNECT and CHUNKING,
//! accepts every message and throws it away (no disk). Unlike Postfix's
//! smtp-sink it lets a benchmark measure early pipelining.
//!
//!     cargo run --release --example sink -- 127.0.0.1:2600

use mailgate::smtp::server::{Session, SessionConfig, Step, Verdict};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static MESSAGES: AtomicU64 = AtomicU64::new(0);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2600".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("sink listening on {addr}");
    loop {
        let (mut tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let mut s = Session::new(SessionConfig {
                hostname: "sink.test".into(),
                postmaster_domain: "sink.test".into(),
                client_display: format!("[{}]", peer.ip()),
                max_message_size: 0,
                max_recipients: 100_000,
                max_line_length: 4096,
                max_errors: 100,
                max_junk_commands: 100_000,
                max_messages: u32::MAX,
                starttls: false,
                pipe_connect: true,
                tls_active: false,
                requiretls: false,
                auth: None,
            });
            let mut buf = vec![0u8; 65536];
            // Early input is fine here (PIPECONNECT is offered to all).
            s.start(false);
            loop {
                match s.poll() {
                    Step::NeedInput => {
                        let out = s.take_output();
                        if tcp.write_all(&out).await.is_err() {
                            return;
                        }
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => s.feed(&buf[..n]),
                        }
                    }
                    Step::Check(_) => s.decide(Verdict::Accept),
                    Step::Message(_) => {
                        let n = MESSAGES.fetch_add(1, Ordering::Relaxed);
                        s.message_done(Ok(format!("sink-{n}")));
                    }
                    Step::StartTls { .. } => return,
                    Step::Close(_) => {
                        let out = s.take_output();
                        let _ = tcp.write_all(&out).await;
                        return;
                    }
                }
            }
        });
    }
}
