//! The SMTP stages' side of dispatch: running a stage's hook for a
//! session, turning verdicts into SMTP replies, applying actions to the
//! transaction, and the route hooks over the recipients to be spooled.

use super::{Facts, context, log_failures, log_shadows};
use crate::config::plugin::OnFailure;
use crate::log::{Event, MainLog};
use crate::plugin::bindings::mailgate::plugin::types as wit;
use crate::plugin::{Call, Outcome, SessionPlugins};
use crate::smtp::address::Address;
use crate::smtp::header::remove_header;
use crate::smtp::reply::Reply;
use crate::smtp::server::{Recipient, Transaction};
use crate::spool::{RcptState, RecipientEntry};

fn reply(r: &wit::SmtpReply) -> Reply {
    let enh = r.enhanced.trim();
    let valid = {
        let p: Vec<&str> = enh.split('.').collect();
        p.len() == 3
            && p.iter()
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
    };
    let text = if valid && enh.starts_with(char::from(b'0' + (r.code / 100) as u8)) {
        format!("{enh} {}", r.text)
    } else {
        r.text.clone()
    };
    Reply::new(r.code, "", text)
}

/// The decision of a hook run.
pub enum Decision {
    /// Go on.
    Continue,
    /// Refuse with this reply.
    Refuse(Reply),
    /// Accept and throw away.
    Discard,
    /// Accept into quarantine.
    Quarantine(String),
}

/// Run `call` and log failures. Variables are applied at once; other
/// actions are returned for the data stage.
pub async fn run(
    plugins: &mut SessionPlugins,
    log: &MainLog,
    host: &str,
    k: &Facts<'_>,
    call: Call<'_>,
    vars: &mut Vec<(String, String)>,
    pending: &mut Vec<wit::Action>,
) -> Decision {
    let stage = match &call {
        Call::Connect => "connect",
        Call::Helo => "HELO",
        Call::MailFrom => "MAIL",
        Call::RcptTo(_) => "RCPT",
        Call::Data(_) => "DATA",
        Call::Deliver(..) => "delivery",
    };
    let ctx = context(k);
    let Outcome {
        verdict,
        actions,
        failures,
        shadows,
    } = plugins.run(&ctx, call).await;
    log_failures(log, host, stage, &failures);
    log_shadows(log, host, stage, &shadows);
    for a in actions {
        match a {
            wit::Action::SetVar((k, v)) => {
                vars.retain(|(n, _)| *n != k);
                vars.push((k, v));
            }
            other => pending.push(other),
        }
    }
    match verdict {
        None | Some(wit::Verdict::Continue) | Some(wit::Verdict::Accept) => Decision::Continue,
        Some(wit::Verdict::Reject(r)) | Some(wit::Verdict::Defer(r)) => Decision::Refuse(reply(&r)),
        Some(wit::Verdict::Discard) => Decision::Discard,
        Some(wit::Verdict::Quarantine(why)) => Decision::Quarantine(why),
    }
}

/// Remove the redirect actions a RCPT hook left in `pending`; the last one
/// wins.
pub fn take_redirect(pending: &mut Vec<wit::Action>) -> Option<String> {
    let mut last = None;
    pending.retain(|a| match a {
        wit::Action::Redirect(to) => {
            last = Some(to.clone());
            false
        }
        _ => true,
    });
    last
}

/// Run the route hooks over the recipients of a message about to be
/// spooled (after the host's routing): a plugin may rewrite a recipient
/// (routed again, not shown to route hooks again), give it its own
/// envelope sender, or take it for its transport. `Err` when a plugin
/// with the tempfail policy failed.
pub async fn route(
    plugins: &mut SessionPlugins,
    ctx: &wit::Context,
    router: &crate::routing::Router,
    rcpts: &mut Vec<RecipientEntry>,
    log: &MainLog,
    host: &str,
) -> Result<(), Reply> {
    if !plugins.has_hook(wit::Hook::Route) {
        return Ok(());
    }
    let n = rcpts.len();
    for i in 0..n {
        let remote = match rcpts[i].state {
            RcptState::Queued => true,
            RcptState::Pending if router.route(&rcpts[i].address).is_ok() => false,
            _ => continue,
        };
        let info = wit::RouteInfo {
            recipient: rcpts[i].address.clone(),
            original: rcpts[i]
                .parent
                .map(|_| rcpts[crate::spool::root_of(rcpts, i)].address.clone()),
            remote,
        };
        let d = plugins.route(ctx, &info).await;
        log_failures(
            log,
            host,
            &format!("routing <{}>", info.recipient),
            &d.failures,
        );
        log_shadows(log, host, "routing", &d.shadows);
        if d.failures.iter().any(|f| f.2 == OnFailure::Tempfail) {
            return Err(Reply::new(
                451,
                "4.3.0",
                "Temporary local problem; try again later",
            ));
        }
        // Fields for this recipient's copy; the addresses it becomes
        // inherit them through `parent`.
        rcpts[i].headers.extend(d.headers);
        if let Some(s) = d.sender {
            match s.is_empty() || Address::parse(&s, true).is_ok() {
                true => rcpts[i].sender = Some(s),
                false => log.event(&Event::PluginIgnored {
                    who: host.to_string(),
                    text: format!(
                        "route sender {s:?} for <{}> is not an address; ignored",
                        info.recipient
                    ),
                }),
            }
        }
        let mut target = i;
        if !d.recipient.eq_ignore_ascii_case(&info.recipient) {
            match Address::parse(&d.recipient, true) {
                Ok(a) => {
                    let mut child =
                        RecipientEntry::new(a.to_string(), rcpts[i].notify, rcpts[i].orcpt.clone());
                    child.parent = Some(i);
                    child.sender = rcpts[i].sender.clone();
                    rcpts[i].state = RcptState::Expanded;
                    rcpts[i].detail = Some(format!("redirected by a plugin to {a}"));
                    rcpts.push(child);
                    target = rcpts.len() - 1;
                    crate::routing::preroute_from(router, rcpts, target);
                }
                Err(e) => log.event(&Event::PluginIgnored {
                    who: host.to_string(),
                    text: format!(
                        "route of <{}> to {:?} ignored: {e}",
                        info.recipient, d.recipient
                    ),
                }),
            }
        }
        if let Some(t) = d.transport
            && matches!(rcpts[target].state, RcptState::Pending | RcptState::Queued)
        {
            let r = &mut rcpts[target];
            r.state = RcptState::Queued;
            r.detail = Some(format!("waiting for plugin transport {t}"));
            r.transport = Some(t);
        }
    }
    Ok(())
}

/// Apply data-stage actions to the transaction: headers go on top of the
/// header block, envelope changes to the envelope. The Authentication-
/// Results entries plugins asked for are returned: the session writes
/// them into its one header, after the host's own.
pub fn apply(
    tx: &mut Transaction,
    actions: Vec<wit::Action>,
    log: &MainLog,
    host: &str,
) -> Vec<String> {
    let mut add: Vec<(String, String)> = Vec::new();
    let mut auth: Vec<String> = Vec::new();
    for a in actions {
        match a {
            wit::Action::AddHeader((n, v)) => add.push((n, v)),
            wit::Action::RemoveHeader(n) => remove_header(&mut tx.data, &n),
            wit::Action::SetSender(s) => {
                if s.is_empty() {
                    tx.sender = None;
                } else {
                    match Address::parse(&s, true) {
                        Ok(a) => tx.sender = Some(a),
                        Err(e) => log.event(&Event::PluginIgnored {
                            who: host.to_string(),
                            text: format!("asked for sender {s:?}: {e}; ignored"),
                        }),
                    }
                }
            }
            wit::Action::AddRecipient(r) => match Address::parse(&r, true) {
                Ok(a) => tx.rcpts.push(Recipient {
                    address: a,
                    params: Default::default(),
                }),
                Err(e) => log.event(&Event::PluginIgnored {
                    who: host.to_string(),
                    text: format!("asked to add {r:?}: {e}; ignored"),
                }),
            },
            wit::Action::RemoveRecipient(r) => tx
                .rcpts
                .retain(|x| !x.address.to_string().eq_ignore_ascii_case(&r)),
            wit::Action::AddAuthResult(e) => auth.push(e),
            // Redirects are applied at RCPT (see `take_redirect`).
            wit::Action::SetVar(_) | wit::Action::Redirect(_) => {}
        }
    }
    let mut top = String::new();
    for (n, v) in add {
        top.push_str(&format!("{n}: {v}\r\n"));
    }
    if !top.is_empty() {
        let mut d = top.into_bytes();
        d.extend_from_slice(&tx.data);
        tx.data = d;
    }
    auth
}
