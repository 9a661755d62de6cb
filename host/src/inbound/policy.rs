//! Policy decisions on HELO, MAIL and RCPT: relay control and local users.

use crate::config::Config;
use crate::routing::Router;
use crate::smtp::address::Address;
use crate::smtp::reply::Reply;
use crate::smtp::server::Verdict;
use std::net::IpAddr;

/// Decide on one recipient. Local domains: the local part must exist and
/// must not carry routing characters (%-hack, `!`, quoted `@`). Other
/// domains: only clients in `relay_networks` may relay.
pub fn check_rcpt(cfg: &Config, router: &Router, client: IpAddr, rcpt: &Address) -> Verdict {
    if router.is_local(&rcpt.domain) {
        if rcpt.has_routing_chars() {
            return Verdict::Reject(Reply::new(
                550,
                "5.7.1",
                "Relaying through a local address is not permitted",
            ));
        }
        if !router.local_exists(&rcpt.local, &rcpt.domain) {
            return Verdict::Reject(Reply::new(550, "5.1.1", "Unknown user"));
        }
        return Verdict::Accept;
    }
    if rcpt.domain.starts_with('[') {
        // Address literals are never ours unless listed as a local domain.
        if !cfg.server.relay_networks.contains(client) {
            return Verdict::Reject(Reply::new(550, "5.7.1", "Relaying denied"));
        }
    }
    if cfg.server.relay_networks.contains(client) {
        Verdict::Accept
    } else {
        Verdict::Reject(Reply::new(550, "5.7.1", "Relaying denied"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Config, Router) {
        let text = "[server]\nhostname=\"h\"\nlocal_domains=[\"local.test\"]\nrelay_networks=[\"10.0.0.0/8\"]\n[[listener]]\naddress=\"127.0.0.1:1\"\nmode=\"plain\"\n[local]\nusers=[\"alice\"]\n";
        let c = Config::parse(text, "t").unwrap();
        let r = Router::from_config(&c).unwrap();
        (c, r)
    }

    fn check(to: &str, from_ip: &str) -> Verdict {
        let (c, r) = setup();
        let a = Address::parse(to, false).unwrap();
        check_rcpt(&c, &r, from_ip.parse().unwrap(), &a)
    }

    #[test]
    fn relay_control() {
        assert_eq!(check("alice@local.test", "192.0.2.1"), Verdict::Accept);
        assert!(
            matches!(check("bob@local.test", "192.0.2.1"), Verdict::Reject(r) if r.code == 550 && r.enhanced == Some("5.1.1"))
        );
        assert!(
            matches!(check("x@remote.test", "192.0.2.1"), Verdict::Reject(r) if r.enhanced == Some("5.7.1"))
        );
        assert_eq!(check("x@remote.test", "10.1.2.3"), Verdict::Accept);
        for trick in [
            "x%remote.test@local.test",
            "remote.test!x@local.test",
            "\"x@remote.test\"@local.test",
        ] {
            assert!(
                matches!(check(trick, "192.0.2.1"), Verdict::Reject(r) if r.enhanced == Some("5.7.1")),
                "{trick}"
            );
        }
        assert!(matches!(
            check("x@[192.0.2.9]", "192.0.2.1"),
            Verdict::Reject(_)
        ));
    }
}
