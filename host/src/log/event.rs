//! The main log's events, one variant per kind of line. They are rendered
//! in one place each to Exim's grammar (`exim.rs`, which eximstats reads)
//! and to JSON lines (`json.rs`) with the same fields.

use serde::Serialize;
use std::net::IpAddr;

/// A host as the log names it: a client by its HELO name (`H=(helo)
/// [ip]:port`), a server by its name (`H=name [ip]:port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The server's name (outbound), if any.
    pub name: Option<String>,
    /// The client's HELO name (inbound), if given.
    pub helo: Option<String>,
    /// Its address.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
}

impl Peer {
    /// A client, with its HELO name once given.
    pub fn client(helo: Option<&str>, ip: IpAddr, port: u16) -> Peer {
        Peer {
            name: None,
            helo: helo.filter(|h| !h.is_empty()).map(str::to_string),
            ip,
            port,
        }
    }

    /// A server, by name.
    pub fn server(name: &str, addr: std::net::SocketAddr) -> Peer {
        Peer {
            name: Some(name.to_string()),
            helo: None,
            ip: addr.ip(),
            port: addr.port(),
        }
    }
}

/// Whether early pipelining (PIPECONNECT) was offered to / used by the
/// client of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Early {
    /// Not offered.
    No,
    /// Offered, not used (`L.`).
    Offered,
    /// Used (`L*`).
    Used,
}

/// Where in an SMTP session something was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectStage {
    /// The connection (a plugin's connect hook).
    Connect,
    /// HELO/EHLO.
    Helo,
    /// MAIL FROM.
    Mail,
    /// RCPT TO, with the recipient.
    Rcpt(String),
    /// After the content.
    Data,
}

/// What happened to a session, other than a message or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionNote {
    /// The connection broke while reading.
    Lost(String),
    /// The connection broke while writing (the client stopped reading).
    LostWhileWriting(String),
    /// The TLS handshake failed (`accept` or `STARTTLS`).
    TlsError {
        /// Implicit TLS at accept, or after STARTTLS.
        phase: &'static str,
        /// Why.
        error: String,
    },
    /// A timeout closed the session (`SMTP command timeout`, ...).
    Timeout(String),
    /// Too many errors, commands or messages.
    Dropped(&'static str),
    /// Input before the banner from a host not allowed to pipeline early.
    SyncError(String),
    /// Plaintext pipelined behind STARTTLS, thrown away.
    DiscardedPlaintext(usize),
    /// The client went away: mid-message (abandoned) or between commands.
    Disconnected {
        /// While reading message data.
        in_content: bool,
        /// The sender of the transaction, if one was open.
        sender: Option<String>,
    },
    /// A connection refused before the session (limits).
    Refused(String),
    /// An SMTP AUTH attempt failed (Exim's `authenticator failed` line).
    AuthFailed {
        /// The mechanism, lower case (`plain`, `login`).
        mechanism: &'static str,
        /// The login the client gave.
        user: String,
        /// The reply sent (`535 5.7.8 ...`).
        reply: String,
        /// Why, for the admin (never shown to the client).
        why: String,
    },
    /// Something else, in words.
    Other(String),
}

/// One line of the main log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A message accepted (`<=`).
    Received {
        /// Queue id.
        id: String,
        /// Envelope sender ("" for <>).
        sender: String,
        /// The client (`None`: made here, e.g. a DSN).
        peer: Option<Peer>,
        /// `P=`: esmtps, smtp, local, ...
        protocol: String,
        /// The message this one answers (a DSN's `R=`).
        origin: Option<String>,
        /// `U=`: the local user that made it.
        user: Option<String>,
        /// Early pipelining.
        early: Early,
        /// `X=`: TLS version, cipher and bits.
        tls: Option<String>,
        /// `K`: CHUNKING was used.
        chunking: bool,
        /// `S=`: size in octets.
        size: u64,
        /// `id=`: the Message-ID header.
        message_id: Option<String>,
        /// REQUIRETLS was asked for (logged as `REQUIRETLS`).
        requiretls: bool,
        /// `A=`: the SMTP AUTH mechanism and login (`plain:alice`).
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<String>,
        /// Not spooled: why (`discarded by plugin`, `quarantined by plugin:
        /// ...`).
        outcome: Option<String>,
    },
    /// A recipient delivered (`=>` for the first of a message's delivery
    /// run, `->` for the others).
    Delivered {
        /// Queue id.
        id: String,
        /// The first delivery of this run.
        first: bool,
        /// The recipient.
        rcpt: String,
        /// The address it was expanded from.
        parent: Option<String>,
        /// How: `R=... T=...` and the host, TLS, confirmation fields.
        via: String,
    },
    /// A delivery deferred (`==`).
    Deferred {
        /// Queue id.
        id: String,
        /// The recipient.
        rcpt: String,
        /// The address it was expanded from.
        parent: Option<String>,
        /// `R=... T=...`.
        route: String,
        /// The host field, if a host was involved.
        host: Option<String>,
        /// Why.
        reason: String,
    },
    /// A recipient failed for good (`**`).
    Failed {
        /// Queue id.
        id: String,
        /// The recipient.
        rcpt: String,
        /// The address it was expanded from.
        parent: Option<String>,
        /// `R=... T=...` (none when it could not be routed).
        route: Option<String>,
        /// The host field, if a host was involved.
        host: Option<String>,
        /// Why.
        reason: String,
    },
    /// A host failed before a transaction (the message stays for the next
    /// host or attempt).
    HostFailed {
        /// Queue id.
        id: String,
        /// The host.
        peer: Peer,
        /// Why.
        reason: String,
    },
    /// A message left the spool.
    Completed {
        /// Queue id.
        id: String,
    },
    /// The gateway refused something in a session.
    Rejected {
        /// The client.
        peer: Peer,
        /// The sender, once given.
        sender: Option<String>,
        /// Where.
        stage: RejectStage,
        /// A plugin refused (rather than the host's own policy).
        by_plugin: bool,
        /// Temporarily (4xx, a local problem).
        temporary: bool,
        /// The reply or reason.
        reason: String,
    },
    /// A session event.
    Session {
        /// The client.
        peer: Peer,
        /// What.
        note: SessionNote,
    },
    /// A plugin failed (its failure policy applies).
    PluginFailed {
        /// The client host field or the queue id.
        who: String,
        /// The plugin.
        plugin: String,
        /// Where.
        stage: String,
        /// Why.
        reason: String,
        /// `continue` or `tempfail`.
        policy: String,
    },
    /// A shadow plugin answered a hook otherwise than its active plugin
    /// (the active answer was followed).
    ShadowDiffered {
        /// The client host field or the queue id.
        who: String,
        /// The shadow.
        shadow: String,
        /// The active plugin.
        active: String,
        /// Where (the stage, and the recipient at RCPT and routing).
        stage: String,
        /// The active plugin's answer.
        theirs: String,
        /// The shadow's answer.
        mine: String,
    },
    /// A plugin's answer the host did not follow.
    PluginIgnored {
        /// The client host field or the queue id.
        who: String,
        /// What and why.
        text: String,
    },
    /// Anything about the daemon or one message that is not one of the
    /// above (start, stop, reloads, administrator actions, local errors).
    Notice {
        /// The message concerned, if any.
        id: Option<String>,
        /// The text.
        text: String,
    },
}

impl Event {
    /// A notice about the daemon.
    pub fn notice(text: impl Into<String>) -> Event {
        Event::Notice {
            id: None,
            text: text.into(),
        }
    }

    /// A notice about one message.
    pub fn message_notice(id: &str, text: impl Into<String>) -> Event {
        Event::Notice {
            id: Some(id.to_string()),
            text: text.into(),
        }
    }
}
