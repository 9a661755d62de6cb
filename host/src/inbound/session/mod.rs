//! One SMTP connection: drives the I/O-free [`crate::smtp::server::Session`]
//! over a TCP or TLS stream, applies policy, spools accepted messages and
//! writes the main log.

mod data;
mod sasl;
mod verdicts;

use super::{access, policy, receive};
use crate::config::{Config, ListenerMode};
use crate::log::exim::host_field;
use crate::log::{Event, MainLog, Peer, RejectStage, SessionNote, printable};
use crate::net::stream;
use crate::plugin::dispatch::{self, session as hooks};
use crate::queue::QueueHandle;
use crate::routing::Router;
use crate::smtp::reply::Reply;
use crate::smtp::server::{Check, CloseReason, Session, SessionConfig, Step, Verdict};
use crate::spool::{Spool, TlsDetails, new_message_id};
use data::message;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verdicts::decide;

type Stream = stream::Stream<tokio_rustls::server::TlsStream<TcpStream>>;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What every session shares.
pub struct Shared {
    /// The configuration.
    pub cfg: Arc<Config>,
    /// The spool.
    pub spool: Spool,
    /// The main log.
    pub log: Arc<MainLog>,
    /// Routing tables.
    pub router: Arc<Router>,
    /// Where spooled messages go next.
    pub queue: QueueHandle,
    /// TLS, when available.
    pub tls: Option<TlsAcceptor>,
    /// Becomes true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The plugin runtime.
    pub plugins: Option<Arc<crate::plugin::Runtime>>,
    /// Message authentication checks (`[auth]`), when on.
    pub auth: Option<Arc<super::auth::Authenticator>>,
    /// DKIM signing keys (`[[dkim]]`), when any.
    pub signer: Option<Arc<super::auth::sign::Signer>>,
    /// DMARC aggregate report rows (`[auth] dmarc_reports`), when on.
    pub dmarcrpt: Option<Arc<crate::dmarcrpt::Dmarcrpt>>,
    /// SMTP AUTH verification (`[smtp_auth]`), when configured.
    pub sasl: Option<Arc<super::sasl::Verifier>>,
    /// The `[[rate_limit]]` counters.
    pub rate_limits: super::ratelimit::RateLimiter,
}

/// Addresses and listener of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client.
    pub peer: SocketAddr,
    /// Our end.
    pub local: SocketAddr,
    /// The listener's TLS mode.
    pub mode: ListenerMode,
    /// The listener's use of SMTP AUTH.
    pub auth: crate::config::smtp_auth::ListenerAuth,
}

/// The client's IP with IPv4-mapped IPv6 addresses shown as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

struct Conn {
    shared: Arc<Shared>,
    stream: Stream,
    ip: IpAddr,
    port: u16,
    helo: Option<String>,
    sender: Option<String>,
    tls: Option<TlsDetails>,
    early_offered: bool,
    early_used: bool,
    deadline: Instant,
    buf: Vec<u8>,
    plugins: Option<crate::plugin::SessionPlugins>,
    vars: Vec<(String, String)>,
    rcpts: Vec<String>,
    pending: Vec<crate::plugin::bindings::mailgate::plugin::types::Action>,
    /// Recipients a plugin redirected at RCPT: (as given, new address).
    redirects: Vec<(String, String)>,
    /// An access table's HOLD or DISCARD for the current transaction.
    access: Option<access::Action>,
    /// iprev for the client (once per connection) and SPF for the current
    /// transaction.
    checks: super::auth::Checks,
    /// Our address on this connection.
    local: IpAddr,
    /// The mechanism (lower case) and login of a successful SMTP AUTH.
    auth: Option<(&'static str, String)>,
}

enum ReadOutcome {
    Data(usize),
    Eof,
    Timeout,
    Shutdown,
    Error(std::io::Error),
}

impl Conn {
    fn peer(&self) -> Peer {
        Peer::client(self.helo.as_deref(), self.ip, self.port)
    }

    /// Keep the handshake's details and count it.
    fn tls_established(&mut self, d: TlsDetails) {
        let resumed = if d.resumed { "true" } else { "false" };
        crate::metrics::get()
            .tls_handshakes
            .inc(&[&d.version, resumed]);
        self.tls = Some(d);
    }

    fn host(&self) -> String {
        host_field(&self.peer())
    }

    fn note(&self, note: SessionNote) {
        self.shared.log.event(&Event::Session {
            peer: self.peer(),
            note,
        });
    }

    fn rejected(&self, stage: RejectStage, by_plugin: bool, reason: String) {
        self.shared.log.event(&Event::Rejected {
            peer: self.peer(),
            sender: self.sender.clone(),
            stage,
            by_plugin,
            temporary: false,
            reason,
        });
    }

    async fn write_out(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let t = self.shared.cfg.limits.command_timeout.duration();
        match tokio::time::timeout(t, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }

    async fn read_some(&mut self, timeout: Duration, watch_shutdown: bool) -> ReadOutcome {
        let now = Instant::now();
        let limit = timeout.min(self.deadline.saturating_duration_since(now));
        let mut shutdown = self.shared.shutdown.clone();
        let read = tokio::time::timeout(limit, self.stream.read(&mut self.buf));
        tokio::select! {
            r = read => match r {
                Err(_) => ReadOutcome::Timeout,
                Ok(Ok(0)) => ReadOutcome::Eof,
                Ok(Ok(n)) => ReadOutcome::Data(n),
                Ok(Err(e)) => ReadOutcome::Error(e),
            },
            _ = shutdown.wait_for(|v| *v), if watch_shutdown => ReadOutcome::Shutdown,
        }
    }

    /// Anything the client sent without waiting (a short grace for hosts
    /// allowed to pipeline early, none for others).
    async fn early_input(&mut self, grace: Duration) -> Option<usize> {
        match tokio::time::timeout(grace, self.stream.read(&mut self.buf)).await {
            Ok(Ok(n)) if n > 0 => Some(n),
            _ => None,
        }
    }
}

/// Serve one connection to the end.
pub async fn handle(shared: Arc<Shared>, tcp: TcpStream, info: ConnInfo) {
    let _ = tcp.set_nodelay(true);
    let cfg = Arc::clone(&shared.cfg);
    let ip = canonical_ip(info.peer.ip());
    // A table that cannot answer only means no PIPECONNECT.
    let pipe_connect = shared
        .router
        .tables()
        .in_hosts(&cfg.server.pipe_connect_hosts, ip)
        .unwrap_or(false);
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        stream: Stream::Plain(tcp),
        ip,
        port: info.peer.port(),
        helo: None,
        sender: None,
        tls: None,
        early_offered: pipe_connect,
        early_used: false,
        deadline: Instant::now() + cfg.limits.connection_timeout.duration(),
        buf: vec![0; 16 * 1024],
        plugins: shared
            .plugins
            .as_ref()
            .map(|rt| crate::plugin::SessionPlugins::new(Arc::clone(rt)))
            .filter(|p| !p.is_empty()),
        vars: Vec::new(),
        rcpts: Vec::new(),
        pending: Vec::new(),
        redirects: Vec::new(),
        access: None,
        checks: super::auth::Checks::default(),
        local: canonical_ip(info.local.ip()),
        auth: None,
    };
    if info.mode == ListenerMode::ImplicitTls {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Closed) else {
            unreachable!()
        };
        match tokio::time::timeout(cfg.limits.command_timeout.duration(), acceptor.accept(tcp))
            .await
        {
            Ok(Ok(tls)) => {
                conn.tls_established(crate::tls::details(tls.get_ref().1));
                conn.stream = Stream::Tls(Box::new(tls));
            }
            Ok(Err(e)) => {
                conn.note(SessionNote::TlsError {
                    phase: "accept",
                    error: e.to_string(),
                });
                return;
            }
            Err(_) => {
                conn.note(SessionNote::TlsError {
                    phase: "accept",
                    error: "timed out".into(),
                });
                return;
            }
        }
    }
    let scfg = SessionConfig {
        hostname: cfg.server.hostname.clone(),
        postmaster_domain: cfg
            .server
            .local_domains
            .names()
            .first()
            .cloned()
            .unwrap_or_else(|| cfg.server.hostname.clone()),
        client_display: format!("[{ip}]"),
        max_message_size: cfg.limits.max_message_size.0,
        max_recipients: cfg.limits.max_recipients,
        max_line_length: cfg.limits.max_line_length,
        max_errors: cfg.limits.max_errors,
        max_junk_commands: cfg.limits.max_junk_commands,
        max_messages: cfg.limits.max_messages_per_connection,
        starttls: info.mode == ListenerMode::Starttls && shared.tls.is_some(),
        pipe_connect,
        tls_active: conn.tls.is_some(),
        requiretls: cfg.server.requiretls,
        auth: auth_offer(&cfg, &shared, info),
    };
    let mut session = Session::new(scfg);
    let grace = if pipe_connect {
        Duration::from_millis(2)
    } else {
        Duration::ZERO
    };
    let early = conn.early_input(grace).await;
    if let Some(n) = early {
        let first = conn.buf[..n].to_vec();
        session.feed(&first);
        if pipe_connect {
            conn.early_used = true;
            crate::metrics::get().early_pipelining.inc(&[]);
        } else {
            let line = String::from_utf8_lossy(&first);
            let line = line.lines().next().unwrap_or("");
            conn.note(SessionNote::SyncError(line.to_string()));
        }
    }
    let mut refused = None;
    if conn.plugins.is_some()
        && let hooks::Decision::Refuse(r) = conn_hook(&mut conn, crate::plugin::Call::Connect).await
    {
        refused = Some(r);
    }
    match refused {
        Some(r) => {
            conn.rejected(RejectStage::Connect, true, r.first_line());
            session.abort(r, CloseReason::Rejected);
        }
        None => session.start(early.is_some()),
    }
    run(&mut conn, &mut session).await;
    let _ = conn.stream.shutdown().await;
}

async fn run(conn: &mut Conn, session: &mut Session) {
    let shared = Arc::clone(&conn.shared);
    let cfg = Arc::clone(&shared.cfg);
    // The command timeout covers a whole command, not each read, so a
    // client that dribbles a byte at a time cannot hold a session open.
    let mut command_deadline = Instant::now() + cfg.limits.command_timeout.duration();
    loop {
        match session.poll() {
            Step::NeedInput => {
                let out = session.take_output();
                if !out.is_empty() {
                    command_deadline = Instant::now() + cfg.limits.command_timeout.duration();
                }
                if let Err(e) = conn.write_out(&out).await {
                    // Exim's wording; a client that stops reading ends
                    // here after the command timeout.
                    conn.note(SessionNote::LostWhileWriting(e.to_string()));
                    return;
                }
                if *shared.shutdown.borrow() && session.is_idle() && !session.has_buffered_input() {
                    session.abort(
                        Reply::new(
                            421,
                            "4.3.2",
                            format!("{} Service shutting down", cfg.server.hostname),
                        ),
                        CloseReason::Rejected,
                    );
                    continue;
                }
                let in_content = session.in_content();
                let timeout = if in_content {
                    command_deadline = Instant::now() + cfg.limits.command_timeout.duration();
                    cfg.limits.data_timeout.duration()
                } else {
                    command_deadline.saturating_duration_since(Instant::now())
                };
                match conn.read_some(timeout, session.is_idle()).await {
                    ReadOutcome::Data(n) => session.feed(&conn.buf[..n]),
                    ReadOutcome::Eof => {
                        conn.note(SessionNote::Disconnected {
                            in_content,
                            sender: in_content.then(|| conn.sender.clone().unwrap_or_default()),
                        });
                        return;
                    }
                    ReadOutcome::Error(e) => {
                        conn.note(SessionNote::Lost(e.to_string()));
                        return;
                    }
                    ReadOutcome::Timeout => {
                        let overall = Instant::now() >= conn.deadline;
                        let (what, text) = if overall {
                            (
                                "SMTP connection time limit",
                                "Connection time limit exceeded",
                            )
                        } else if in_content {
                            (
                                "SMTP data timeout (message abandoned)",
                                "Timeout waiting for data",
                            )
                        } else {
                            ("SMTP command timeout", "Timeout waiting for command")
                        };
                        conn.note(SessionNote::Timeout(what.to_string()));
                        session.abort(
                            Reply::new(
                                421,
                                "4.4.2",
                                format!("{} {text}, closing connection", cfg.server.hostname),
                            ),
                            CloseReason::Rejected,
                        );
                    }
                    ReadOutcome::Shutdown => {}
                }
            }
            Step::Check(check) => {
                let v = decide(conn, &check).await;
                session.decide(v);
            }
            Step::Message(tx) => {
                let res = message(conn, &shared, *tx).await;
                session.message_done(res);
                conn.rcpts.clear();
                conn.pending.clear();
                conn.redirects.clear();
                if let Some(p) = conn.plugins.as_mut() {
                    p.reset();
                }
            }
            Step::StartTls { discarded } => {
                let out = session.take_output();
                if conn.write_out(&out).await.is_err() {
                    return;
                }
                if discarded > 0 {
                    conn.note(SessionNote::DiscardedPlaintext(discarded));
                }
                let Some(acceptor) = shared.tls.clone() else {
                    return;
                };
                let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Closed) else {
                    return;
                };
                match tokio::time::timeout(
                    cfg.limits.command_timeout.duration(),
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(tls)) => {
                        conn.tls_established(crate::tls::details(tls.get_ref().1));
                        conn.stream = Stream::Tls(Box::new(tls));
                        conn.helo = None;
                        session.tls_started();
                    }
                    Ok(Err(e)) => {
                        conn.note(SessionNote::TlsError {
                            phase: "STARTTLS",
                            error: e.to_string(),
                        });
                        return;
                    }
                    Err(_) => {
                        conn.note(SessionNote::TlsError {
                            phase: "STARTTLS",
                            error: "timed out".into(),
                        });
                        return;
                    }
                }
            }
            Step::Close(reason) => {
                let out = session.take_output();
                let _ = conn.write_out(&out).await;
                match reason {
                    CloseReason::TooManyErrors => {
                        conn.note(SessionNote::Dropped("too many syntax or protocol errors"))
                    }
                    CloseReason::LimitReached => {
                        conn.note(SessionNote::Dropped("too many commands or messages"))
                    }
                    _ => {}
                }
                return;
            }
        }
    }
}

/// What this listener offers of SMTP AUTH.
fn auth_offer(
    cfg: &Config,
    shared: &Shared,
    info: ConnInfo,
) -> Option<crate::smtp::server::AuthOffer> {
    use crate::config::smtp_auth::{ListenerAuth, MechanismName};
    use crate::smtp::server::{AuthOffer, Mechanism};
    if info.auth == ListenerAuth::Off || shared.sasl.is_none() {
        return None;
    }
    let a = &cfg.smtp_auth;
    Some(AuthOffer {
        mechanisms: a
            .mechanisms
            .iter()
            .map(|m| match m {
                MechanismName::Plain => Mechanism::Plain,
                MechanismName::Login => Mechanism::Login,
            })
            .collect(),
        plaintext: a.plaintext,
        required: info.auth == ListenerAuth::Required,
    })
}

/// Run a hook of the connection's plugins.
async fn conn_hook(conn: &mut Conn, call: crate::plugin::Call<'_>) -> hooks::Decision {
    let Some(mut plugins) = conn.plugins.take() else {
        return hooks::Decision::Continue;
    };
    let mut vars = std::mem::take(&mut conn.vars);
    let mut pending = std::mem::take(&mut conn.pending);
    let host = conn.host();
    let d = {
        let known_vars = vars.clone();
        let known = dispatch::Facts {
            client_ip: conn.ip.to_string(),
            client_port: conn.port,
            client_name: conn.checks.client_name(),
            helo: conn.helo.as_deref(),
            tls: conn.tls.as_ref(),
            sender: conn.sender.as_deref(),
            recipients: conn.rcpts.clone(),
            message_id: None,
            vars: &known_vars,
            checks: conn.checks.for_plugins(),
            auth_user: conn.auth.as_ref().map(|(_, u)| u.as_str()),
        };
        hooks::run(
            &mut plugins,
            &conn.shared.log,
            &host,
            &known,
            call,
            &mut vars,
            &mut pending,
        )
        .await
    };
    conn.vars = vars;
    conn.pending = pending;
    conn.plugins = Some(plugins);
    d
}

/// What the receive step needs to know about the connection.
pub struct ConnView {
    /// Client IP.
    pub ip: IpAddr,
    /// Client port.
    pub port: u16,
    /// TLS details.
    pub tls: Option<TlsDetails>,
    /// PIPECONNECT offered.
    pub early_offered: bool,
    /// PIPECONNECT used.
    pub early_used: bool,
    /// SMTP AUTH: the mechanism (lower case) and the login.
    pub auth: Option<(&'static str, String)>,
}

fn conn_view(c: &Conn) -> ConnView {
    ConnView {
        ip: c.ip,
        port: c.port,
        tls: c.tls.clone(),
        early_offered: c.early_offered,
        early_used: c.early_used,
        auth: c.auth.clone(),
    }
}

/// Keep `new_message_id` reachable from here for the receive step.
pub(crate) fn next_id() -> String {
    new_message_id()
}
