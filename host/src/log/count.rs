//! The counters the main log's events move (`mailgate_messages_received_total`,
//! `mailgate_deliveries_total`, rejections, ...): counted as each event is
//! written, so the metrics and the log always agree.

use super::{Event, RejectStage, SessionNote};
use crate::metrics::Metrics;

/// Destination class of a delivery from its router and transport.
fn class(route: &str) -> &'static str {
    if route.starts_with("R=local_user") {
        "local"
    } else if route.starts_with("R=plugin") {
        "plugin"
    } else if route.starts_with("R=route") {
        "routing"
    } else {
        "remote"
    }
}

/// Whether `e` is about something that went wrong, for the admin's
/// attention (`mailgate status` shows the latest).
pub fn is_problem(e: &Event) -> bool {
    match e {
        Event::Deferred { .. }
        | Event::Failed { .. }
        | Event::HostFailed { .. }
        | Event::PluginFailed { .. }
        | Event::PluginIgnored { .. } => true,
        Event::Session { note, .. } => matches!(note, SessionNote::TlsError { .. }),
        Event::Notice { text, .. } => ["failed", "refused", "cannot", "error"]
            .iter()
            .any(|w| text.contains(w)),
        _ => false,
    }
}

/// Count what `e` says.
pub fn count(m: &Metrics, e: &Event) {
    match e {
        Event::Received { protocol, size, .. } => {
            m.messages_received.inc(&[protocol]);
            m.received_bytes.add(&[], *size);
        }
        Event::Delivered { via, .. } => m.deliveries.inc(&["delivered", class(via)]),
        Event::Deferred { route, .. } => m.deliveries.inc(&["deferred", class(route)]),
        Event::Failed { route, .. } => m
            .deliveries
            .inc(&["failed", route.as_deref().map_or("routing", class)]),
        Event::HostFailed { .. } => m.host_failures.inc(&[]),
        Event::Rejected {
            stage,
            by_plugin,
            temporary,
            ..
        } => {
            let stage = match stage {
                RejectStage::Connect => "connect",
                RejectStage::Helo => "helo",
                RejectStage::Mail => "mail",
                RejectStage::Rcpt(_) => "rcpt",
                RejectStage::Data => "data",
            };
            let class = if *temporary { "temporary" } else { "permanent" };
            let source = if *by_plugin { "plugin" } else { "host" };
            m.rejections.inc(&[stage, class, source]);
        }
        Event::Session {
            note: SessionNote::AuthFailed { mechanism, .. },
            ..
        } => m.auth_failures.inc(&[mechanism]),
        Event::Session {
            note: SessionNote::Refused(why),
            ..
        } => {
            let reason = if why.starts_with("rate limit") {
                "rate_limit"
            } else if why.contains("from that IP") {
                "per_ip_limit"
            } else {
                "total_limit"
            };
            m.connections_refused.inc(&[reason]);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Peer;

    #[test]
    fn events_move_the_counters() {
        let m = Metrics::new();
        count(
            &m,
            &Event::Delivered {
                id: "x".into(),
                first: true,
                rcpt: "a@b".into(),
                parent: None,
                via: "R=local_user T=maildir".into(),
            },
        );
        count(
            &m,
            &Event::Deferred {
                id: "x".into(),
                rcpt: "a@b".into(),
                parent: None,
                route: "R=remote T=remote_smtp".into(),
                host: None,
                reason: "x".into(),
            },
        );
        count(
            &m,
            &Event::Rejected {
                peer: Peer::client(None, "192.0.2.1".parse().unwrap(), 25),
                sender: None,
                stage: RejectStage::Rcpt("a@b".into()),
                by_plugin: false,
                temporary: true,
                reason: "451 no".into(),
            },
        );
        count(
            &m,
            &Event::Session {
                peer: Peer::client(None, "192.0.2.1".parse().unwrap(), 25),
                note: SessionNote::Refused("rate limit: 5 per 1h ...".into()),
            },
        );
        assert_eq!(m.deliveries.get(&["delivered", "local"]), 1);
        assert_eq!(m.deliveries.get(&["deferred", "remote"]), 1);
        assert_eq!(m.rejections.get(&["rcpt", "temporary", "host"]), 1);
        assert_eq!(m.connections_refused.get(&["rate_limit"]), 1);
    }
}
