//! The verdicts on HELO, MAIL and RCPT: relay policy and recipient
//! verification, SPF actions, access tables, then the plugins' hooks.

use super::*;
use crate::config::ratelimit::Counted;
use crate::inbound::ratelimit::{Limited, Subject};

/// An access table's answer as the command's verdict: HOLD and DISCARD
/// accept and are kept for the end of data (the first one stays).
fn access_verdict(conn: &mut Conn, checked: access::Checked) -> Verdict {
    match checked {
        Ok(access::Action::Permit) => Verdict::Accept,
        Ok(access::Action::Refuse(r)) => Verdict::Reject(r),
        Ok(a) => {
            conn.access.get_or_insert(a);
            Verdict::Accept
        }
        Err((r, why)) => {
            conn.note(SessionNote::Other(why));
            Verdict::Reject(r)
        }
    }
}

/// A command the host's checks accepted, counted against the rate limits:
/// over one, 451 4.7.1 (and nothing counted); shared counters that cannot
/// be read under `on_outage = "defer"`, 451 4.3.0.
async fn rate_limited(conn: &mut Conn, what: Counted, v: Verdict) -> Verdict {
    if v != Verdict::Accept {
        return v;
    }
    let s = Subject {
        ip: conn.ip,
        auth_user: conn.auth.as_ref().map(|(_, u)| u.as_str()),
        sender: conn.sender.as_deref(),
    };
    let shared = Arc::clone(&conn.shared);
    match shared
        .rate_limits
        .take(what, &s, shared.router.tables())
        .await
    {
        Ok(()) => v,
        // Logged as a temporary rejection of the command, with the reply.
        Err(e @ Limited::Exceeded(_)) => Verdict::Reject(e.reply()),
        Err(e) => {
            conn.note(SessionNote::Other(e.log_text()));
            Verdict::Reject(e.reply())
        }
    }
}

pub(super) async fn decide(conn: &mut Conn, check: &Check) -> Verdict {
    let shared = Arc::clone(&conn.shared);
    if let Check::Auth(c) = check {
        return super::sasl::auth(conn, c).await;
    }
    // An unknown user at a local domain may still be claimed by a plugin
    // that redirects it (an SRS address, say); relay denials are final.
    let mut unknown_local = false;
    let (v, what) = match check {
        Check::Helo { name, .. } => {
            conn.helo = Some(name.clone());
            (Verdict::Accept, None)
        }
        Check::Mail { sender, .. } => {
            conn.sender = Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default());
            conn.rcpts.clear();
            conn.pending.clear();
            conn.redirects.clear();
            conn.access = None;
            if let Some(p) = conn.plugins.as_mut() {
                p.begin_transaction();
            }
            // Our own users: relay clients and authenticated ones.
            let relay_client = shared
                .router
                .tables()
                .in_hosts(&shared.cfg.server.relay_networks, conn.ip)
                .map(|r| r || conn.auth.is_some());
            let owner = conn
                .sender
                .as_deref()
                .and_then(|s| super::sasl::sender_refused(conn, s));
            let v = match shared.auth.clone() {
                Some(a) => {
                    let helo = conn.helo.clone().unwrap_or_default();
                    let sender = conn.sender.clone().unwrap_or_default();
                    let v = conn
                        .checks
                        .at_mail(&a, &shared.cfg.auth, conn.ip, &helo, &sender)
                        .await;
                    // Relay clients (our own users) are checked and the
                    // results recorded, but SPF actions do not refuse them.
                    if *relay_client.as_ref().unwrap_or(&false) {
                        Verdict::Accept
                    } else {
                        v
                    }
                }
                None => Verdict::Accept,
            };
            let v = match owner {
                Some(r) => Verdict::Reject(r),
                None => v,
            };
            let v = match (v, relay_client) {
                (_, Err(e)) => {
                    conn.note(SessionNote::Other(e.to_string()));
                    Verdict::Reject(access::lookup_failed())
                }
                (Verdict::Accept, Ok(_)) => {
                    let sender = conn.sender.clone().unwrap_or_default();
                    let checked = access::at_mail(
                        &shared.cfg.access,
                        shared.router.tables(),
                        conn.ip,
                        &sender,
                    );
                    access_verdict(conn, checked)
                }
                (v, Ok(_)) => v,
            };
            (rate_limited(conn, Counted::Messages, v).await, None)
        }
        Check::Rcpt { rcpt, .. } => {
            // Host relay control comes first; plugins cannot open a relay.
            let refusal = policy::check_rcpt(
                &shared.cfg,
                &shared.router,
                conn.ip,
                conn.auth.is_some(),
                rcpt,
            )
            .err();
            unknown_local = refusal == Some(policy::RcptRefusal::UnknownUser);
            if let Some(policy::RcptRefusal::Lookup(e)) = &refusal {
                conn.note(SessionNote::Other(e.to_string()));
            }
            let v = match refusal {
                Some(r) => Verdict::Reject(r.reply()),
                None => {
                    let checked = access::at_rcpt(
                        &shared.cfg.access,
                        shared.router.tables(),
                        &rcpt.to_string(),
                    );
                    access_verdict(conn, checked)
                }
            };
            (
                rate_limited(conn, Counted::Recipients, v).await,
                Some(rcpt.to_string()),
            )
        }
        Check::Auth(_) => unreachable!("answered above"),
    };
    let v = if (v == Verdict::Accept || unknown_local) && conn.plugins.is_some() {
        let d = match check {
            Check::Helo { .. } => conn_hook(conn, crate::plugin::Call::Helo).await,
            Check::Mail { .. } => conn_hook(conn, crate::plugin::Call::MailFrom).await,
            Check::Rcpt { rcpt, .. } => {
                let r = rcpt.to_string();
                conn_hook(conn, crate::plugin::Call::RcptTo(&r)).await
            }
            Check::Auth(_) => hooks::Decision::Continue,
        };
        let redirect = hooks::take_redirect(&mut conn.pending);
        match (d, check, redirect) {
            (hooks::Decision::Refuse(r), ..) => Verdict::Reject(r),
            (_, Check::Rcpt { rcpt, .. }, Some(to)) => {
                match crate::smtp::address::Address::parse(&to, true) {
                    Ok(a) => {
                        conn.redirects.push((rcpt.to_string(), a.to_string()));
                        Verdict::Accept
                    }
                    Err(e) => {
                        shared.log.event(&Event::PluginIgnored {
                            who: conn.host(),
                            text: format!(
                                "redirect of <{}> to {:?} ignored: {e}",
                                printable(&rcpt.to_string()),
                                printable(&to)
                            ),
                        });
                        if unknown_local { v } else { Verdict::Accept }
                    }
                }
            }
            _ if unknown_local => v,
            _ => Verdict::Accept,
        }
    } else {
        v
    };
    match (&v, check) {
        (Verdict::Reject(r), Check::Rcpt { rcpt, sender, .. }) => {
            shared.log.event(&Event::Rejected {
                peer: conn.peer(),
                sender: Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default()),
                stage: RejectStage::Rcpt(rcpt.to_string()),
                by_plugin: false,
                temporary: r.is_transient(),
                reason: r.lines[0].clone(),
            });
        }
        (Verdict::Reject(r), Check::Mail { sender, .. }) => {
            shared.log.event(&Event::Rejected {
                peer: conn.peer(),
                sender: Some(sender.as_ref().map(|a| a.to_string()).unwrap_or_default()),
                stage: RejectStage::Mail,
                by_plugin: false,
                temporary: r.is_transient(),
                reason: r.lines[0].clone(),
            });
        }
        (Verdict::Reject(r), Check::Helo { .. }) => {
            conn.rejected(RejectStage::Helo, false, r.lines[0].clone());
        }
        _ => {}
    }
    if v == Verdict::Accept
        && let Some(r) = what
    {
        conn.rcpts.push(r);
    }
    v
}
