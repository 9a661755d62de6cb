//! Bounces and delay warnings: the DSN (RFC 3464) report entries for
//! recipients and the DSN message itself, spooled from the null sender.

use crate::config::Config;
use crate::outbound::deliver::Report;
use crate::outbound::dsn::{self, RcptReport};
use crate::spool::{Envelope, RecipientEntry};

/// Build the DSN report entry for a recipient.
pub fn rcpt_report(r: &RecipientEntry, action: &'static str, rep: &Report) -> RcptReport {
    RcptReport {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        action,
        status: rep.status.clone(),
        remote_host: rep.remote.as_ref().map(|x| x.0.clone()),
        remote_addr: rep.remote.as_ref().map(|x| x.1.clone()),
        greeting: rep.remote.as_ref().map(|x| x.2.clone()),
        helo_response: rep.remote.as_ref().map(|x| x.3.clone()),
        diagnostic_code: rep.reply.clone(),
        diagnostic: rep.text.clone(),
    }
}

/// Build a DSN message for `env`; `None` for the null sender.
pub fn dsn_message(
    cfg: &Config,
    env: &Envelope,
    content: &[u8],
    reports: &[RcptReport],
) -> Option<(Envelope, Vec<u8>)> {
    if env.sender.is_empty() || reports.is_empty() {
        return None;
    }
    let id = crate::spool::new_message_id();
    let now = chrono::Local::now();
    let body = dsn::build(&cfg.server.hostname, env, content, reports, &id, now);
    let mut env2 = local_envelope(
        &cfg.server.hostname,
        String::new(),
        vec![RecipientEntry::new(env.sender.clone(), None, None)],
        body.len(),
    );
    env2.id = id;
    env2.received_at = now.timestamp();
    env2.smtputf8 = env.smtputf8;
    // RFC 8689 §4.3: the report on a REQUIRETLS message travels under
    // REQUIRETLS too (and carries only the headers, see dsn::build).
    env2.requiretls = env.requiretls;
    Some((env2, body))
}

/// The envelope of a message the gateway writes itself, from `sender` to
/// `recipients`, `size` octets of 8-bit content.
pub fn local_envelope(
    hostname: &str,
    sender: String,
    recipients: Vec<RecipientEntry>,
    size: usize,
) -> Envelope {
    Envelope {
        id: crate::spool::new_message_id(),
        received_at: chrono::Utc::now().timestamp(),
        sender,
        helo: hostname.to_string(),
        client_ip: "127.0.0.1".into(),
        client_port: 0,
        protocol: "local".into(),
        tls: None,
        body_8bitmime: true,
        smtputf8: false,
        ret: None,
        envid: None,
        size: size as u64,
        recipients,
        vars: vec![],
        requiretls: false,
        tls_optional: false,
    }
}
