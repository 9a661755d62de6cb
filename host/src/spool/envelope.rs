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
    /// Header fields route hooks added for this recipient's copy
    /// (`routing.add-header`); the recipients expanded or rewritten from
    /// it get them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
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
            headers: Vec::new(),
        }
    }
}

/// The recipient the client gave that `i` was made from (`i` itself when
/// the client gave it).
pub fn root_of(rcpts: &[RecipientEntry], mut i: usize) -> usize {
    // A chain is never longer than the list (the bound guards a corrupt
    // spool record from a loop).
    for _ in 0..rcpts.len() {
        match rcpts[i].parent {
            Some(p) if p < rcpts.len() && p != i => i = p,
            _ => break,
        }
    }
    i
}

/// The header fields recipient `i`'s copy gets, those of the addresses it
/// was made from first, as a block of `Name: value\r\n` lines (empty for
/// none).
pub fn copy_headers(rcpts: &[RecipientEntry], i: usize) -> String {
    let mut chain = vec![i];
    let mut at = i;
    while let Some(p) = rcpts[at].parent {
        if p >= rcpts.len() || chain.contains(&p) {
            break;
        }
        chain.push(p);
        at = p;
    }
    let mut out = String::new();
    for &j in chain.iter().rev() {
        for (n, v) in &rcpts[j].headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    out
}

/// `data` with `headers` (a block from [`copy_headers`]) on top.
pub fn with_headers(headers: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + data.len());
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(data);
    out
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

/// A message from `s@x.test` to `rcpts`, all pending (for tests).
#[cfg(test)]
pub fn test_envelope(id: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        id: id.into(),
        received_at: 1_700_000_000,
        sender: "s@x.test".into(),
        helo: "client".into(),
        client_ip: "127.0.0.1".into(),
        client_port: 1234,
        protocol: "esmtp".into(),
        tls: None,
        body_8bitmime: false,
        smtputf8: false,
        ret: None,
        envid: None,
        size: 0,
        recipients: rcpts
            .iter()
            .map(|r| RecipientEntry::new(r.to_string(), None, None))
            .collect(),
        vars: vec![],
        requiretls: false,
        tls_optional: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_inherit_the_fields_of_the_addresses_they_were_made_from() {
        let mut r: Vec<RecipientEntry> = ["team@l.test", "carol@l.test", "carol+x@l.test"]
            .iter()
            .map(|a| RecipientEntry::new(a.to_string(), None, None))
            .collect();
        r[1].parent = Some(0);
        r[2].parent = Some(1);
        r[0].headers.push(("A".into(), "1".into()));
        r[2].headers.push(("B".into(), "2".into()));
        assert_eq!(root_of(&r, 2), 0);
        assert_eq!(root_of(&r, 0), 0);
        assert_eq!(copy_headers(&r, 2), "A: 1\r\nB: 2\r\n");
        assert_eq!(copy_headers(&r, 1), "A: 1\r\n");
        assert_eq!(
            with_headers("A: 1\r\n", b"S: x\r\n\r\nb"),
            b"A: 1\r\nS: x\r\n\r\nb"
        );
        // A corrupt record with a loop ends.
        r[0].parent = Some(2);
        let _ = root_of(&r, 2);
        let _ = copy_headers(&r, 2);
    }
}
