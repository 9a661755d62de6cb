//! What became of an attempt: where a failure happened, the failure that
//! applies to every recipient, and each recipient's outcome.

use super::reply::ServerReply;
use std::fmt;

/// Where in the conversation something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect or TLS-on-connect handshake.
    Connect,
    /// The banner.
    Greeting,
    /// EHLO/HELO.
    Ehlo,
    /// STARTTLS or its handshake.
    StartTls,
    /// AUTH with this mechanism (the credentials are never part of it).
    Auth(&'static str),
    /// MAIL FROM.
    Mail(String),
    /// RCPT TO.
    Rcpt(String),
    /// DATA.
    Data,
    /// After the content (final dot or last BDAT).
    Content,
    /// Before the transaction: our own policy (size, SMTPUTF8).
    Local,
    /// Before the transaction: the message needs REQUIRETLS and this server
    /// does not offer it (RFC 8689 §4.2: try the next server).
    RequireTls,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Connect => f.write_str("while connecting"),
            Stage::RequireTls => f.write_str("before MAIL"),
            Stage::Greeting => f.write_str("in the greeting"),
            Stage::Ehlo => f.write_str("after EHLO"),
            Stage::StartTls => f.write_str("after STARTTLS"),
            Stage::Auth(m) => write!(f, "after AUTH {m}"),
            Stage::Mail(a) => write!(f, "after MAIL FROM:<{a}>"),
            Stage::Rcpt(a) => write!(f, "after RCPT TO:<{a}>"),
            Stage::Data => f.write_str("after DATA"),
            Stage::Content => f.write_str("after end of data"),
            Stage::Local => f.write_str("before sending"),
        }
    }
}

/// A failure that applies to every recipient of the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where.
    pub stage: Stage,
    /// The server's reply, when there was one.
    pub reply: Option<ServerReply>,
    /// Human text for logs and DSNs.
    pub text: String,
    /// True for a 5xx or a condition that will never change.
    pub permanent: bool,
}

impl Failure {
    /// A failure without a reply (I/O, timeout, a broken conversation).
    pub fn io(stage: Stage, e: impl fmt::Display) -> Failure {
        Failure {
            text: format!("{e} {stage}"),
            stage,
            reply: None,
            permanent: false,
        }
    }

    /// The server refused at `stage` with `r`.
    pub fn reply(stage: Stage, r: ServerReply) -> Failure {
        Failure {
            text: format!(
                "SMTP error from remote mail server {stage}: {}",
                r.one_line()
            ),
            permanent: r.is_permanent(),
            stage,
            reply: Some(r),
        }
    }

    /// A failure decided locally.
    pub fn local(text: String, permanent: bool) -> Failure {
        Failure {
            stage: Stage::Local,
            reply: None,
            text,
            permanent,
        }
    }
}

/// Outcome for one recipient of a transaction that got through MAIL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted: the final reply.
    Delivered(ServerReply),
    /// Refused at RCPT or after the data; with the failure.
    Refused(Failure),
}
