//! Access tables (`[access]`): the client's address and the envelope
//! sender at MAIL, each recipient at RCPT, looked up in lookup tables whose
//! values are Postfix access(5) actions. A table that cannot answer defers
//! (451 4.3.0), and a value that is not an action defers too (451 4.3.5),
//! so a broken table never lets through what it was meant to stop.

use crate::config::Access;
use crate::smtp::reply::Reply;
use crate::table::{TableError, Tables, search};
use std::net::IpAddr;

/// What an access table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No objection (`OK`, `DUNNO`, or no entry).
    Permit,
    /// Refuse the command with this reply (`REJECT`, `DEFER`, `4NN`,
    /// `5NN`, or a failed lookup).
    Refuse(Reply),
    /// Accept the message into the quarantine instead of the queue.
    Hold(String),
    /// Accept the message and drop it (logged).
    Discard(String),
}

/// A reply with the enhanced status `enhanced` unless `text` starts with
/// one of its own (`5.7.1 go away`).
fn reply(code: u16, enhanced: &'static str, text: &str, default: &str) -> Reply {
    let text = if text.is_empty() { default } else { text };
    let own = text
        .split_whitespace()
        .next()
        .filter(|w| {
            let p: Vec<&str> = w.split('.').collect();
            p.len() == 3
                && p.iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                && p[0] == (code / 100).to_string()
        })
        .is_some();
    if own {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.to_string()],
        }
    } else {
        Reply::new(code, enhanced, text)
    }
}

/// The action a table value names; `None` for a value that is not one.
pub fn parse(value: &str) -> Option<Action> {
    let v = value.trim();
    let (word, text) = match v.split_once(char::is_whitespace) {
        Some((w, t)) => (w, t.trim()),
        None => (v, ""),
    };
    let w = word.to_ascii_uppercase();
    Some(match w.as_str() {
        "OK" | "DUNNO" | "PERMIT" => Action::Permit,
        "REJECT" => Action::Refuse(reply(550, "5.7.1", text, "Access denied")),
        "DEFER" => Action::Refuse(reply(450, "4.7.1", text, "Try again later")),
        "HOLD" => Action::Hold(
            if text.is_empty() {
                "held by access table"
            } else {
                text
            }
            .into(),
        ),
        "DISCARD" => Action::Discard(
            if text.is_empty() {
                "discarded by access table"
            } else {
                text
            }
            .into(),
        ),
        _ => {
            let code: u16 = w.parse().ok().filter(|c| (400..600).contains(c))?;
            let enhanced = if code >= 500 { "5.7.1" } else { "4.7.1" };
            Action::Refuse(reply(code, enhanced, text, "Access denied"))
        }
    })
}

/// The reply for a lookup that failed.
pub fn lookup_failed() -> Reply {
    Reply::new(451, "4.3.0", "Temporary lookup failure")
}

/// The action for `found` (a table's value); an unknown action defers and
/// is reported in the error.
fn action_of(table: &str, found: Option<String>) -> Result<Action, String> {
    match found {
        None => Ok(Action::Permit),
        Some(v) => parse(&v).ok_or_else(|| {
            format!("access table {table}: {v:?} is not an action (OK, REJECT, DEFER, 4NN/5NN, HOLD, DISCARD)")
        }),
    }
}

/// The outcome of one check, with the text to log when it failed.
pub type Checked = Result<Action, (Reply, String)>;

fn finish(table: &str, r: Result<Option<String>, TableError>) -> Checked {
    match r {
        Ok(found) => action_of(table, found)
            .map_err(|why| (Reply::new(451, "4.3.5", "Server configuration error"), why)),
        Err(e) => Err((lookup_failed(), e.to_string())),
    }
}

/// The client and sender checks at MAIL: the first that is not `Permit`.
pub fn at_mail(access: &Access, tables: &Tables, client: IpAddr, sender: &str) -> Checked {
    if let Some(t) = &access.client {
        let a = finish(t, tables.ip(t, client))?;
        if a != Action::Permit {
            return Ok(a);
        }
    }
    if let Some(t) = &access.sender {
        let keys = search::address_keys(sender);
        return finish(
            t,
            tables
                .get(t)
                .and_then(|tab| tab.first(&keys))
                .map(|f| f.map(|(_, v)| v)),
        );
    }
    Ok(Action::Permit)
}

/// The recipient check at RCPT.
pub fn at_rcpt(access: &Access, tables: &Tables, rcpt: &str) -> Checked {
    match &access.recipient {
        Some(t) => finish(t, tables.address(t, rcpt)),
        None => Ok(Action::Permit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Action) -> String {
        match a {
            Action::Refuse(r) => String::from_utf8(r.to_bytes()).unwrap(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn actions_as_postfix_writes_them() {
        let p = |v: &str| text(&parse(v).unwrap());
        assert_eq!(p("ok"), "Permit");
        assert_eq!(p("DUNNO"), "Permit");
        assert_eq!(p("REJECT"), "550 5.7.1 Access denied\r\n");
        assert_eq!(p("REJECT no spam here"), "550 5.7.1 no spam here\r\n");
        assert_eq!(p("DEFER"), "450 4.7.1 Try again later\r\n");
        assert_eq!(
            p("554 5.7.2 bad neighbourhood"),
            "554 5.7.2 bad neighbourhood\r\n"
        );
        assert_eq!(p("421 closing"), "421 4.7.1 closing\r\n");
        assert_eq!(p("HOLD"), "Hold(\"held by access table\")");
        assert_eq!(p("discard quietly"), "Discard(\"quietly\")");
        assert_eq!(parse("FILTER smtp:x"), None);
        assert_eq!(parse("200 fine"), None);
    }

    #[test]
    fn lookups_in_order_and_failures_defer() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::new(dir.path());
        let access = Access {
            client: Some("clients".into()),
            sender: Some("senders".into()),
            recipient: Some("rcpts".into()),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // No tables yet: everything is deferred, nothing let through.
        let (r, why) = at_mail(&access, &t, ip("192.0.2.1"), "a@b.test").unwrap_err();
        assert_eq!(r.code, 451);
        assert!(why.contains("clients"), "{why}");
        t.build(
            "clients",
            crate::table::Kind::Cidr,
            b"192.0.2.0/24 REJECT bad net\n10.0.0.0/8 OK\n",
            "s",
        )
        .unwrap();
        t.build(
            "senders",
            crate::table::Kind::Keys,
            b"@spam.test REJECT\n.bulk.test HOLD\nodd@x.test FROB\n",
            "s",
        )
        .unwrap();
        t.build(
            "rcpts",
            crate::table::Kind::Keys,
            b"trap@local.test DISCARD\n",
            "s",
        )
        .unwrap();
        assert_eq!(
            text(&at_mail(&access, &t, ip("192.0.2.1"), "a@b.test").unwrap()),
            "550 5.7.1 bad net\r\n"
        );
        assert_eq!(
            at_mail(&access, &t, ip("10.0.0.1"), "x@spam.test").unwrap(),
            parse("REJECT").unwrap()
        );
        assert_eq!(
            at_mail(&access, &t, ip("10.0.0.1"), "x@a.bulk.test").unwrap(),
            Action::Hold("held by access table".into())
        );
        assert_eq!(
            at_mail(&access, &t, ip("10.0.0.1"), "ok@fine.test").unwrap(),
            Action::Permit
        );
        let (r, why) = at_mail(&access, &t, ip("10.0.0.1"), "odd@x.test").unwrap_err();
        assert_eq!(r.code, 451);
        assert!(why.contains("FROB"), "{why}");
        assert_eq!(
            at_rcpt(&access, &t, "Trap@Local.Test").unwrap(),
            Action::Discard("discarded by access table".into())
        );
    }
}
