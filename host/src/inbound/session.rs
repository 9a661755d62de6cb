//! One SMTP connection: drives the I/O-free [`crate::smtp::server::Session`]
//! over a TCP or TLS stream, applies policy, spools accepted messages and
//! writes the main log.

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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
                conn.tls = Some(crate::tls::details(tls.get_ref().1));
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
                        conn.tls = Some(crate::tls::details(tls.get_ref().1));
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
            helo: conn.helo.as_deref(),
            tls: conn.tls.as_ref(),
            sender: conn.sender.as_deref(),
            recipients: conn.rcpts.clone(),
            message_id: None,
            vars: &known_vars,
            checks: conn.checks.for_plugins(),
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

/// An access table's answer as the command's verdict: HOLD and DISCARD
/// accept and are kept for the end of data (the first one stays).
fn access_verdict(conn: &mut Conn, checked: access::Checked) -> Verdict {
    match checked {
        Ok(access::Action::Permit) => Verdict::Accept,
        Ok(access::Action::Refuse(r)) => Verdict::Reject(r),
        Ok(a) => {
            conn.access.get_or_insert(a);
            Verdict::Accept
        }
        Err((r, why)) => {
            conn.note(SessionNote::Other(why));
            Verdict::Reject(r)
        }
    }
}

async fn decide(conn: &mut Conn, check: &Check) -> Verdict {
    let shared = Arc::clone(&conn.shared);
    // An unknown user at a local domain may still be claimed by a plugin
    // that redirects it (an SRS address, say); relay denials are final.
    let mut unknown_local = false;
    let (v, what) = match check {
        Check::Helo { name, .. } => {
            conn.helo = Some(name.clone());
            (Verdict::Accept, None)
        }
        Check::Mail { sender, .. } => {
            conn.sender = Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default());
            conn.rcpts.clear();
            conn.pending.clear();
            conn.redirects.clear();
            conn.access = None;
            if let Some(p) = conn.plugins.as_mut() {
                p.begin_transaction();
            }
            let relay_client = shared
                .router
                .tables()
                .in_hosts(&shared.cfg.server.relay_networks, conn.ip);
            let v = match shared.auth.clone() {
                Some(a) => {
                    let helo = conn.helo.clone().unwrap_or_default();
                    let sender = conn.sender.clone().unwrap_or_default();
                    let v = conn
                        .checks
                        .at_mail(&a, &shared.cfg.auth, conn.ip, &helo, &sender)
                        .await;
                    // Relay clients (our own users) are checked and the
                    // results recorded, but SPF actions do not refuse them.
                    if *relay_client.as_ref().unwrap_or(&false) {
                        Verdict::Accept
                    } else {
                        v
                    }
                }
                None => Verdict::Accept,
            };
            let v = match (v, relay_client) {
                (_, Err(e)) => {
                    conn.note(SessionNote::Other(e.to_string()));
                    Verdict::Reject(access::lookup_failed())
                }
                (Verdict::Accept, Ok(_)) => {
                    let sender = conn.sender.clone().unwrap_or_default();
                    let checked = access::at_mail(
                        &shared.cfg.access,
                        shared.router.tables(),
                        conn.ip,
                        &sender,
                    );
                    access_verdict(conn, checked)
                }
                (v, Ok(_)) => v,
            };
            (v, None)
        }
        Check::Rcpt { rcpt, .. } => {
            // Host relay control comes first; plugins cannot open a relay.
            let refusal = policy::check_rcpt(&shared.cfg, &shared.router, conn.ip, rcpt).err();
            unknown_local = refusal == Some(policy::RcptRefusal::UnknownUser);
            if let Some(policy::RcptRefusal::Lookup(e)) = &refusal {
                conn.note(SessionNote::Other(e.to_string()));
            }
            let v = match refusal {
                Some(r) => Verdict::Reject(r.reply()),
                None => {
                    let checked = access::at_rcpt(
                        &shared.cfg.access,
                        shared.router.tables(),
                        &rcpt.to_string(),
                    );
                    access_verdict(conn, checked)
                }
            };
            (v, Some(rcpt.to_string()))
        }
    };
    let v = if (v == Verdict::Accept || unknown_local) && conn.plugins.is_some() {
        let d = match check {
            Check::Helo { .. } => conn_hook(conn, crate::plugin::Call::Helo).await,
            Check::Mail { .. } => conn_hook(conn, crate::plugin::Call::MailFrom).await,
            Check::Rcpt { rcpt, .. } => {
                let r = rcpt.to_string();
                conn_hook(conn, crate::plugin::Call::RcptTo(&r)).await
            }
        };
        let redirect = hooks::take_redirect(&mut conn.pending);
        match (d, check, redirect) {
            (hooks::Decision::Refuse(r), ..) => Verdict::Reject(r),
            (_, Check::Rcpt { rcpt, .. }, Some(to)) => {
                match crate::smtp::address::Address::parse(&to, true) {
                    Ok(a) => {
                        conn.redirects.push((rcpt.to_string(), a.to_string()));
                        Verdict::Accept
                    }
                    Err(e) => {
                        shared.log.event(&Event::PluginIgnored {
                            who: conn.host(),
                            text: format!(
                                "redirect of <{}> to {:?} ignored: {e}",
                                printable(&rcpt.to_string()),
                                printable(&to)
                            ),
                        });
                        if unknown_local { v } else { Verdict::Accept }
                    }
                }
            }
            _ if unknown_local => v,
            _ => Verdict::Accept,
        }
    } else {
        v
    };
    match (&v, check) {
        (Verdict::Reject(r), Check::Rcpt { rcpt, sender, .. }) => {
            shared.log.event(&Event::Rejected {
                peer: conn.peer(),
                sender: Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default()),
                stage: RejectStage::Rcpt(rcpt.to_string()),
                by_plugin: false,
                temporary: r.is_transient(),
                reason: r.lines[0].clone(),
            });
        }
        (Verdict::Reject(r), Check::Mail { sender, .. }) => {
            shared.log.event(&Event::Rejected {
                peer: conn.peer(),
                sender: Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default()),
                stage: RejectStage::Mail,
                by_plugin: false,
                temporary: r.is_transient(),
                reason: r.lines[0].clone(),
            });
        }
        (Verdict::Reject(r), Check::Helo { .. }) => {
            conn.rejected(RejectStage::Helo, false, r.lines[0].clone());
        }
        _ => {}
    }
    if v == Verdict::Accept
        && let Some(r) = what
    {
        conn.rcpts.push(r);
    }
    v
}

/// Keep the message in the quarantine instead of the queue (a plugin's
/// verdict or an access table's HOLD). The quarantined copy carries the
/// plugins' header changes and our Authentication-Results, as a delivered
/// one would.
async fn quarantine(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    mut tx: crate::smtp::server::Transaction,
    why: String,
) -> Result<String, Reply> {
    let host = conn.host();
    let actions = std::mem::take(&mut conn.pending);
    let results = hooks::apply(&mut tx, actions, &shared.log, &host);
    let authserv = shared.auth.as_ref().map(|a| a.authserv_id.as_str());
    conn.checks
        .prepend_header(authserv, &shared.cfg.server.hostname, results, &mut tx.data);
    let id = next_id();
    let dir = shared.cfg.server.data_dir.join("quarantine");
    match super::quarantine::save(&dir, &id, std::mem::take(&mut tx.data)).await {
        Ok(_) => {
            shared.log.event(&not_spooled(conn, &id, why));
            Ok(id)
        }
        Err(e) => {
            conn.note(SessionNote::Other(format!("quarantine write failed: {e}")));
            Err(Reply::new(
                451,
                "4.3.0",
                "Local error in processing; try again later",
            ))
        }
    }
}

/// End of data: the data hook, then spooling.
async fn message(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    mut tx: crate::smtp::server::Transaction,
) -> Result<String, Reply> {
    if let Some(a) = shared.auth.clone() {
        let v = conn.checks.at_data(&a, &shared.cfg.auth, &tx.data).await;
        if v.removed > 0 {
            conn.note(SessionNote::Other(format!(
                "removed {} Authentication-Results header(s) claiming our authserv-id",
                v.removed
            )));
        }
        tx.data = v.data;
    }
    if let Some(access::Action::Discard(why)) = &conn.access {
        let id = next_id();
        let text = format!("discarded by access table: {why}");
        shared.log.event(&not_spooled(conn, &id, text));
        return Ok(id);
    }
    if conn.plugins.is_none()
        && let Some(access::Action::Hold(why)) = conn.access.take()
    {
        return quarantine(conn, shared, tx, format!("held by access table: {why}")).await;
    }
    let mut plugin_results = Vec::new();
    if conn.plugins.is_some() {
        // Lend the content to the hook without copying it; the message
        // resource is gone when the call returns, so the Arc is ours again.
        let data = Arc::new(std::mem::take(&mut tx.data));
        // DMARC's variables describe one message: none from an earlier one
        // of this connection may be counted again.
        conn.vars.retain(|(k, _)| !k.starts_with("dmarc."));
        let d = conn_hook(conn, crate::plugin::Call::Data(Arc::clone(&data))).await;
        tx.data = Arc::try_unwrap(data).unwrap_or_else(|a| (*a).clone());
        count_for_dmarc_report(conn, shared);
        let host = conn.host();
        match d {
            hooks::Decision::Refuse(r) => {
                conn.rejected(RejectStage::Data, true, r.first_line());
                return Err(r);
            }
            hooks::Decision::Discard => {
                let id = next_id();
                shared
                    .log
                    .event(&not_spooled(conn, &id, "discarded by plugin".into()));
                return Ok(id);
            }
            hooks::Decision::Quarantine(why) => {
                return quarantine(conn, shared, tx, format!("quarantined by plugin: {why}")).await;
            }
            hooks::Decision::Continue => {
                if let Some(access::Action::Hold(why)) = conn.access.take() {
                    return quarantine(conn, shared, tx, format!("held by access table: {why}"))
                        .await;
                }
            }
        }
        for (from, to) in std::mem::take(&mut conn.redirects) {
            if let Some(r) = tx.rcpts.iter_mut().find(|r| r.address.to_string() == from)
                && let Ok(a) = crate::smtp::address::Address::parse(&to, true)
            {
                r.address = a;
            }
        }
        let actions = std::mem::take(&mut conn.pending);
        plugin_results = hooks::apply(&mut tx, actions, &shared.log, &host);
        if tx.rcpts.is_empty() {
            return Err(Reply::new(
                554,
                "5.5.1",
                "No recipients left after filtering",
            ));
        }
    }
    let id = shared.auth.as_ref().map(|a| a.authserv_id.as_str());
    conn.checks.prepend_header(
        id,
        &shared.cfg.server.hostname,
        plugin_results,
        &mut tx.data,
    );
    let relay_client = match shared
        .router
        .tables()
        .in_hosts(&shared.cfg.server.relay_networks, conn.ip)
    {
        Ok(r) => r,
        Err(e) => {
            conn.note(SessionNote::Other(e.to_string()));
            return Err(access::lookup_failed());
        }
    };
    if let Some(signer) = shared.signer.as_ref().filter(|_| relay_client)
        && let Err(e) = signer.sign_into(&mut tx.data)
    {
        conn.note(SessionNote::Other(e.to_string()));
        return Err(Reply::new(
            451,
            "4.7.0",
            "Local error in signing; try again later",
        ));
    }
    // The context for the route hooks; its variables are also kept with
    // the message for the delivery hooks.
    let ctx = conn.plugins.is_some().then(|| {
        dispatch::context(&dispatch::Facts {
            client_ip: conn.ip.to_string(),
            client_port: conn.port,
            helo: conn.helo.as_deref(),
            tls: conn.tls.as_ref(),
            sender: conn.sender.as_deref(),
            recipients: tx.rcpts.iter().map(|r| r.address.to_string()).collect(),
            message_id: None,
            vars: &conn.vars,
            checks: conn.checks.for_plugins(),
        })
    });
    let view = conn_view(conn);
    let route = conn.plugins.as_mut().zip(ctx);
    receive::accept(view, shared, tx, route).await
}

/// Add the message the DMARC plugin just evaluated to its policy domain's
/// aggregate report, whatever becomes of it (refused and quarantined mail
/// counts too).
fn count_for_dmarc_report(conn: &Conn, shared: &Shared) {
    let Some(rpt) = &shared.dmarcrpt else {
        return;
    };
    let sender = conn.sender.as_deref().unwrap_or("");
    let envelope_from = match sender.rsplit_once('@') {
        Some((_, d)) => d.to_string(),
        None => conn.helo.clone().unwrap_or_default(),
    };
    if let Some(o) = crate::dmarcrpt::observe(&conn.vars, conn.ip, &envelope_from, || {
        conn.checks.report_results()
    }) {
        rpt.record(o);
    }
}

/// The `<=` line of a message accepted but not spooled (discarded or
/// quarantined by a plugin).
fn not_spooled(conn: &Conn, id: &str, outcome: String) -> Event {
    Event::Received {
        id: id.to_string(),
        sender: conn.sender.clone().unwrap_or_default(),
        peer: Some(conn.peer()),
        protocol: String::new(),
        origin: None,
        user: None,
        early: crate::log::Early::No,
        tls: None,
        chunking: false,
        size: 0,
        message_id: None,
        requiretls: false,
        outcome: Some(outcome),
    }
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
}

fn conn_view(c: &Conn) -> ConnView {
    ConnView {
        ip: c.ip,
        port: c.port,
        tls: c.tls.clone(),
        early_offered: c.early_offered,
        early_used: c.early_used,
    }
}

/// Keep `new_message_id` reachable from here for the receive step.
pub(crate) fn next_id() -> String {
    new_message_id()
}
