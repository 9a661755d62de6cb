//! The SMTP client: one connection to one server address, several messages
//! over it. EHLO with HELO fallback, STARTTLS, PIPELINING, CHUNKING, SIZE,
//! 8BITMIME, SMTPUTF8 and DSN, and Exim's early pipelining (PIPECONNECT):
//! with a fresh cache entry nothing waits for the banner. In clear, EHLO goes
//! out with the first transaction (EHLO, MAIL, RCPT, BDAT in one flight);
//! with STARTTLS, EHLO and STARTTLS go out together, and after the handshake
//! the second EHLO travels with the transaction when the cache knows the
//! encrypted capabilities too. Optionally the first flight rides in the SYN
//! (TCP Fast Open). The replies owed are read, and checked against the
//! cache, before the transaction's own.

use super::ehlo_cache::{EhloCache, Entry};
use super::tls::ClientTls;
use crate::config::OutboundTls;
use crate::smtp::client::reply::{ReplyParser, ServerReply};
use crate::smtp::client::transaction::{
    Job, check_local, content, mail_command, outcomes as rcpt_outcomes, rcpt_commands,
};
use crate::smtp::client::{Caps, Failure, RcptOutcome, Stage};
use crate::spool::TlsDetails;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Replies early pipelining still owes: the EHLO line goes out with the
/// first transaction, and the banner's and EHLO's replies are read (and
/// checked against the cache) before the transaction's.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The banner has not been read yet (cleartext connection).
    banner: bool,
    /// The cache entry the connection was started from.
    entry: Entry,
    /// The EHLO is the one after STARTTLS (the entry's encrypted half).
    tls: bool,
}

impl Pending {
    fn cached(&self) -> Caps {
        Caps::from_bits(if self.tls {
            self.entry.crypted.unwrap_or(0)
        } else {
            self.entry.clear
        })
    }
}

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
    /// First line of the banner.
    pub greeting: String,
    /// First line of the (last) EHLO reply.
    pub ehlo_response: String,
    /// Capabilities (after TLS, if TLS is on).
    pub caps: Caps,
    /// TLS details.
    pub tls: Option<TlsDetails>,
    /// Early pipelining was used on this connection.
    pub early_pipe: bool,
    /// Messages sent so far.
    pub sent: usize,
    /// Replies owed by early pipelining, read with the first transaction.
    pending: Option<Pending>,
    /// The conversation is out of step (a failure while reading what
    /// early pipelining was owed): do not use it again.
    broken: bool,
    helo: String,
    ehlo_cache: EhloCache,
    command_timeout: Duration,
    data_timeout: Duration,
}

impl Connection {
    async fn write(&mut self, bytes: &[u8], stage: &Stage) -> Result<(), Failure> {
        let t = self.data_timeout.max(self.command_timeout);
        match tokio::time::timeout(t, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::io(stage.clone(), e)),
            Err(_) => Err(Failure::io(stage.clone(), "timeout writing")),
        }
    }

    async fn read_reply(
        &mut self,
        stage: &Stage,
        timeout: Duration,
    ) -> Result<ServerReply, Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.parser.next_reply() {
                Some(Ok(r)) => return Ok(r),
                Some(Err(e)) => return Err(Failure::io(stage.clone(), e)),
                None => {}
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Ok(Ok(0)) => {
                    return Err(Failure::io(
                        stage.clone(),
                        "connection closed by the server",
                    ));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(Failure::io(stage.clone(), e)),
                Err(_) => return Err(Failure::io(stage.clone(), "timeout waiting for a reply")),
            };
            self.parser.feed(&self.buf[..n]);
        }
    }

    async fn command(&mut self, line: &str, stage: Stage) -> Result<ServerReply, Failure> {
        self.write(format!("{line}\r\n").as_bytes(), &stage).await?;
        self.read_reply(&stage, self.command_timeout).await
    }

    /// Connect; with `fast_open` the connect returns at once and the SYN
    /// leaves with the first write (see [`crate::net::fast_open::connect`]).
    async fn tcp(
        addr: SocketAddr,
        s: &ClientSettings,
        fast_open: bool,
    ) -> Result<TcpStream, Failure> {
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

    async fn handshake(&mut self, s: &ClientSettings, stage: Stage) -> Result<(), Failure> {
        let CStream::Plain(tcp) = std::mem::replace(&mut self.stream, CStream::Closed) else {
            return Err(Failure::io(stage, "TLS already active"));
        };
        let cfg = s.tls.config_for(self.addr, &self.host);
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let name = super::tls::server_name(&self.host, self.addr);
        match tokio::time::timeout(self.command_timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.tls = Some(super::tls::details(tls.get_ref().1));
                self.stream = CStream::Tls(Box::new(tls));
                self.parser = ReplyParser::default();
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::io(stage, format!("TLS handshake failed: {e}"))),
            Err(_) => Err(Failure::io(stage, "TLS handshake timed out")),
        }
    }

    async fn ehlo(&mut self, helo: &str) -> Result<ServerReply, Failure> {
        let r = self.command(&format!("EHLO {helo}"), Stage::Ehlo).await?;
        if r.is_ok() {
            return Ok(r);
        }
        if r.code == 421 {
            return Err(Failure::reply(Stage::Ehlo, r));
        }
        // RFC 5321 §3.2: fall back to HELO.
        let h = self.command(&format!("HELO {helo}"), Stage::Ehlo).await?;
        if h.is_ok() {
            Ok(h)
        } else {
            Err(Failure::reply(Stage::Ehlo, h))
        }
    }

    /// Connect to `addr` (named `host`), greet, and set up TLS by `policy`.
    pub async fn open(
        host: &str,
        addr: SocketAddr,
        policy: OutboundTls,
        s: &ClientSettings,
    ) -> Result<Connection, Failure> {
        let mut allow_early = s.pipe_connect && policy != OutboundTls::Implicit;
        let mut allow_tls = true;
        loop {
            match Self::open_once(host, addr, policy, s, allow_early, allow_tls).await {
                Ok(c) => return Ok(c),
                Err(Retry::WithoutEarlyPipe(f)) => {
                    tracing::debug!(%addr, error = %f.text, "early pipelining failed on the STARTTLS path; reconnecting without it");
                    allow_early = false;
                }
                Err(Retry::InClear(f)) => {
                    tracing::debug!(%addr, error = %f.text, "TLS failed; retrying in clear");
                    allow_tls = false;
                    allow_early = false;
                }
                Err(Retry::No(f)) => return Err(f),
            }
        }
    }

    async fn open_once(
        host: &str,
        addr: SocketAddr,
        policy: OutboundTls,
        s: &ClientSettings,
        allow_early: bool,
        allow_tls: bool,
    ) -> Result<Connection, Retry> {
        let want_tls =
            allow_tls && matches!(policy, OutboundTls::Opportunistic | OutboundTls::Required);
        // A usable cache entry; when TLS is required, only one that
        // promises STARTTLS (else the normal path finds out).
        let early = if allow_early {
            s.ehlo_cache.get(addr)
        } else {
            None
        }
        .filter(|e| {
            let c = Caps::from_bits(e.clear);
            c.early() && (policy != OutboundTls::Required || c.starttls)
        });
        let tcp = Self::tcp(addr, s, early.is_some() && s.fast_open)
            .await
            .map_err(Retry::No)?;
        let mut c = Connection {
            stream: CStream::Plain(tcp),
            parser: ReplyParser::default(),
            buf: vec![0; 8192],
            host: host.to_string(),
            addr,
            greeting: String::new(),
            ehlo_response: String::new(),
            caps: Caps::default(),
            tls: None,
            early_pipe: false,
            sent: 0,
            pending: None,
            broken: false,
            helo: s.helo.clone(),
            ehlo_cache: s.ehlo_cache.clone(),
            command_timeout: s.command_timeout,
            data_timeout: s.data_timeout,
        };
        if policy == OutboundTls::Implicit {
            c.handshake(s, Stage::Connect).await.map_err(Retry::No)?;
        }
        let clear;
        if let Some(entry) = early {
            c.early_pipe = true;
            let cached = Caps::from_bits(entry.clear);
            if !(want_tls && cached.starttls) {
                // Cleartext: nothing to say before the first transaction,
                // which carries the EHLO (and, with Fast Open, the SYN).
                c.caps = cached;
                c.pending = Some(Pending {
                    banner: true,
                    entry,
                    tls: false,
                });
                return Ok(c);
            }
            // EHLO and STARTTLS before the banner; the handshake needs
            // their replies.
            let out = format!("EHLO {}\r\nSTARTTLS\r\n", s.helo);
            c.write(out.as_bytes(), &Stage::Greeting)
                .await
                .map_err(Retry::No)?;
            let pending = Pending {
                banner: true,
                entry,
                tls: false,
            };
            clear = c.reap(pending).await.map_err(Retry::WithoutEarlyPipe)?;
            match c.read_reply(&Stage::StartTls, s.command_timeout).await {
                Ok(r) if r.code == 220 => {}
                Ok(r) => {
                    s.ehlo_cache.remove(addr);
                    return Err(Retry::WithoutEarlyPipe(Failure::reply(Stage::StartTls, r)));
                }
                Err(f) => {
                    s.ehlo_cache.remove(addr);
                    return Err(Retry::WithoutEarlyPipe(f));
                }
            }
        } else {
            let banner = c
                .read_reply(&Stage::Greeting, s.command_timeout)
                .await
                .map_err(Retry::No)?;
            if banner.code != 220 {
                return Err(Retry::No(Failure::reply(Stage::Greeting, banner)));
            }
            c.greeting = banner.first_line();
            let ehlo = c.ehlo(&s.helo).await.map_err(Retry::No)?;
            c.ehlo_response = ehlo.first_line();
            clear = Caps::parse(&ehlo);
            c.caps = clear;
            let tls_next = c.tls.is_none() && want_tls && clear.starttls;
            if !tls_next {
                if policy == OutboundTls::Required && c.tls.is_none() {
                    return Err(Retry::No(Failure::local(
                        "TLS is required but the server did not offer STARTTLS".into(),
                        false,
                    )));
                }
                if s.pipe_connect && clear.early() && policy != OutboundTls::Implicit {
                    s.ehlo_cache.put(addr, clear, None);
                }
                return Ok(c);
            }
            let r = c
                .command("STARTTLS", Stage::StartTls)
                .await
                .map_err(Retry::No)?;
            if r.code != 220 {
                let f = Failure::reply(Stage::StartTls, r);
                return Err(if policy == OutboundTls::Required {
                    Retry::No(f)
                } else {
                    Retry::InClear(f)
                });
            }
        }
        if let Err(f) = c.handshake(s, Stage::StartTls).await {
            return Err(if policy == OutboundTls::Required {
                Retry::No(f)
            } else {
                Retry::InClear(f)
            });
        }
        // After STARTTLS: the EHLO goes with the first transaction when the
        // cache knows what it will say.
        let crypted = early
            .and_then(|e| e.crypted)
            .map(Caps::from_bits)
            .filter(|c| c.early());
        if let (Some(entry), Some(cc)) = (early, crypted)
            && clear.bits() == entry.clear
        {
            c.caps = cc;
            c.pending = Some(Pending {
                banner: false,
                entry,
                tls: true,
            });
            return Ok(c);
        }
        let ehlo = c.ehlo(&s.helo).await.map_err(Retry::No)?;
        c.ehlo_response = ehlo.first_line();
        c.caps = Caps::parse(&ehlo);
        if s.pipe_connect && clear.early() {
            let crypted = c.caps.early().then_some(c.caps);
            s.ehlo_cache.put(addr, clear, crypted);
        }
        Ok(c)
    }

    /// Read the replies early pipelining is owed (banner, EHLO) and check
    /// the EHLO against the cache entry, as Exim does: a changed answer
    /// that still offers PIPECONNECT rewrites the entry, one without it
    /// deletes it; a bad banner or EHLO deletes it and fails (temporarily:
    /// the next attempt goes without early pipelining). Returns the
    /// capabilities now offered.
    async fn reap(&mut self, p: Pending) -> Result<Caps, Failure> {
        let owed = async {
            if p.banner {
                let b = self
                    .read_reply(&Stage::Greeting, self.command_timeout)
                    .await?;
                if b.code != 220 {
                    return Err(Failure::reply(Stage::Greeting, b));
                }
                self.greeting = b.first_line();
            }
            let e = self.read_reply(&Stage::Ehlo, self.command_timeout).await?;
            if !e.is_ok() {
                return Err(Failure {
                    permanent: false,
                    ..Failure::reply(Stage::Ehlo, e)
                });
            }
            Ok(e)
        };
        let ehlo = match owed.await {
            Ok(e) => e,
            Err(f) => {
                self.ehlo_cache.remove(self.addr);
                self.broken = true;
                return Err(f);
            }
        };
        self.ehlo_response = ehlo.first_line();
        let now = Caps::parse(&ehlo);
        if now.bits() != p.cached().bits() {
            if now.early() {
                let (clear, crypted) = if p.tls {
                    (p.entry.clear, Some(now.bits()))
                } else {
                    (now.bits(), p.entry.crypted)
                };
                self.ehlo_cache.put_bits(self.addr, clear, crypted);
            } else {
                self.ehlo_cache.remove(self.addr);
            }
        }
        Ok(now)
    }

    /// Whether the connection may carry another message.
    pub fn reusable(&self) -> bool {
        !self.broken
    }

    /// Send one message. `Err` is a failure for every recipient; otherwise
    /// one outcome per recipient, in order.
    pub async fn send(&mut self, job: &Job) -> Result<Vec<RcptOutcome>, Failure> {
        let caps = self.caps;
        check_local(job, &caps)?;
        let mail = mail_command(job, &caps);
        let rcpt_lines = rcpt_commands(job, &caps);
        let mail_stage = Stage::Mail(job.sender.clone());
        let result = if caps.pipelining {
            self.send_pipelined(job, &mail, &rcpt_lines, &mail_stage)
                .await
        } else {
            self.send_lockstep(job, &mail, &rcpt_lines, &mail_stage)
                .await
        };
        self.sent += 1;
        if self.broken {
            return result;
        }
        if !matches!(&result, Ok(v) if v.iter().any(|o| matches!(o, RcptOutcome::Delivered(_)))) {
            // Leave the connection clean for the next message.
            if let Ok(r) = self.command("RSET", Stage::Mail(job.sender.clone())).await
                && !r.is_ok()
            {
                return result;
            }
        }
        result
    }

    async fn send_pipelined(
        &mut self,
        job: &Job,
        mail: &str,
        rcpts: &[String],
        mail_stage: &Stage,
    ) -> Result<Vec<RcptOutcome>, Failure> {
        let (content, bdat) = content(job, &self.caps);
        let pending = self.pending.take();
        let mut out = match pending {
            Some(_) => format!("EHLO {}\r\n{mail}\r\n", self.helo),
            None => format!("{mail}\r\n"),
        };
        for r in rcpts {
            out.push_str(r);
            out.push_str("\r\n");
        }
        let mut out = out.into_bytes();
        if bdat {
            out.extend_from_slice(&content);
        } else {
            out.extend_from_slice(b"DATA\r\n");
        }
        if let Err(f) = self.write(&out, mail_stage).await {
            if pending.is_some() {
                // Nothing was read yet: a refused (Fast Open) connect or a
                // reset shows up here; it is about the host.
                self.broken = true;
                return Err(Failure {
                    stage: Stage::Connect,
                    ..f
                });
            }
            return Err(f);
        }
        // What the commands were built from, when the server had not yet
        // said what it offers.
        let mut assumed = None;
        if let Some(p) = pending {
            let now = self.reap(p).await?;
            assumed = Some(self.caps);
            self.caps = now;
        }
        let mail_r = self.read_reply(mail_stage, self.command_timeout).await?;
        let mut outcomes = Vec::new();
        for (i, r) in job.rcpts.iter().enumerate() {
            let st = Stage::Rcpt(r.address.clone());
            let rr = self.read_reply(&st, self.command_timeout).await?;
            outcomes.push((i, rr));
        }
        let data_r = self.read_reply(&Stage::Data, self.data_timeout).await?;
        let accepted = outcomes.iter().any(|(_, r)| r.is_ok());
        if let Some(a) = assumed
            && a.transaction_bits() & !self.caps.transaction_bits() != 0
            && !(bdat && accepted && data_r.is_ok())
        {
            // The commands used something a stale cache entry (now fixed)
            // promised and the server no longer offers: its answers say
            // nothing about the message. Drop the connection (an open DATA
            // is abandoned, never ended) and try again later.
            self.broken = true;
            return Err(Failure {
                stage: Stage::Ehlo,
                text: "the server's capabilities changed since they were cached; \
                       will retry"
                    .into(),
                reply: None,
                permanent: false,
            });
        }
        if !mail_r.is_ok() {
            return Err(Failure::reply(mail_stage.clone(), mail_r));
        }
        let final_r = if bdat {
            data_r
        } else if data_r.code == 354 && accepted {
            self.write(&content, &Stage::Content).await?;
            self.read_reply(&Stage::Content, self.data_timeout).await?
        } else if data_r.code == 354 {
            // The server wants data although no recipient was accepted:
            // end it at once (an empty message) and ignore the answer.
            self.write(b".\r\n", &Stage::Content).await?;
            let _ = self.read_reply(&Stage::Content, self.data_timeout).await?;
            data_r
        } else {
            data_r
        };
        Ok(rcpt_outcomes(job, outcomes, final_r, bdat))
    }

    async fn send_lockstep(
        &mut self,
        job: &Job,
        mail: &str,
        rcpts: &[String],
        mail_stage: &Stage,
    ) -> Result<Vec<RcptOutcome>, Failure> {
        let r = self.command(mail, mail_stage.clone()).await?;
        if !r.is_ok() {
            return Err(Failure::reply(mail_stage.clone(), r));
        }
        let mut outcomes = Vec::new();
        for (i, (line, rc)) in rcpts.iter().zip(&job.rcpts).enumerate() {
            let rr = self.command(line, Stage::Rcpt(rc.address.clone())).await?;
            outcomes.push((i, rr));
        }
        if !outcomes.iter().any(|(_, r)| r.is_ok()) {
            return Ok(rcpt_outcomes(
                job,
                outcomes,
                ServerReply {
                    code: 554,
                    lines: vec![],
                },
                false,
            ));
        }
        let (content, bdat) = content(job, &self.caps);
        let final_r = if bdat {
            self.write(&content, &Stage::Content).await?;
            self.read_reply(&Stage::Content, self.data_timeout).await?
        } else {
            let d = self.command("DATA", Stage::Data).await?;
            if d.code != 354 {
                return Err(Failure::reply(Stage::Data, d));
            }
            self.write(&content, &Stage::Content).await?;
            self.read_reply(&Stage::Content, self.data_timeout).await?
        };
        Ok(rcpt_outcomes(job, outcomes, final_r, bdat))
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

enum Retry {
    No(Failure),
    WithoutEarlyPipe(Failure),
    InClear(Failure),
}
