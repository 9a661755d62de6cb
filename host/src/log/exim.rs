//! Events in Exim's main-log grammar, unchanged from what eximstats and
//! Exim-minded admins read: `<id> <= sender H=(helo) [ip]:port P=... S=...`,
//! `=>`, `->`, `==`, `**`, `Completed`, and Exim's wording for refusals and
//! session events.

use super::event::{Early, Event, Peer, RejectStage, SessionNote};
use super::printable;
use std::fmt::Write;

/// Exim's host field: `H=(helo) [ip]:port` for a client, `H=name
/// [ip]:port` for a server, `H=[ip]:port` without either.
pub fn host_field(p: &Peer) -> String {
    match (&p.name, &p.helo) {
        (Some(n), _) => format!("H={n} [{}]:{}", p.ip, p.port),
        (None, Some(h)) => format!("H=({}) [{}]:{}", printable(h), p.ip, p.port),
        (None, None) => format!("H=[{}]:{}", p.ip, p.port),
    }
}

fn sender(s: &str) -> String {
    if s.is_empty() {
        "<>".into()
    } else {
        printable(s)
    }
}

fn parent(p: &Option<String>) -> String {
    p.as_ref().map(|p| format!(" <{p}>")).unwrap_or_default()
}

/// The line for `e` (without the timestamp).
pub fn render(e: &Event) -> String {
    let mut s = String::new();
    match e {
        Event::Received {
            id,
            sender: from,
            peer,
            protocol,
            origin,
            user,
            early,
            tls,
            chunking,
            size,
            message_id,
            requiretls,
            auth,
            outcome,
        } => {
            let _ = write!(s, "{id} <= {}", sender(from));
            if let Some(p) = peer {
                let _ = write!(s, " {}", host_field(p));
            }
            if let Some(o) = outcome {
                let _ = write!(s, " {o}");
                return s;
            }
            if let Some(o) = origin {
                let _ = write!(s, " R={o}");
            }
            if let Some(u) = user {
                let _ = write!(s, " U={u}");
            }
            let _ = write!(s, " P={protocol}");
            match early {
                Early::Used => s.push_str(" L*"),
                Early::Offered => s.push_str(" L."),
                Early::No => {}
            }
            if let Some(t) = tls {
                let _ = write!(s, " X={t} CV=no");
            }
            if let Some(a) = auth {
                let _ = write!(s, " A={}", printable(a));
            }
            if *requiretls {
                s.push_str(" REQUIRETLS");
            }
            if *chunking {
                s.push_str(" K");
            }
            let _ = write!(s, " S={size}");
            if let Some(m) = message_id {
                let _ = write!(s, " id={}", printable(m));
            }
        }
        Event::Delivered {
            id,
            first,
            rcpt,
            parent: p,
            via,
        } => {
            let arrow = if *first { "=>" } else { "->" };
            let _ = write!(s, "{id} {arrow} {rcpt}{} {via}", parent(p));
        }
        Event::Deferred {
            id,
            rcpt,
            parent: p,
            route,
            host,
            reason,
        } => {
            let _ = write!(s, "{id} == {rcpt}{} {route} defer", parent(p));
            if let Some(h) = host {
                let _ = write!(s, " {h}");
            }
            let _ = write!(s, ": {reason}");
        }
        Event::Failed {
            id,
            rcpt,
            parent: p,
            route,
            host,
            reason,
        } => {
            let _ = write!(s, "{id} ** {rcpt}{}", parent(p));
            if let Some(r) = route {
                let _ = write!(s, " {r}");
            }
            if let Some(h) = host {
                let _ = write!(s, " {h}");
            }
            let _ = write!(s, ": {reason}");
        }
        Event::HostFailed { id, peer, reason } => {
            let _ = write!(s, "{id} {}: {reason}", host_field(peer));
        }
        Event::Completed { id } => {
            let _ = write!(s, "{id} Completed");
        }
        Event::Rejected {
            peer,
            sender: from,
            stage,
            by_plugin,
            temporary,
            reason,
        } => {
            let host = host_field(peer);
            let from = from.as_deref().map(printable).unwrap_or_default();
            let by = if *by_plugin { " by plugin" } else { "" };
            let temp = if *temporary { "temporarily " } else { "" };
            let _ = match stage {
                RejectStage::Connect => write!(s, "{host} {temp}rejected connection{by}: {reason}"),
                RejectStage::Helo => write!(s, "{host} {temp}rejected HELO{by}: {reason}"),
                RejectStage::Mail => {
                    write!(s, "{host} {temp}rejected MAIL <{from}>{by}: {reason}")
                }
                RejectStage::Rcpt(r) => write!(
                    s,
                    "{host} F=<{from}> {temp}rejected RCPT <{}>{by}: {reason}",
                    printable(r)
                ),
                RejectStage::Data => {
                    write!(
                        s,
                        "{host} F=<{from}> {temp}rejected after DATA{by}: {reason}"
                    )
                }
            };
        }
        Event::Session { peer, note } => {
            let host = host_field(peer);
            let _ = match note {
                SessionNote::Lost(e) => write!(s, "SMTP connection from {host} lost: {e}"),
                SessionNote::LostWhileWriting(e) => {
                    write!(s, "SMTP connection from {host} lost while writing: {e}")
                }
                SessionNote::TlsError { phase, error } => {
                    write!(s, "TLS error on connection from {host} ({phase}): {error}")
                }
                SessionNote::Timeout(what) => write!(s, "{what} on connection from {host}"),
                SessionNote::Dropped(why) => write!(s, "SMTP call from {host} dropped: {why}"),
                SessionNote::SyncError(input) => write!(
                    s,
                    "SMTP protocol synchronization error (input sent without waiting for greeting): rejected connection from {host} input=\"{}\"",
                    printable(input)
                ),
                SessionNote::DiscardedPlaintext(n) => write!(
                    s,
                    "{host} discarded {n} octets of plaintext pipelined after STARTTLS"
                ),
                SessionNote::Disconnected {
                    in_content: true,
                    sender: from,
                } => write!(
                    s,
                    "SMTP connection lost while reading message data (message abandoned) from {host} F=<{}>",
                    from.as_deref().map(printable).unwrap_or_default()
                ),
                SessionNote::Disconnected { .. } => write!(
                    s,
                    "unexpected disconnection while reading SMTP command from {host}"
                ),
                SessionNote::Refused(why) => write!(
                    s,
                    "Connection from [{}]:{} refused: {why}",
                    peer.ip, peer.port
                ),
                SessionNote::AuthFailed {
                    mechanism,
                    user,
                    reply,
                    why,
                } => write!(
                    s,
                    "{mechanism} authenticator failed for {host}: {reply} (set_id={}): {why}",
                    printable(user)
                ),
                SessionNote::Other(text) => write!(s, "{host} {text}"),
            };
        }
        Event::PluginFailed {
            who,
            plugin,
            stage,
            reason,
            policy,
        } => {
            let _ = write!(
                s,
                "{who} plugin {plugin} failed at {stage}: {reason}; policy {policy}"
            );
        }
        Event::ShadowDiffered {
            who,
            shadow,
            active,
            stage,
            theirs,
            mine,
        } => {
            let _ = write!(
                s,
                "{who} shadow {shadow} of {active} differs at {stage}: {active} {theirs}; {shadow} {mine}"
            );
        }
        Event::PluginIgnored { who, text } => {
            let _ = write!(s, "{who} plugin {text}");
        }
        Event::Notice { id: Some(id), text } => {
            let _ = write!(s, "{id} {text}");
        }
        Event::Notice { id: None, text } => s.push_str(text),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Peer {
        Peer::client(Some("c.test"), "127.0.0.1".parse().unwrap(), 4000)
    }

    #[test]
    fn received_as_exim_writes_it() {
        let e = Event::Received {
            id: "ID1".into(),
            sender: "a@b.test".into(),
            peer: Some(client()),
            protocol: "esmtps".into(),
            origin: None,
            user: None,
            early: Early::Used,
            tls: Some("TLS1.3:TLS_AES_256_GCM_SHA384:256".into()),
            chunking: true,
            size: 42,
            message_id: Some("<m@b>".into()),
            requiretls: false,
            auth: Some("plain:alice".into()),
            outcome: None,
        };
        assert_eq!(
            render(&e),
            "ID1 <= a@b.test H=(c.test) [127.0.0.1]:4000 P=esmtps L* X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=plain:alice K S=42 id=<m@b>"
        );
        let dsn = Event::Received {
            id: "ID2".into(),
            sender: String::new(),
            peer: None,
            protocol: "local".into(),
            origin: Some("ID1".into()),
            user: Some("mailgate".into()),
            early: Early::No,
            tls: None,
            chunking: false,
            size: 9,
            message_id: None,
            requiretls: false,
            auth: None,
            outcome: None,
        };
        assert_eq!(render(&dsn), "ID2 <= <> R=ID1 U=mailgate P=local S=9");
    }

    #[test]
    fn deliveries_and_failures() {
        let d = Event::Delivered {
            id: "ID1".into(),
            first: false,
            rcpt: "x@y.test".into(),
            parent: Some("team@l.test".into()),
            via: "R=remote T=remote_smtp".into(),
        };
        assert_eq!(
            render(&d),
            "ID1 -> x@y.test <team@l.test> R=remote T=remote_smtp"
        );
        let f = Event::Failed {
            id: "ID1".into(),
            rcpt: "x@y.test".into(),
            parent: None,
            route: None,
            host: None,
            reason: "Unrouteable address".into(),
        };
        assert_eq!(render(&f), "ID1 ** x@y.test: Unrouteable address");
        let q = Event::Deferred {
            id: "ID1".into(),
            rcpt: "x@y.test".into(),
            parent: None,
            route: "R=remote T=remote_smtp".into(),
            host: Some("H=mx.y.test [192.0.2.1]:25".into()),
            reason: "451 later".into(),
        };
        assert_eq!(
            render(&q),
            "ID1 == x@y.test R=remote T=remote_smtp defer H=mx.y.test [192.0.2.1]:25: 451 later"
        );
    }

    #[test]
    fn refusals_name_the_stage() {
        let r = Event::Rejected {
            peer: client(),
            sender: Some("a@b".into()),
            stage: RejectStage::Rcpt("u@l".into()),
            by_plugin: false,
            temporary: false,
            reason: "550 5.1.1 Unknown user".into(),
        };
        assert_eq!(
            render(&r),
            "H=(c.test) [127.0.0.1]:4000 F=<a@b> rejected RCPT <u@l>: 550 5.1.1 Unknown user"
        );
        let n = Event::Session {
            peer: Peer::client(None, "::1".parse().unwrap(), 1),
            note: SessionNote::Dropped("too many syntax or protocol errors"),
        };
        assert_eq!(
            render(&n),
            "SMTP call from H=[::1]:1 dropped: too many syntax or protocol errors"
        );
    }
}
