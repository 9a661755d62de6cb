//! Accepting a message: the Received: header, the envelope, the durable
//! spool write, the `<=` log line and the hand-over to the queue.

use super::session::{ConnView, Shared};
use crate::log::exim::host_field;
use crate::log::{Early, Event, Peer, RejectStage};
use crate::smtp::command::Body;
use crate::smtp::reply::Reply;
use crate::smtp::server::Transaction;
use crate::spool::{Envelope, RcptState, RecipientEntry};

/// Protocol names: `(log P=, Received with)`, RFC 3848's: `s` for TLS,
/// `a` for SMTP AUTH (`esmtpsa`, `ESMTPSA`).
pub fn protocol(esmtp: bool, tls: bool, utf8: bool, auth: bool) -> (String, String) {
    let base = if esmtp || auth { "esmtp" } else { "smtp" };
    let s = match (tls, auth) {
        (true, true) => "sa",
        (true, false) => "s",
        (false, true) => "a",
        (false, false) => "",
    };
    let u = if utf8 { "utf8" } else { "" };
    let log = format!("{u}{base}{s}");
    let with = match (utf8, esmtp || auth) {
        (true, _) => format!("UTF8SMTP{}", s.to_uppercase()),
        (false, true) => format!("ESMTP{}", s.to_uppercase()),
        (false, false) => format!("SMTP{}", s.to_uppercase()),
    };
    (log, with)
}

/// Build the Received: header (RFC 5321 §4.4), folded, CRLF-terminated.
pub fn received_header(
    hostname: &str,
    view: &ConnView,
    tx: &Transaction,
    id: &str,
    with: &str,
    now: chrono::DateTime<chrono::Local>,
) -> String {
    let mut h = format!("Received: from {} ([{}])\r\n", sanitize(&tx.helo), view.ip);
    h.push_str(&format!("\tby {hostname} (mailgate) with {with}"));
    if let Some(t) = &view.tls {
        h.push_str(&format!(" ({}:{}:{})", t.version, t.cipher, t.bits));
    }
    if let Some((_, user)) = &view.auth {
        // As Postfix's smtpd_sasl_authenticated_header.
        h.push_str(&format!("\r\n\t(Authenticated sender: {})", sanitize(user)));
    }
    h.push_str(&format!("\r\n\tid {id}"));
    let sender = tx
        .sender
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    h.push_str(&format!("\r\n\t(envelope-from <{}>)", sanitize(&sender)));
    if tx.rcpts.len() == 1 {
        h.push_str(&format!(
            "\r\n\tfor <{}>",
            sanitize(&tx.rcpts[0].address.to_string())
        ));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", now.to_rfc2822()));
    h
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The Message-ID of the header, for the log's `id=`.
pub fn message_id_header(data: &[u8]) -> Option<String> {
    let v = crate::smtp::header::header_value(data, "message-id")?;
    let v = v.trim_start_matches('<').trim_end_matches('>').to_string();
    (!v.is_empty()).then_some(v)
}

/// Spool the message; `Ok(id)` once it is on disk.
/// With `route`, the route hooks of the session's plugins run over the
/// routed recipients before the message is spooled.
pub async fn accept(
    view: ConnView,
    shared: &Shared,
    tx: Transaction,
    route: Option<(
        &mut crate::plugin::SessionPlugins,
        crate::plugin::bindings::mailgate::plugin::types::Context,
    )>,
) -> Result<String, Reply> {
    let cfg = &shared.cfg;
    let id = super::session::next_id();
    let utf8 = tx.params.smtputf8;
    let (proto, with) = protocol(tx.esmtp, view.tls.is_some(), utf8, view.auth.is_some());
    let now = chrono::Local::now();
    let received = received_header(&cfg.server.hostname, &view, &tx, &id, &with, now);
    let mut data = Vec::with_capacity(received.len() + tx.data.len());
    data.extend_from_slice(received.as_bytes());
    data.extend_from_slice(&tx.data);
    let sender = tx
        .sender
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut recipients: Vec<RecipientEntry> = tx
        .rcpts
        .iter()
        .map(|r| {
            RecipientEntry::new(
                r.address.to_string(),
                r.params.notify,
                r.params.orcpt.clone(),
            )
        })
        .collect();
    let mut local_work = crate::routing::preroute(&shared.router, &mut recipients);
    let mut vars = Vec::new();
    if let Some((plugins, ctx)) = route {
        let host = host_field(&Peer::client(Some(&tx.helo), view.ip, view.port));
        crate::plugin::dispatch::session::route(
            plugins,
            &ctx,
            &shared.router,
            &mut recipients,
            &shared.log,
            &host,
        )
        .await?;
        local_work = recipients
            .iter()
            .any(|r| matches!(r.state, RcptState::Pending | RcptState::Queued));
        vars = ctx.vars;
    }
    let env = Envelope {
        id: id.clone(),
        received_at: now.timestamp(),
        sender: sender.clone(),
        helo: tx.helo.clone(),
        client_ip: view.ip.to_string(),
        client_port: view.port,
        protocol: proto.clone(),
        tls: view.tls.clone(),
        body_8bitmime: tx.params.body == Some(Body::EightBitMime),
        smtputf8: utf8,
        ret: tx.params.ret,
        envid: tx.params.envid.clone(),
        size: data.len() as u64,
        recipients,
        vars,
        requiretls: tx.params.requiretls,
        // RFC 8689 §5: ignored when REQUIRETLS was asked for.
        tls_optional: !tx.params.requiretls
            && crate::smtp::header::header_value(&tx.data, "tls-required")
                .is_some_and(|v| v.eq_ignore_ascii_case("no")),
    };
    let size = data.len();
    if let Err(e) = shared.spool.commit_message(env, &data).await {
        shared.log.event(&Event::Rejected {
            peer: Peer::client(Some(&tx.helo), view.ip, view.port),
            sender: Some(sender.clone()),
            stage: RejectStage::Data,
            by_plugin: false,
            temporary: true,
            reason: format!("spool write failed: {e}"),
        });
        return Err(Reply::new(
            451,
            "4.3.0",
            "Local error in processing; try again later",
        ));
    }
    shared.log.event(&Event::Received {
        id: id.clone(),
        sender,
        peer: Some(Peer::client(Some(&tx.helo), view.ip, view.port)),
        protocol: proto,
        origin: None,
        user: None,
        early: if view.early_used {
            Early::Used
        } else if view.early_offered {
            Early::Offered
        } else {
            Early::No
        },
        tls: view.tls.as_ref().map(|t| t.log_field()),
        chunking: tx.chunking,
        size: size as u64,
        message_id: message_id_header(&tx.data),
        requiretls: tx.params.requiretls,
        auth: view.auth.as_ref().map(|(m, u)| format!("{m}:{u}")),
        outcome: None,
    });
    if local_work {
        shared.queue.submit(id.clone());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(
            protocol(true, true, false, false),
            ("esmtps".into(), "ESMTPS".into())
        );
        assert_eq!(
            protocol(false, false, false, false),
            ("smtp".into(), "SMTP".into())
        );
        assert_eq!(
            protocol(true, true, true, false),
            ("utf8esmtps".into(), "UTF8SMTPS".into())
        );
        assert_eq!(
            protocol(true, true, false, true),
            ("esmtpsa".into(), "ESMTPSA".into())
        );
        assert_eq!(
            protocol(true, false, false, true),
            ("esmtpa".into(), "ESMTPA".into())
        );
    }

    #[test]
    fn message_id() {
        assert_eq!(
            message_id_header(b"Subject: x\r\nMessage-ID:\r\n <abc@d>\r\n\r\nMessage-ID: <no>\r\n"),
            Some("abc@d".into())
        );
        assert_eq!(message_id_header(b"Subject: x\r\n\r\n"), None);
    }
}
