//! Recipient expansion: the one place where a recipient's routes become
//! spool state. A recipient that is its own route stays (remote ones are
//! marked queued); an alias is marked expanded and its targets are
//! appended as children that inherit its DSN parameters and sender. Used
//! before the first spool record (at acceptance, so routing costs no second
//! fsync) and by the queue for recipients still pending.

use super::router::{Route, Router, Unrouteable};
use crate::spool::{RcptState, RecipientEntry};

/// Route recipient `i` of `rcpts` and record the result in their states.
///
/// Returns every resulting recipient with its route: `[(i, route)]` when the
/// address is its own route, otherwise one entry per appended child. Remote
/// recipients are left `queued`; local ones stay `pending` for delivery to
/// their maildir, which is the caller's job. On `Err` nothing changed.
pub fn expand(
    router: &Router,
    rcpts: &mut Vec<RecipientEntry>,
    i: usize,
) -> Result<Vec<(usize, Route)>, Unrouteable> {
    let addr = rcpts[i].address.clone();
    let mut routes = router.route(&addr)?;
    let direct = routes.len() == 1
        && match &routes[0] {
            Route::Remote(a) => *a == addr,
            Route::Local { address, .. } => address.eq_ignore_ascii_case(&addr),
        };
    if direct {
        let route = routes.remove(0);
        if let Route::Remote(_) = route {
            queue(&mut rcpts[i]);
        }
        return Ok(vec![(i, route)]);
    }
    rcpts[i].state = RcptState::Expanded;
    rcpts[i].detail = Some(format!("expanded to {} addresses", routes.len()));
    let mut out = Vec::with_capacity(routes.len());
    for route in routes {
        let parent = &rcpts[i];
        let mut child = RecipientEntry::new(
            match &route {
                Route::Remote(a) => a.clone(),
                Route::Local { address, .. } => address.clone(),
            },
            parent.notify,
            parent.orcpt.clone(),
        );
        child.parent = Some(i);
        child.sender = parent.sender.clone();
        if let Route::Remote(_) = route {
            queue(&mut child);
        }
        rcpts.push(child);
        out.push((rcpts.len() - 1, route));
    }
    Ok(out)
}

fn queue(r: &mut RecipientEntry) {
    r.state = RcptState::Queued;
    r.detail = Some("waiting for outbound delivery".into());
}

/// Route freshly accepted recipients before the message is spooled, so the
/// first spool record already holds their final states: remote recipients
/// become `queued`, aliases `expanded` (with their targets added), local
/// mailboxes stay `pending` for the queue runner. Returns true when some
/// recipient still needs delivery.
pub fn preroute(router: &Router, rcpts: &mut Vec<RecipientEntry>) -> bool {
    preroute_from(router, rcpts, 0)
}

/// [`preroute`] for the recipients from index `start` on (those added by a
/// plugin's redirect); the earlier ones are left as they are. A recipient
/// that cannot be routed is left pending: the queue runner fails it with
/// the logged reason.
pub fn preroute_from(router: &Router, rcpts: &mut Vec<RecipientEntry>, start: usize) -> bool {
    for i in start..rcpts.len() {
        let _ = expand(router, rcpts, i);
    }
    rcpts
        .iter()
        .any(|r| matches!(r.state, RcptState::Pending | RcptState::Queued))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router() -> Router {
        let text = "[server]\nhostname=\"h\"\ndata_dir=\"/d\"\nlocal_domains=[\"local.test\"]\n[[listener]]\naddress=\"127.0.0.1:1\"\nmode=\"plain\"\n[local]\nusers = [\"alice\", \"bob\"]\n[aliases]\n\"team@local.test\" = [\"alice\", \"x@remote.test\"]\n";
        Router::from_config(&Config::parse(text, "t").unwrap()).unwrap()
    }

    fn rcpt(a: &str) -> RecipientEntry {
        RecipientEntry::new(a.into(), None, Some("rfc822;orig@x".into()))
    }

    #[test]
    fn direct_recipients_keep_their_entry() {
        let r = router();
        let mut v = vec![rcpt("alice@local.test"), rcpt("far@remote.test")];
        let out = expand(&r, &mut v, 0).unwrap();
        assert!(matches!(&out[..], [(0, Route::Local { .. })]));
        assert_eq!(v[0].state, RcptState::Pending);
        let out = expand(&r, &mut v, 1).unwrap();
        assert!(matches!(&out[..], [(1, Route::Remote(_))]));
        assert_eq!(v[1].state, RcptState::Queued);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn aliases_append_children_that_inherit() {
        let r = router();
        let mut v = vec![rcpt("team@local.test")];
        v[0].sender = Some("srs@x.test".into());
        let out = expand(&r, &mut v, 0).unwrap();
        assert_eq!(v[0].state, RcptState::Expanded);
        assert_eq!(out.len(), 2);
        assert_eq!(v.len(), 3);
        for (j, _) in &out {
            assert_eq!(v[*j].parent, Some(0));
            assert_eq!(v[*j].orcpt.as_deref(), Some("rfc822;orig@x"));
            assert_eq!(v[*j].sender.as_deref(), Some("srs@x.test"));
        }
        assert_eq!(v[1].state, RcptState::Pending);
        assert_eq!(v[2].address, "x@remote.test");
        assert_eq!(v[2].state, RcptState::Queued);
    }

    #[test]
    fn unrouteable_changes_nothing_and_preroute_leaves_it_pending() {
        let r = router();
        let mut v = vec![rcpt("nobody@local.test")];
        assert_eq!(
            expand(&r, &mut v, 0).unwrap_err(),
            Unrouteable::UnknownUser("nobody@local.test".into())
        );
        assert!(preroute(&r, &mut v));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].state, RcptState::Pending);
    }
}
