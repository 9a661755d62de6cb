//! The verdict on AUTH: the credentials checked by the configured
//! verifier, failures delayed, counted per client IP and logged as Exim
//! does; and the sender a login may use at MAIL.

use super::*;
use crate::inbound::sasl::Outcome;
use crate::smtp::server::{Credentials, Mechanism};

fn mechanism_name(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Plain => "plain",
        Mechanism::Login => "login",
    }
}

fn too_many(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{hostname} Too many failed authentication attempts, closing connection"),
    )
}

/// Verify `c`: 235 and an authenticated session, 535 for wrong
/// credentials (421 and the connection closed once the client IP has used
/// up `max_failures`), 454 when the check cannot be made.
pub(super) async fn auth(conn: &mut Conn, c: &Credentials) -> Verdict {
    let shared = Arc::clone(&conn.shared);
    let cfg = &shared.cfg;
    let mechanism = mechanism_name(c.mechanism);
    let failed = |conn: &Conn, reply: &Reply, why: String| {
        conn.note(SessionNote::AuthFailed {
            mechanism,
            user: c.user.clone(),
            reply: reply.first_line(),
            why,
        });
    };
    let unavailable = Reply::new(454, "4.7.0", "Temporary authentication failure");
    let Some(v) = shared.sasl.clone() else {
        failed(conn, &unavailable, "no verifier configured".into());
        return Verdict::Reject(unavailable);
    };
    if v.locked_out(conn.ip) {
        let r = too_many(&cfg.server.hostname);
        failed(
            conn,
            &r,
            "too many failed attempts from this address".into(),
        );
        return Verdict::Reject(r);
    }
    match v.verify(c, conn.ip, conn.local, conn.tls.is_some()).await {
        Outcome::Success(user) => {
            conn.auth = Some((mechanism, user));
            Verdict::Accept
        }
        Outcome::Failed(why) => {
            let last = v.record_failure(conn.ip);
            // A guesser waits for every answer; a typo costs a second.
            tokio::time::sleep(cfg.smtp_auth.failure_delay.duration()).await;
            let r = if last {
                too_many(&cfg.server.hostname)
            } else {
                Reply::new(535, "5.7.8", "Authentication credentials invalid")
            };
            failed(conn, &r, why);
            Verdict::Reject(r)
        }
        Outcome::Unavailable(why) => {
            failed(conn, &unavailable, why);
            Verdict::Reject(unavailable)
        }
    }
}

/// With `smtp_auth.sender_logins`, the refusal of a sender the login may
/// not use (the null sender is always allowed: bounces of our users'
/// mail carry it).
pub(super) fn sender_refused(conn: &Conn, sender: &str) -> Option<Reply> {
    let shared = &conn.shared;
    let table = shared.cfg.smtp_auth.sender_logins.as_deref()?;
    let (_, user) = conn.auth.as_ref()?;
    if sender.is_empty() {
        return None;
    }
    match shared.router.tables().address(table, sender) {
        Ok(Some(v)) => {
            let allowed = v
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|s| !s.is_empty())
                .any(|l| l.eq_ignore_ascii_case(user));
            (!allowed).then(|| not_owned(sender, user))
        }
        Ok(None) => Some(not_owned(sender, user)),
        Err(e) => {
            conn.note(SessionNote::Other(e.to_string()));
            Some(access::lookup_failed())
        }
    }
}

fn not_owned(sender: &str, user: &str) -> Reply {
    Reply::new(
        553,
        "5.7.1",
        format!(
            "<{}>: Sender address not owned by user {}",
            printable(sender),
            printable(user)
        ),
    )
}
