//! The envelope kept with each spooled message.

use crate::smtp::command::{Notify, Ret};
use serde::{Deserialize, Serialize};

/// TLS details of the session a message arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsDetails {
    /// "TLS1.3" or "TLS1.2".
    pub version: String,
    /// IANA cipher suite name, e.g. "TLS_AES_256_GCM_SHA384".
    pub cipher: String,
    /// Key bits of the bulk cipher.
    pub bits: u16,
    /// True when the session was resumed.
    pub resumed: bool,
    /// The server name the client asked for (SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

impl TlsDetails {
    /// Exim's `X=` field: `TLS1.3:TLS_AES_256_GCM_SHA384:256`, with `*`
    /// appended when resumed.
    pub fn log_field(&self) -> String {
        format!(
            "{}:{}:{}{}",
            self.version,
            self.cipher,
            self.bits,
            if self.resumed { "*" } else { "" }
        )
    }
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptState {
    /// Accepted, not routed yet.
    Pending,
    /// Expanded by an alias into the recipients whose `parent` points here.
    Expanded,
    /// Routed to a remote domain, waiting for outbound delivery.
    Queued,
    /// Delivered.
    Delivered,
    /// Failed for good.
    Failed,
}

/// One recipient of a spooled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientEntry {
    /// The address (`local@domain`, local part quoted when needed).
    pub address: String,
    /// DSN NOTIFY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// DSN ORCPT, `type;xtext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// State.
    pub state: RcptState,
    /// Index of the recipient this one was expanded from (aliases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// Where it went or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Unix time of the next attempt, for queued recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<i64>,
    /// A delay warning was sent for this recipient.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    /// The envelope sender for this recipient when a route hook changed it
    /// (e.g. SRS); otherwise the message's sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The plugin that delivers this recipient (its transport hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

impl RecipientEntry {
    /// A fresh pending recipient.
    pub fn new(address: String, notify: Option<Notify>, orcpt: Option<String>) -> Self {
        RecipientEntry {
            address,
            notify,
            orcpt,
            state: RcptState::Pending,
            parent: None,
            detail: None,
            attempts: 0,
            next_attempt: None,
            warned: false,
            sender: None,
            transport: None,
        }
    }
}

/// Everything about a message except its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Message id, `XXXXXX-XXXXXX-XX`.
    pub id: String,
    /// Unix time of acceptance.
    pub received_at: i64,
    /// Envelope sender; empty for the null sender.
    pub sender: String,
    /// HELO/EHLO name.
    pub helo: String,
    /// Client IP address.
    pub client_ip: String,
    /// Client port.
    pub client_port: u16,
    /// Protocol for logs: smtp, esmtp, esmtps.
    pub protocol: String,
    /// TLS details, if encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDetails>,
    /// BODY=8BITMIME was declared.
    #[serde(default)]
    pub body_8bitmime: bool,
    /// SMTPUTF8 was declared.
    #[serde(default)]
    pub smtputf8: bool,
    /// DSN RET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// DSN ENVID (xtext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// Size of the stored content in octets.
    pub size: u64,
    /// Recipients.
    pub recipients: Vec<RecipientEntry>,
    /// Variables set by plugins during the SMTP transaction, for the
    /// delivery hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<(String, String)>,
    /// REQUIRETLS (RFC 8689): deliver only over verified TLS to servers
    /// that offer REQUIRETLS, passing it on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requiretls: bool,
    /// The message says `TLS-Required: No` (RFC 8689 §5): deliver even
    /// where the TLS policy would refuse the server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_optional: bool,
}

impl Envelope {
    /// True when no recipient is waiting for anything.
    pub fn is_complete(&self) -> bool {
        self.recipients.iter().all(|r| {
            matches!(
                r.state,
                RcptState::Delivered | RcptState::Failed | RcptState::Expanded
            )
        })
    }
}
