//! The delivery driver: one connection to one server address, several
//! messages over it. It runs the I/O-free
//! [`crate::smtp::client::conversation::Conversation`] over tokio: connects
//! (optionally with TCP Fast Open, so an early-pipelined first flight rides
//! in the SYN), writes what the conversation says, reads replies under the
//! command or data timeout, does the TLS handshakes, applies its EHLO
//! cache updates, and reconnects as it asks (without early pipelining, or
//! in clear). Every protocol decision is the conversation's.

use super::ehlo_cache::EhloCache;
use super::tls::{ClientTls, Verification};
use super::tlsrpt::result::ResultType;
use super::verify::CheckError;
use crate::smtp::client::conversation::{
    Action, CacheOp, Cached, Conversation, Input, Login, OpenParams, Retry, TlsMode, Wait,
};
use crate::smtp::client::reply::{ReplyParser, ServerReply};
use crate::smtp::client::{Failure, Job, RcptOutcome, Stage};
use crate::spool::TlsDetails;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Settings shared by all connections.
pub struct ClientSettings {
    /// EHLO name.
    pub helo: String,
    /// Use early pipelining where the cache allows.
    pub pipe_connect: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reply timeout.
    pub command_timeout: Duration,
    /// Content timeout.
    pub data_timeout: Duration,
    /// TLS configurations.
    pub tls: ClientTls,
    /// EHLO cache.
    pub ehlo_cache: EhloCache,
    /// Send early-pipelined first flights in the SYN (TCP Fast Open).
    pub fast_open: bool,
}

type CStream = crate::net::stream::Stream<TlsStream<TcpStream>>;

/// An open connection, ready for MAIL.
pub struct Connection {
    stream: CStream,
    parser: ReplyParser,
    buf: Vec<u8>,
    /// Server name (MX target or smarthost).
    pub host: String,
    /// Server address.
    pub addr: SocketAddr,
    /// TLS details.
    pub tls: Option<TlsDetails>,
    /// The protocol state: capabilities, greeting, EHLO reply, whether
    /// early pipelining was used, messages sent.
    pub conv: Conversation,
    /// How the certificate was checked, for `CV=`: `dane`, `yes` or `no`.
    pub cv: &'static str,
    /// The TLS mode and certificate check this connection was opened
    /// under: a pooled connection is reused only under the same.
    pub policy_tag: String,
    /// Our address on the connection.
    pub local: Option<SocketAddr>,
    /// The server's certificate chain, when TLS is up.
    pub peer_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// What went wrong with TLS on this connection or the attempt before
    /// it (opportunistic TLS that failed, then went on in clear).
    pub tls_problem: Option<ResultType>,
    /// The recipient domain this connection last counted as a TLS report
    /// session for (a pooled connection counts once per domain it serves).
    pub reported_for: String,
    ehlo_cache: EhloCache,
    command_timeout: Duration,
    data_timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub struct OpenFailure {
    /// The failure.
    pub failure: Failure,
    /// The TLS failure's class, when TLS failed.
    pub tls: Option<ResultType>,
    /// Our address, when a connection was made.
    pub local: Option<SocketAddr>,
}

impl From<Failure> for OpenFailure {
    fn from(failure: Failure) -> OpenFailure {
        OpenFailure {
            failure,
            tls: None,
            local: None,
        }
    }
}

/// What a run of the conversation ended with.
enum Stop {
    Ready,
    OpenFailed(Failure, Retry),
    Sent(Result<Vec<RcptOutcome>, Failure>),
}

impl Connection {
    /// Connect to `addr` (named `host`), greet, set up TLS in `mode` with
    /// the certificate check `v`, and log in with `login` if given.
    pub async fn open(
        host: &str,
        addr: SocketAddr,
        mode: TlsMode,
        v: Verification,
        login: Option<Login>,
        s: &ClientSettings,
    ) -> Result<Connection, OpenFailure> {
        let mut mode = mode;
        let tls_cfg = s.tls.config_for(addr, host, v);
        let mut early = s.pipe_connect;
        let mut problem = None;
        loop {
            let cached = early
                .then(|| s.ehlo_cache.get(addr))
                .flatten()
                .map(|e| Cached {
                    clear: e.clear,
                    crypted: e.crypted,
                });
            let conv = Conversation::new(OpenParams {
                helo: s.helo.clone(),
                tls: mode,
                pipe_connect: s.pipe_connect,
                cached,
                login: login.clone(),
            });
            let tcp = tcp(addr, s, conv.early() && s.fast_open).await?;
            let local = tcp.local_addr().ok();
            let mut c = Connection {
                stream: CStream::Plain(tcp),
                parser: ReplyParser::default(),
                buf: vec![0; 8192],
                host: host.to_string(),
                addr,
                tls: None,
                conv,
                cv: "no",
                policy_tag: String::new(),
                local,
                peer_chain: vec![],
                tls_problem: problem,
                reported_for: String::new(),
                ehlo_cache: s.ehlo_cache.clone(),
                command_timeout: s.command_timeout,
                data_timeout: s.data_timeout,
            };
            c.conv.start();
            match c.run(Some(&tls_cfg)).await {
                Stop::Ready => return Ok(c),
                Stop::OpenFailed(f, Retry::No) => {
                    // A server that answered (a refused login, a 5xx EHLO)
                    // is still talking: say goodbye, and close TLS cleanly.
                    let tls = c.tls_problem;
                    if f.reply.as_ref().is_some_and(|r| r.code != 421) {
                        tokio::spawn(c.quit());
                    }
                    return Err(OpenFailure {
                        failure: f,
                        tls,
                        local,
                    });
                }
                Stop::OpenFailed(f, Retry::WithoutEarlyPipe) => {
                    tracing::debug!(%addr, error = %f.text, "early pipelining failed on the STARTTLS path; reconnecting without it");
                    early = false;
                }
                Stop::OpenFailed(f, Retry::InClear) => {
                    tracing::debug!(%addr, error = %f.text, "TLS failed; retrying in clear");
                    problem = c.tls_problem.or(Some(ResultType::StarttlsNotSupported));
                    mode = TlsMode::Off;
                    early = false;
                }
                Stop::Sent(_) => unreachable!("no message while opening"),
            }
        }
    }

    /// Count the open connection in the metrics: TLS version and
    /// resumption, certificate check (once `cv` is set), early pipelining.
    pub fn count_open(&self) {
        let (version, resumed) = match &self.tls {
            Some(t) => (t.version.as_str(), if t.resumed { "true" } else { "false" }),
            None => ("none", "false"),
        };
        let early = if self.conv.early_pipe {
            "true"
        } else {
            "false"
        };
        crate::metrics::get()
            .outbound_connections
            .inc(&[version, resumed, self.cv, early]);
    }

    /// Carry out the conversation's actions until it is ready, gives up
    /// opening, or has sent a message. Handshakes need `tls` (only opening
    /// asks for one).
    async fn run(&mut self, tls: Option<&Arc<rustls::ClientConfig>>) -> Stop {
        loop {
            let Some(action) = self.conv.poll() else {
                unreachable!("the conversation always ends a run with a result")
            };
            match action {
                Action::Send(bytes) => {
                    if let Err(e) = self.write(&bytes).await {
                        self.conv.handle(Input::WriteFailed(e));
                    }
                }
                Action::Read(w) => {
                    let t = match w {
                        Wait::Command => self.command_timeout,
                        Wait::Data => self.data_timeout,
                    };
                    let input = match self.read_reply(t).await {
                        Ok(r) => Input::Reply(r),
                        Err(e) => Input::IoFailed(e),
                    };
                    self.conv.handle(input);
                }
                Action::Handshake => {
                    let done = match tls {
                        Some(t) => self.handshake(t).await,
                        None => Err("no TLS configuration here".into()),
                    };
                    let input = match done {
                        Ok(()) => Input::TlsUp,
                        Err(e) => Input::TlsFailed(e),
                    };
                    self.conv.handle(input);
                }
                Action::Cache(CacheOp::Put(c)) => {
                    self.ehlo_cache
                        .put_bits(self.addr, c.clear, c.crypted)
                        .await
                }
                Action::Cache(CacheOp::Remove) => self.ehlo_cache.remove(self.addr).await,
                Action::Ready => return Stop::Ready,
                Action::OpenFailed(f, r) => return Stop::OpenFailed(f, r),
                Action::Sent(r) => return Stop::Sent(r),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let t = self.data_timeout.max(self.command_timeout);
        match tokio::time::timeout(t, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timeout writing".into()),
        }
    }

    async fn read_reply(&mut self, timeout: Duration) -> Result<ServerReply, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.parser.next_reply() {
                Some(Ok(r)) => return Ok(r),
                Some(Err(e)) => return Err(e.to_string()),
                None => {}
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Ok(Ok(0)) => return Err("connection closed by the server".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("timeout waiting for a reply".into()),
            };
            self.parser.feed(&self.buf[..n]);
        }
    }

    async fn handshake(&mut self, cfg: &Arc<rustls::ClientConfig>) -> Result<(), String> {
        let CStream::Plain(tcp) = std::mem::replace(&mut self.stream, CStream::Closed) else {
            return Err("TLS already active".into());
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(cfg));
        let name = super::tls::server_name(&self.host, self.addr);
        match tokio::time::timeout(self.command_timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.tls = Some(super::tls::details(tls.get_ref().1));
                self.peer_chain = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                self.stream = CStream::Tls(Box::new(tls));
                // Nothing sent before the handshake may be read after it.
                self.parser = ReplyParser::default();
                Ok(())
            }
            Ok(Err(e)) => {
                self.tls_problem =
                    Some(CheckError::of_handshake(&e).unwrap_or(ResultType::ValidationFailure));
                Err(e.to_string())
            }
            Err(_) => {
                self.tls_problem = Some(ResultType::ValidationFailure);
                Err("timed out".into())
            }
        }
    }

    /// Whether the connection may carry another message.
    pub fn reusable(&self) -> bool {
        self.conv.reusable()
    }

    /// Send one message. `Err` is a failure for every recipient; otherwise
    /// one outcome per recipient, in order.
    pub async fn send(&mut self, job: &Job) -> Result<Vec<RcptOutcome>, Failure> {
        self.conv.send(job.clone());
        match self.run(None).await {
            Stop::Sent(r) => r,
            Stop::Ready | Stop::OpenFailed(..) => {
                Err(Failure::io(Stage::Connect, "conversation out of step"))
            }
        }
    }

    /// Say QUIT (without waiting long for the answer) and close.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.stream.write_all(b"QUIT\r\n").await;
            let _ = self.stream.flush().await;
            let _ = self.stream.read(&mut self.buf).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// Connect; with `fast_open` the connect returns at once and the SYN leaves
/// with the first write (see [`crate::net::fast_open::connect`]).
async fn tcp(addr: SocketAddr, s: &ClientSettings, fast_open: bool) -> Result<TcpStream, Failure> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| Failure::io(Stage::Connect, e))?;
    let _ = sock.set_nodelay(true);
    if fast_open && let Err(e) = crate::net::fast_open::connect(&sock) {
        tracing::debug!(%addr, error = %e, "TCP Fast Open unavailable");
    }
    match tokio::time::timeout(s.connect_timeout, sock.connect(addr)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Failure::io(Stage::Connect, e)),
        Err(_) => Err(Failure::io(Stage::Connect, "connect timed out")),
    }
}
