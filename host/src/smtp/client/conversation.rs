//! The client's conversation with one server, as a state machine without
//! I/O (in the manner of rustls and quinn-proto).
//!
//! The driver feeds it what happened ([`Input`]: a reply, the end of a TLS
//! handshake, an I/O failure) and carries out what it asks for
//! ([`Action`]: bytes to send, a reply to read, a handshake to do, an EHLO
//! cache update), in order, until it asks to read or to handshake, or
//! reports that the connection is ready or that an attempt has ended.
//!
//! What it decides: EHLO with HELO fallback; STARTTLS by policy, with a
//! retry in clear or without early pipelining as Exim does; early
//! pipelining (PIPECONNECT) from a cached EHLO answer, in clear (EHLO goes
//! out with the first transaction) and after STARTTLS (the second EHLO
//! travels with the transaction); the replies early pipelining is owed and
//! their check against the cache (a changed answer that still offers
//! PIPECONNECT rewrites the entry, one without it deletes it, a bad banner
//! or EHLO deletes it); a transaction shaped by a capability the server
//! no longer offers is abandoned; PIPELINING or lock-step transactions
//! (CHUNKING or DATA), RSET after a transaction that delivered nothing.

use super::caps::Caps;
use super::outcome::{Failure, RcptOutcome, Stage};
use super::reply::ServerReply;
use super::transaction::Job;
use std::collections::VecDeque;

/// How TLS is used with this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered; a failed STARTTLS retries in clear.
    Opportunistic,
    /// STARTTLS must succeed, else the attempt fails (temporarily).
    Required,
    /// TLS from the first byte (RFC 8314).
    Implicit,
    /// Never.
    Off,
}

/// A cached EHLO answer (capability bits, see [`Caps::bits`]): in clear,
/// and after STARTTLS when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    /// The cleartext EHLO.
    pub clear: u16,
    /// The EHLO after STARTTLS.
    pub crypted: Option<u16>,
}

/// How one connection attempt is set up.
#[derive(Debug, Clone)]
pub struct OpenParams {
    /// Our EHLO name.
    pub helo: String,
    /// The TLS policy.
    pub tls: TlsMode,
    /// Early pipelining may be used (and its cache entries written).
    pub pipe_connect: bool,
    /// The EHLO cache entry for this server, if any.
    pub cached: Option<Cached>,
    /// Log in (SMTP AUTH, RFC 4954) before the first message.
    pub login: Option<Login>,
}

/// Credentials for a server that wants a login. Debug output hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// Send them only once TLS is up (the driver has already made sure a
    /// connection under this policy has a verified certificate, when that
    /// is demanded); without TLS the attempt fails before AUTH.
    pub needs_tls: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("needs_tls", &self.needs_tls)
            .finish()
    }
}

/// How a failed attempt to open should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not at all: the failure is the attempt's.
    No,
    /// Reconnect without early pipelining (it failed on the STARTTLS path).
    WithoutEarlyPipe,
    /// Reconnect without TLS (opportunistic STARTTLS failed).
    InClear,
}

/// Which timeout a read runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The command timeout.
    Command,
    /// The data timeout (replies to the content and to DATA).
    Data,
}

/// An EHLO cache update the driver must make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOp {
    /// Store these capability bits.
    Put(Cached),
    /// Delete the entry.
    Remove,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these bytes (and flush).
    Send(Vec<u8>),
    /// Read one reply and feed it back with [`Input::Reply`].
    Read(Wait),
    /// Do the TLS handshake on the connection, then [`Input::TlsUp`] or
    /// [`Input::TlsFailed`].
    Handshake,
    /// Update the EHLO cache entry of this server.
    Cache(CacheOp),
    /// The connection is ready for [`Conversation::send`].
    Ready,
    /// Opening failed; try again as told, or give up.
    OpenFailed(Failure, Retry),
    /// The message is done: one outcome per recipient, or a failure for
    /// all of them. Afterwards [`Conversation::reusable`] tells whether the
    /// connection may carry another message.
    Sent(Result<Vec<RcptOutcome>, Failure>),
}

/// What happened, for the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A complete reply.
    Reply(ServerReply),
    /// The TLS handshake succeeded.
    TlsUp,
    /// The TLS handshake failed (the text says how).
    TlsFailed(String),
    /// Reading failed: connection closed, reset, timeout, a malformed
    /// reply (the text says which).
    IoFailed(String),
    /// Writing the last [`Action::Send`] failed; the actions queued after
    /// it are void.
    WriteFailed(String),
}

/// Replies early pipelining still owes: the banner (cleartext) and the EHLO
/// that goes out with the first transaction.
#[derive(Debug, Clone, Copy)]
struct Owed {
    banner: bool,
    entry: Cached,
    /// The EHLO is the one after STARTTLS.
    tls: bool,
}

impl Owed {
    fn cached(&self) -> Caps {
        Caps::from_bits(if self.tls {
            self.entry.crypted.unwrap_or(0)
        } else {
            self.entry.clear
        })
    }
}

#[derive(Debug)]
enum State {
    New,
    ImplicitTls,
    Banner,
    Ehlo { tls: bool },
    Helo { tls: bool },
    StartTls,
    StartTlsHandshake,
    Auth(login::Step),
    EarlyBanner,
    EarlyEhlo,
    EarlyStartTls,
    Ready,
    Tx(Box<Tx>),
    Rset(Option<Result<Vec<RcptOutcome>, Failure>>),
    Closed,
}

/// The conversation with one server over one connection.
#[derive(Debug)]
pub struct Conversation {
    params: OpenParams,
    state: State,
    out: VecDeque<Action>,
    /// The cache entry this attempt uses for early pipelining.
    early: Option<Cached>,
    /// Capabilities of the cleartext EHLO (as known).
    clear: Caps,
    tls: bool,
    /// Capabilities in force (after TLS, if TLS is on).
    pub caps: Caps,
    /// First line of the banner.
    pub greeting: String,
    /// First line of the (last) EHLO reply.
    pub ehlo_response: String,
    /// Early pipelining was used on this connection.
    pub early_pipe: bool,
    /// Messages sent so far.
    pub sent: usize,
    /// The mechanism this connection logged in with (SMTP AUTH).
    pub authenticated: Option<&'static str>,
    owed: Option<Owed>,
    broken: bool,
}

fn want_tls(mode: TlsMode) -> bool {
    matches!(mode, TlsMode::Opportunistic | TlsMode::Required)
}

impl Conversation {
    /// A conversation for a new connection; call [`Conversation::start`]
    /// once it is connected (or, with Fast Open, about to be).
    pub fn new(params: OpenParams) -> Conversation {
        let early = params
            .cached
            .filter(|_| params.pipe_connect && params.tls != TlsMode::Implicit)
            .filter(|e| {
                let c = Caps::from_bits(e.clear);
                c.early() && (params.tls != TlsMode::Required || c.starttls)
            })
            // A login needs the server's last EHLO answer before MAIL, so
            // it early-pipelines only the cleartext EHLO and STARTTLS.
            .filter(|e| {
                params.login.is_none()
                    || (want_tls(params.tls) && Caps::from_bits(e.clear).starttls)
            });
        Conversation {
            params,
            state: State::New,
            out: VecDeque::new(),
            early,
            clear: Caps::default(),
            tls: false,
            caps: Caps::default(),
            greeting: String::new(),
            ehlo_response: String::new(),
            early_pipe: false,
            sent: 0,
            authenticated: None,
            owed: None,
            broken: false,
        }
    }

    /// Whether this attempt starts from a cached EHLO answer (the driver
    /// may then send its first flight in the SYN).
    pub fn early(&self) -> bool {
        self.early.is_some()
    }

    /// Whether the connection may carry another message.
    pub fn reusable(&self) -> bool {
        !self.broken && matches!(self.state, State::Ready)
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    fn push(&mut self, a: Action) {
        self.out.push_back(a);
    }

    fn send_line(&mut self, line: &str) {
        self.push(Action::Send(format!("{line}\r\n").into_bytes()));
    }

    fn read(&mut self, state: State) {
        self.state = state;
        self.push(Action::Read(Wait::Command));
    }

    fn fail_open(&mut self, f: Failure, retry: Retry) {
        self.state = State::Closed;
        self.broken = true;
        self.push(Action::OpenFailed(f, retry));
    }

    fn retry_tls_failure(&self) -> Retry {
        if self.params.tls == TlsMode::Required {
            Retry::No
        } else {
            Retry::InClear
        }
    }

    /// Begin: after the TCP connect.
    pub fn start(&mut self) {
        if self.params.tls == TlsMode::Implicit {
            self.state = State::ImplicitTls;
            self.push(Action::Handshake);
            return;
        }
        let Some(entry) = self.early else {
            self.read(State::Banner);
            return;
        };
        self.early_pipe = true;
        let cached = Caps::from_bits(entry.clear);
        if !(want_tls(self.params.tls) && cached.starttls) {
            // Cleartext: nothing to say before the first transaction, which
            // carries the EHLO.
            self.caps = cached;
            self.owed = Some(Owed {
                banner: true,
                entry,
                tls: false,
            });
            self.ready();
            return;
        }
        // EHLO and STARTTLS before the banner; the handshake needs their
        // replies.
        let helo = self.params.helo.clone();
        self.push(Action::Send(
            format!("EHLO {helo}\r\nSTARTTLS\r\n").into_bytes(),
        ));
        self.read(State::EarlyBanner);
    }

    fn ready(&mut self) {
        self.state = State::Ready;
        self.push(Action::Ready);
    }

    /// Feed what happened.
    pub fn handle(&mut self, input: Input) {
        if matches!(input, Input::WriteFailed(_)) {
            self.out.clear();
        }
        let state = std::mem::replace(&mut self.state, State::Closed);
        match (state, input) {
            (State::Tx(tx), input) => self.tx_input(*tx, input),
            (State::Auth(step), input) => self.auth_input(step, input),
            (State::Banner | State::EarlyBanner, Input::WriteFailed(e)) => {
                self.fail_open(Failure::io(Stage::Greeting, e), Retry::No)
            }
            (State::Ehlo { .. } | State::Helo { .. }, Input::WriteFailed(e)) => {
                self.fail_open(Failure::io(Stage::Ehlo, e), Retry::No)
            }
            (State::StartTls, Input::WriteFailed(e)) => {
                self.fail_open(Failure::io(Stage::StartTls, e), Retry::No)
            }
            (State::ImplicitTls, Input::TlsUp) => {
                self.tls = true;
                self.read(State::Banner);
            }
            (State::ImplicitTls, Input::TlsFailed(e)) => self.fail_open(
                Failure::io(Stage::Connect, format!("TLS handshake failed: {e}")),
                Retry::No,
            ),
            (State::ImplicitTls, Input::IoFailed(e)) => {
                self.fail_open(Failure::io(Stage::Connect, e), Retry::No)
            }
            (State::Banner, Input::Reply(r)) => {
                if r.code != 220 {
                    return self.fail_open(Failure::reply(Stage::Greeting, r), Retry::No);
                }
                self.greeting = r.first_line();
                self.ehlo(false);
            }
            (State::Ehlo { tls }, Input::Reply(r)) => {
                if r.is_ok() {
                    return self.after_ehlo(r, tls);
                }
                if r.code == 421 {
                    return self.fail_open(Failure::reply(Stage::Ehlo, r), Retry::No);
                }
                // RFC 5321 §3.2: fall back to HELO.
                let line = format!("HELO {}", self.params.helo);
                self.send_line(&line);
                self.read(State::Helo { tls });
            }
            (State::Helo { tls }, Input::Reply(r)) => {
                if r.is_ok() {
                    self.after_ehlo(r, tls)
                } else {
                    self.fail_open(Failure::reply(Stage::Ehlo, r), Retry::No)
                }
            }
            (State::StartTls, Input::Reply(r)) => {
                if r.code == 220 {
                    self.state = State::StartTlsHandshake;
                    self.push(Action::Handshake);
                } else {
                    let retry = self.retry_tls_failure();
                    self.fail_open(Failure::reply(Stage::StartTls, r), retry);
                }
            }
            (State::StartTlsHandshake, Input::TlsUp) => self.tls_up(),
            (State::StartTlsHandshake, Input::TlsFailed(e)) => {
                let retry = self.retry_tls_failure();
                self.fail_open(
                    Failure::io(Stage::StartTls, format!("TLS handshake failed: {e}")),
                    retry,
                );
            }
            (State::EarlyBanner, Input::Reply(r)) => {
                if r.code != 220 {
                    return self.early_failed(Failure::reply(Stage::Greeting, r));
                }
                self.greeting = r.first_line();
                self.state = State::EarlyEhlo;
                self.push(Action::Read(Wait::Command));
            }
            (State::EarlyEhlo, Input::Reply(r)) => {
                let Some(entry) = self.early else {
                    unreachable!("early pipelining without a cache entry")
                };
                if !r.is_ok() {
                    return self.early_failed(Failure {
                        permanent: false,
                        ..Failure::reply(Stage::Ehlo, r)
                    });
                }
                self.clear = self.check_owed(
                    &r,
                    Owed {
                        banner: true,
                        entry,
                        tls: false,
                    },
                );
                self.caps = self.clear;
                self.state = State::EarlyStartTls;
                self.push(Action::Read(Wait::Command));
            }
            (State::EarlyStartTls, Input::Reply(r)) => {
                if r.code == 220 {
                    self.state = State::StartTlsHandshake;
                    self.push(Action::Handshake);
                } else {
                    self.early_failed(Failure::reply(Stage::StartTls, r));
                }
            }
            (State::EarlyBanner, Input::IoFailed(e)) => {
                self.early_failed(Failure::io(Stage::Greeting, e))
            }
            (State::EarlyEhlo, Input::IoFailed(e)) => {
                self.early_failed(Failure::io(Stage::Ehlo, e))
            }
            (State::EarlyStartTls, Input::IoFailed(e)) => {
                self.early_failed(Failure::io(Stage::StartTls, e))
            }
            (State::Banner, Input::IoFailed(e)) => {
                self.fail_open(Failure::io(Stage::Greeting, e), Retry::No)
            }
            (State::Ehlo { .. } | State::Helo { .. }, Input::IoFailed(e)) => {
                self.fail_open(Failure::io(Stage::Ehlo, e), Retry::No)
            }
            (State::StartTls, Input::IoFailed(e)) => {
                self.fail_open(Failure::io(Stage::StartTls, e), Retry::No)
            }
            (State::StartTlsHandshake, Input::IoFailed(e)) => {
                let retry = self.retry_tls_failure();
                self.fail_open(Failure::io(Stage::StartTls, e), retry);
            }
            (State::Rset(result), input) => {
                // RSET's answer does not change the message's outcome; a
                // refused or unanswered RSET leaves the connection unusable.
                let ok = matches!(&input, Input::Reply(r) if r.is_ok());
                if !ok {
                    self.broken = true;
                }
                self.finish(result.expect("RSET after a result"));
            }
            (_, _) => {
                // Anything else is a driver bug: the connection is not used
                // again.
                self.broken = true;
                self.state = State::Closed;
                self.push(Action::OpenFailed(
                    Failure::io(Stage::Connect, "conversation out of step"),
                    Retry::No,
                ));
            }
        }
    }

    fn ehlo(&mut self, tls: bool) {
        let line = format!("EHLO {}", self.params.helo);
        self.send_line(&line);
        self.read(State::Ehlo { tls });
    }

    /// A failure on the early-pipelined STARTTLS path: the entry goes, the
    /// next attempt goes without early pipelining.
    fn early_failed(&mut self, f: Failure) {
        self.push(Action::Cache(CacheOp::Remove));
        self.fail_open(f, Retry::WithoutEarlyPipe);
    }

    fn after_ehlo(&mut self, r: ServerReply, after_tls: bool) {
        self.ehlo_response = r.first_line();
        let caps = Caps::parse(&r);
        self.caps = caps;
        if after_tls {
            if self.params.pipe_connect && self.clear.early() {
                let crypted = caps.early().then_some(caps.bits());
                self.push(Action::Cache(CacheOp::Put(Cached {
                    clear: self.clear.bits(),
                    crypted,
                })));
            }
            return self.log_in();
        }
        self.clear = caps;
        let tls_next = !self.tls && want_tls(self.params.tls) && caps.starttls;
        if tls_next {
            self.send_line("STARTTLS");
            return self.read(State::StartTls);
        }
        if self.params.tls == TlsMode::Required && !self.tls {
            return self.fail_open(
                Failure::local(
                    "TLS is required but the server did not offer STARTTLS".into(),
                    false,
                ),
                Retry::No,
            );
        }
        if self.params.pipe_connect && caps.early() && self.params.tls != TlsMode::Implicit {
            self.push(Action::Cache(CacheOp::Put(Cached {
                clear: caps.bits(),
                crypted: None,
            })));
        }
        self.log_in();
    }

    fn tls_up(&mut self) {
        self.tls = true;
        // The EHLO goes with the first transaction when the cache knows
        // what it will say.
        if let Some(entry) = self.early
            && self.params.login.is_none()
            && let Some(cc) = entry.crypted.map(Caps::from_bits).filter(|c| c.early())
            && self.clear.bits() == entry.clear
        {
            self.caps = cc;
            self.owed = Some(Owed {
                banner: false,
                entry,
                tls: true,
            });
            return self.ready();
        }
        self.ehlo(true);
    }

    /// Check the EHLO early pipelining was owed against the cache entry and
    /// ask for the update Exim would make; returns the capabilities now
    /// offered.
    fn check_owed(&mut self, ehlo: &ServerReply, owed: Owed) -> Caps {
        self.ehlo_response = ehlo.first_line();
        let now = Caps::parse(ehlo);
        if now.bits() != owed.cached().bits() {
            let op = if now.early() {
                let (clear, crypted) = if owed.tls {
                    (owed.entry.clear, Some(now.bits()))
                } else {
                    (now.bits(), owed.entry.crypted)
                };
                CacheOp::Put(Cached { clear, crypted })
            } else {
                CacheOp::Remove
            };
            self.push(Action::Cache(op));
        }
        now
    }
}

mod exchange;
mod login;

use exchange::Tx;
#[cfg(test)]
mod tests;
