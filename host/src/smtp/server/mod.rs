//! The server side of an SMTP session as a state machine without I/O.
//!
//! The driver feeds received bytes with [`Session::feed`] and calls
//! [`Session::poll`] until it returns [`Step::NeedInput`]; replies accumulate
//! in an output buffer that the driver sends with [`Session::take_output`]
//! before it blocks on reading (RFC 2920: flush before waiting). Policy
//! decisions (HELO, MAIL, RCPT) and the spooling of a message are handed to
//! the driver as steps and answered with [`Session::decide`] and
//! [`Session::message_done`].

use super::address::{self, Address, AddressError, Path};
use super::command::{self, Command, MailParams, RcptParams};
use super::data::{DataReader, Normalizer};
use super::reply::Reply;

mod content;
mod envelope;
mod greeting;
mod sasl;

pub use sasl::{AuthOffer, Credentials, Mechanism};

/// Per-connection settings of the state machine.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our host name, used in the banner and replies.
    pub hostname: String,
    /// Domain given to a bare `<postmaster>` recipient.
    pub postmaster_domain: String,
    /// The client, as shown in the EHLO greeting (`[127.0.0.1]`).
    pub client_display: String,
    /// Maximum message size in octets (0: unlimited); advertised with SIZE.
    pub max_message_size: u64,
    /// Maximum recipients per message.
    pub max_recipients: usize,
    /// Maximum length of a command line, line ending included.
    pub max_line_length: usize,
    /// Protocol errors tolerated before the connection is dropped.
    pub max_errors: u32,
    /// NOOP/RSET/VRFY/EXPN/HELP commands tolerated per connection.
    pub max_junk_commands: u32,
    /// Messages accepted per connection.
    pub max_messages: u32,
    /// Offer STARTTLS (plain listener with TLS configured).
    pub starttls: bool,
    /// Advertise PIPECONNECT (and accept pre-banner input) for this client.
    pub pipe_connect: bool,
    /// The connection is already encrypted (implicit TLS).
    pub tls_active: bool,
    /// Offer REQUIRETLS once TLS is up (RFC 8689).
    pub requiretls: bool,
    /// SMTP AUTH, when the listener offers it.
    pub auth: Option<AuthOffer>,
}

/// A decision requested from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// HELO or EHLO with the name given.
    Helo {
        /// The client's claimed name.
        name: String,
        /// True for EHLO.
        esmtp: bool,
    },
    /// MAIL FROM, after syntax checks.
    Mail {
        /// The reverse path; `None` is the null sender.
        sender: Option<Address>,
        /// Its ESMTP parameters.
        params: MailParams,
    },
    /// RCPT TO, after syntax and count checks.
    Rcpt {
        /// The recipient.
        rcpt: Address,
        /// Its ESMTP parameters.
        params: RcptParams,
        /// The sender of the transaction.
        sender: Option<Address>,
    },
    /// AUTH: verify these credentials. Accept gives the 235 and makes the
    /// session authenticated; a 421 also closes it.
    Auth(Credentials),
}

/// The driver's answer to a [`Check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the default positive reply.
    Accept,
    /// Refuse with this reply (4xx or 5xx); a 421 also closes the session.
    Reject(Reply),
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub address: Address,
    /// DSN parameters.
    pub params: RcptParams,
}

/// A complete message handed to the driver for spooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// HELO/EHLO name.
    pub helo: String,
    /// True after EHLO.
    pub esmtp: bool,
    /// Envelope sender; `None` is the null sender.
    pub sender: Option<Address>,
    /// MAIL FROM parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub rcpts: Vec<Recipient>,
    /// Content with CRLF line endings, dot-unstuffing done.
    pub data: Vec<u8>,
    /// True when the content came with BDAT.
    pub chunking: bool,
    /// True when the session is encrypted.
    pub tls: bool,
    /// The user of a successful AUTH, when the client authenticated.
    pub auth: Option<String>,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send any output, then read more input.
    NeedInput,
    /// Decide, then call [`Session::decide`].
    Check(Check),
    /// Spool the message, then call [`Session::message_done`].
    Message(Box<Transaction>),
    /// Send the output (the 220 to STARTTLS), run the TLS handshake, then
    /// call [`Session::tls_started`]. `discarded` plaintext octets that were
    /// pipelined behind STARTTLS have been thrown away.
    StartTls {
        /// Octets of plaintext discarded.
        discarded: usize,
    },
    /// Send the output and close the connection.
    Close(CloseReason),
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said QUIT.
    Quit,
    /// Input arrived before the banner from a client not allowed to do that.
    SyncError,
    /// Too many protocol errors.
    TooManyErrors,
    /// Too many junk commands or messages.
    LimitReached,
    /// A check answered with 421.
    Rejected,
}

#[derive(Debug)]
enum Phase {
    Banner,
    Command,
    Data(DataReader),
    Bdat { remaining: u64, last: bool },
    Sasl(sasl::Sasl),
    Closed(CloseReason),
}

#[derive(Debug)]
struct Tx {
    sender: Option<Address>,
    params: MailParams,
    rcpts: Vec<Recipient>,
    chunks: Option<(Vec<u8>, Normalizer, bool)>,
}

#[derive(Debug)]
enum Pending {
    Helo {
        name: String,
        esmtp: bool,
    },
    Mail {
        sender: Option<Address>,
        params: MailParams,
    },
    Rcpt(Recipient),
    Auth(String),
    Message,
}

/// The server session state machine.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    phase: Phase,
    helo: Option<(String, bool)>,
    tls: bool,
    tx: Option<Tx>,
    bdat_failed: Option<Reply>,
    pending: Option<Pending>,
    errors: u32,
    junk: u32,
    messages: u32,
    skipping_long_line: bool,
    auth: Option<String>,
}

impl Session {
    /// A new session; call [`Session::start`] to send the banner.
    pub fn new(cfg: SessionConfig) -> Self {
        let tls = cfg.tls_active;
        Session {
            cfg,
            input: Vec::with_capacity(1024),
            pos: 0,
            out: Vec::with_capacity(512),
            phase: Phase::Banner,
            helo: None,
            tls,
            tx: None,
            bdat_failed: None,
            pending: None,
            errors: 0,
            junk: 0,
            messages: 0,
            skipping_long_line: false,
            auth: None,
        }
    }

    /// Queue the banner. `early_input` tells whether the client sent
    /// anything before it: allowed only with PIPECONNECT.
    pub fn start(&mut self, early_input: bool) {
        if early_input && !self.cfg.pipe_connect {
            self.reply(Reply::new(554, "5.5.0", "SMTP synchronization error"));
            self.phase = Phase::Closed(CloseReason::SyncError);
            return;
        }
        let banner = format!("{} ESMTP mailgate ready", self.cfg.hostname);
        self.reply(Reply::multiline(220, vec![banner]));
        self.phase = Phase::Command;
    }

    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Take the replies queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True when replies are waiting to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// True while message content is being received (the driver applies
    /// the data timeout then).
    pub fn in_content(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    /// True between transactions (no MAIL given), where a shutdown may
    /// close the session without losing a transaction in progress.
    pub fn is_idle(&self) -> bool {
        self.tx.is_none() && matches!(self.phase, Phase::Command) && self.pending.is_none()
    }

    /// True once the session has closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// True when the machine holds unprocessed input.
    pub fn has_buffered_input(&self) -> bool {
        self.pos < self.input.len()
    }

    /// Queue a final reply (timeout, shutdown) and close.
    pub fn abort(&mut self, reply: Reply, reason: CloseReason) {
        self.reply(reply);
        self.phase = Phase::Closed(reason);
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    fn error(&mut self, r: Reply) {
        self.reply(r);
        self.errors += 1;
        if self.errors > self.cfg.max_errors {
            self.reply(Reply::new(
                421,
                "4.7.0",
                format!("{} Too many errors, closing connection", self.cfg.hostname),
            ));
            self.phase = Phase::Closed(CloseReason::TooManyErrors);
        }
    }

    fn junk(&mut self) -> bool {
        self.junk += 1;
        if self.junk > self.cfg.max_junk_commands {
            self.reply(Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} Too many commands, closing connection",
                    self.cfg.hostname
                ),
            ));
            self.phase = Phase::Closed(CloseReason::LimitReached);
            return false;
        }
        true
    }

    /// Advance: process buffered input until a step needs the driver.
    pub fn poll(&mut self) -> Step {
        loop {
            if self.pending.is_some() {
                // Waiting for decide()/message_done(); nothing to do.
                return Step::NeedInput;
            }
            match &mut self.phase {
                Phase::Closed(r) => return Step::Close(*r),
                Phase::Banner => return Step::NeedInput,
                Phase::Data(reader) => {
                    let (n, done) = reader.feed(&self.input[self.pos..]);
                    self.pos += n;
                    if !done {
                        return Step::NeedInput;
                    }
                    let Phase::Data(reader) = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!()
                    };
                    if reader.overflow() {
                        self.tx = None;
                        self.reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
                        continue;
                    }
                    return self.finish_message(reader.into_content(), false);
                }
                Phase::Bdat { remaining, last } => {
                    let avail = (self.input.len() - self.pos) as u64;
                    let take = avail.min(*remaining) as usize;
                    let last = *last;
                    let chunk = &self.input[self.pos..self.pos + take];
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    if self.bdat_failed.is_none()
                        && let Some(tx) = self.tx.as_mut()
                    {
                        let (buf, norm, _) = tx
                            .chunks
                            .get_or_insert_with(|| (Vec::new(), Normalizer::default(), true));
                        norm.push(chunk, buf);
                        if self.cfg.max_message_size != 0
                            && buf.len() as u64 > self.cfg.max_message_size
                        {
                            self.bdat_failed =
                                Some(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
                        }
                    }
                    self.pos += take;
                    if !done {
                        return Step::NeedInput;
                    }
                    self.phase = Phase::Command;
                    if let Some(r) = self.bdat_failed.take() {
                        self.tx = None;
                        self.error(r);
                        continue;
                    }
                    if last {
                        let tx = self.tx.as_mut().expect("checked at BDAT");
                        let (mut buf, mut norm, _) = tx.chunks.take().unwrap_or_default();
                        norm.finish(&mut buf);
                        return self.finish_message(buf, true);
                    }
                    self.reply(Reply::new(250, "2.0.0", "Chunk received"));
                    continue;
                }
                Phase::Sasl(_) => {
                    let Some(line) = self.next_line() else {
                        return Step::NeedInput;
                    };
                    let step = match line {
                        Ok(l) => self.sasl_line(&l),
                        Err(r) => {
                            self.phase = Phase::Command;
                            self.error(r);
                            None
                        }
                    };
                    if let Some(step) = step {
                        return step;
                    }
                }
                Phase::Command => {
                    let Some(line) = self.next_line() else {
                        return Step::NeedInput;
                    };
                    let line = match line {
                        Ok(l) => l,
                        Err(r) => {
                            self.error(r);
                            continue;
                        }
                    };
                    if let Some(step) = self.command(&line) {
                        return step;
                    }
                }
            }
        }
    }

    /// Extract the next command line, or an error reply for a bad one.
    fn next_line(&mut self) -> Option<Result<String, Reply>> {
        loop {
            let buf = &self.input[self.pos..];
            match memchr::memchr(b'\n', buf) {
                None => {
                    if buf.len() > self.cfg.max_line_length {
                        self.pos = self.input.len();
                        if !self.skipping_long_line {
                            self.skipping_long_line = true;
                            return Some(Err(Reply::new(500, "5.5.2", "Line too long")));
                        }
                    }
                    return None;
                }
                Some(lf) => {
                    let raw = &buf[..lf];
                    self.pos += lf + 1;
                    if self.skipping_long_line {
                        self.skipping_long_line = false;
                        continue;
                    }
                    if raw.len() + 1 > self.cfg.max_line_length {
                        return Some(Err(Reply::new(500, "5.5.2", "Line too long")));
                    }
                    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                    if raw.iter().any(|&b| b == 0 || b == b'\r') {
                        return Some(Err(Reply::new(
                            500,
                            "5.5.2",
                            "Invalid characters in command",
                        )));
                    }
                    return Some(match std::str::from_utf8(raw) {
                        Ok(s) => Ok(s.to_string()),
                        Err(_) => Err(Reply::new(500, "5.5.2", "Invalid UTF-8 in command")),
                    });
                }
            }
        }
    }

    fn esmtp(&self) -> bool {
        self.helo.as_ref().is_some_and(|h| h.1)
    }

    fn command(&mut self, line: &str) -> Option<Step> {
        match Command::parse(line) {
            Command::Helo(name) => {
                self.pending = Some(Pending::Helo {
                    name: name.clone(),
                    esmtp: false,
                });
                Some(Step::Check(Check::Helo { name, esmtp: false }))
            }
            Command::Ehlo(name) => {
                self.pending = Some(Pending::Helo {
                    name: name.clone(),
                    esmtp: true,
                });
                Some(Step::Check(Check::Helo { name, esmtp: true }))
            }
            Command::Mail(arg) => self.mail(&arg),
            Command::Rcpt(arg) => self.rcpt(&arg),
            Command::Data => {
                match &self.tx {
                    None => self.error(Reply::new(503, "5.5.1", "MAIL first")),
                    Some(tx) if tx.rcpts.is_empty() => {
                        self.error(Reply::new(554, "5.5.1", "No valid recipients"))
                    }
                    Some(tx) if tx.chunks.is_some() => {
                        self.error(Reply::new(503, "5.5.1", "DATA not allowed after BDAT"))
                    }
                    Some(_) => {
                        self.reply(Reply::new(
                            354,
                            "",
                            "Enter message, ending with \".\" on a line by itself",
                        ));
                        self.phase = Phase::Data(DataReader::new(self.cfg.max_message_size));
                    }
                }
                None
            }
            Command::Bdat { size, last } => {
                match &self.tx {
                    None => {
                        self.bdat_failed = Some(Reply::new(503, "5.5.1", "MAIL first"));
                    }
                    Some(tx) if tx.rcpts.is_empty() => {
                        self.bdat_failed = Some(Reply::new(554, "5.5.1", "No valid recipients"));
                    }
                    Some(_) => {
                        if self.cfg.max_message_size != 0 && size > self.cfg.max_message_size {
                            self.bdat_failed =
                                Some(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
                        }
                        if let Some(tx) = self.tx.as_mut() {
                            tx.chunks
                                .get_or_insert_with(|| (Vec::new(), Normalizer::default(), true));
                        }
                    }
                }
                if size == 0 && !last {
                    // An empty non-final chunk: nothing to read.
                    if let Some(r) = self.bdat_failed.take() {
                        self.error(r);
                    } else {
                        self.reply(Reply::new(250, "2.0.0", "Chunk received"));
                    }
                    return None;
                }
                self.phase = Phase::Bdat {
                    remaining: size,
                    last,
                };
                None
            }
            Command::Rset => {
                if self.junk() {
                    self.tx = None;
                    self.reply(Reply::new(250, "2.0.0", "Reset OK"));
                }
                None
            }
            Command::Noop => {
                if self.junk() {
                    self.reply(Reply::new(250, "2.0.0", "OK"));
                }
                None
            }
            Command::Vrfy => {
                if self.junk() {
                    self.reply(Reply::new(
                        252,
                        "2.5.0",
                        "Cannot VRFY user, but will accept message and attempt delivery",
                    ));
                }
                None
            }
            Command::Expn => {
                if self.junk() {
                    self.reply(Reply::new(502, "5.5.1", "EXPN not available"));
                }
                None
            }
            Command::Help => {
                if self.junk() {
                    self.reply(Reply::new(
                        214,
                        "2.0.0",
                        "Commands: HELO EHLO AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS VRFY HELP",
                    ));
                }
                None
            }
            Command::Quit => {
                self.reply(Reply::new(
                    221,
                    "2.0.0",
                    format!("{} closing connection", self.cfg.hostname),
                ));
                self.phase = Phase::Closed(CloseReason::Quit);
                Some(Step::Close(CloseReason::Quit))
            }
            Command::StartTls(arg) => {
                if !arg.is_empty() {
                    self.error(Reply::new(501, "5.5.4", "STARTTLS takes no parameters"));
                } else if self.tls {
                    self.error(Reply::new(503, "5.5.1", "TLS already active"));
                } else if !self.cfg.starttls {
                    self.error(Reply::new(502, "5.5.1", "STARTTLS not available"));
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    // CVE-2011-0411: anything pipelined behind STARTTLS is
                    // plaintext an attacker may have injected; drop it.
                    let discarded = self.input.len() - self.pos;
                    self.input.clear();
                    self.pos = 0;
                    self.helo = None;
                    self.tx = None;
                    // RFC 3207 §4.2: nothing learnt before TLS is kept.
                    self.auth = None;
                    return Some(Step::StartTls { discarded });
                }
                None
            }
            Command::Auth(arg) => self.auth_command(&arg),
            Command::Invalid(r) => {
                self.error(r);
                None
            }
            Command::Unknown(_) => {
                self.error(Reply::new(500, "5.5.1", "Unrecognized command"));
                None
            }
        }
    }

    /// Answer the last [`Step::Check`].
    pub fn decide(&mut self, verdict: Verdict) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if let Verdict::Reject(r) = verdict {
            let close = r.code == 421;
            self.reply(r);
            if close {
                self.phase = Phase::Closed(CloseReason::Rejected);
            }
            return;
        }
        match p {
            Pending::Helo { name, esmtp } => {
                let r = if esmtp {
                    self.ehlo_reply(&name)
                } else {
                    Reply::new(250, "", format!("{} Hello {}", self.cfg.hostname, name))
                };
                self.reply(r);
                self.helo = Some((name, esmtp));
                self.tx = None;
            }
            Pending::Mail { sender, params } => {
                self.reply(Reply::new(250, "2.1.0", "Sender OK"));
                self.tx = Some(Tx {
                    sender,
                    params,
                    rcpts: Vec::new(),
                    chunks: None,
                });
            }
            Pending::Auth(user) => {
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                self.auth = Some(user);
            }
            Pending::Rcpt(r) => {
                self.reply(Reply::new(250, "2.1.5", "Recipient OK"));
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push(r);
                }
            }
            Pending::Message => {
                // Not a check; keep waiting for message_done.
                self.pending = Some(p);
            }
        }
    }

    /// Report the outcome of spooling the message: `Ok(id)` gives the 250.
    pub fn message_done(&mut self, result: Result<String, Reply>) {
        if !matches!(self.pending, Some(Pending::Message)) {
            return;
        }
        self.pending = None;
        self.tx = None;
        match result {
            Ok(id) => {
                self.messages += 1;
                // As Postfix does: junk commands are counted per message.
                self.junk = 0;
                self.reply(Reply::new(250, "2.0.0", format!("OK id={id}")));
            }
            Err(r) => {
                let close = r.code == 421;
                self.reply(r);
                if close {
                    self.phase = Phase::Closed(CloseReason::Rejected);
                }
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.auth = None;
        self.input.clear();
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests;
