//! Policy decisions on HELO, MAIL and RCPT: relay control and local users
//! (recipient verification: an unknown user of a local domain is refused
//! at RCPT, so no bounce is ever sent for it).

use crate::config::Config;
use crate::routing::Router;
use crate::smtp::address::Address;
use crate::smtp::reply::Reply;
use crate::table::TableError;
use std::net::IpAddr;

/// Why a recipient is refused by the host's own policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptRefusal {
    /// A local address with routing characters (%-hack, `!`, quoted `@`).
    RoutingChars,
    /// A local domain without this user (a plugin may still claim it).
    UnknownUser,
    /// Another domain, from a client not allowed to relay.
    RelayDenied,
    /// A lookup table could not say (the client tries again later).
    Lookup(TableError),
}

impl RcptRefusal {
    /// The SMTP reply.
    pub fn reply(self) -> Reply {
        match self {
            RcptRefusal::RoutingChars => Reply::new(
                550,
                "5.7.1",
                "Relaying through a local address is not permitted",
            ),
            RcptRefusal::UnknownUser => Reply::new(550, "5.1.1", "Unknown user"),
            RcptRefusal::RelayDenied => Reply::new(550, "5.7.1", "Relaying denied"),
            RcptRefusal::Lookup(_) => Reply::new(451, "4.3.0", "Temporary lookup failure"),
        }
    }
}

/// Decide on one recipient. Local domains: the local part must exist and
/// must not carry routing characters (%-hack, `!`, quoted `@`). Relay
/// domains: accepted from anyone, without routing characters. Other
/// domains: only clients in `relay_networks` and clients that passed SMTP
/// AUTH (`authenticated`) may relay (address literals are never ours unless
/// listed as a local domain). A table that cannot answer defers the
/// recipient.
pub fn check_rcpt(
    cfg: &Config,
    router: &Router,
    client: IpAddr,
    authenticated: bool,
    rcpt: &Address,
) -> Result<(), RcptRefusal> {
    let lookup = RcptRefusal::Lookup;
    if router.is_local(&rcpt.domain).map_err(lookup)? {
        if rcpt.has_routing_chars() {
            return Err(RcptRefusal::RoutingChars);
        }
        if !router
            .local_exists(&rcpt.local, &rcpt.domain)
            .map_err(lookup)?
        {
            return Err(RcptRefusal::UnknownUser);
        }
        return Ok(());
    }
    if router.is_relay_domain(&rcpt.domain).map_err(lookup)? {
        if rcpt.has_routing_chars() {
            return Err(RcptRefusal::RoutingChars);
        }
        return Ok(());
    }
    if authenticated {
        return Ok(());
    }
    if router
        .tables()
        .in_hosts(&cfg.server.relay_networks, client)
        .map_err(lookup)?
    {
        Ok(())
    } else {
        Err(RcptRefusal::RelayDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Config, Router) {
        let text = "[server]\nhostname=\"h\"\nlocal_domains=[\"local.test\"]\nrelay_domains=[\"backup.test\"]\nrelay_networks=[\"10.0.0.0/8\"]\n[[listener]]\naddress=\"127.0.0.1:1\"\nmode=\"plain\"\n[local]\nusers=[\"alice\"]\n";
        let c = Config::parse(text, "t").unwrap();
        let r = Router::from_config(&c).unwrap();
        (c, r)
    }

    fn check(to: &str, from_ip: &str) -> Result<(), RcptRefusal> {
        let (c, r) = setup();
        let a = Address::parse(to, false).unwrap();
        assert!(r.tables().dir().ends_with("tables"));
        check_rcpt(&c, &r, from_ip.parse().unwrap(), false, &a)
    }

    #[test]
    fn authenticated_clients_relay_but_not_to_unknown_local_users() {
        let (c, r) = setup();
        let ip = "192.0.2.1".parse().unwrap();
        let remote = Address::parse("x@remote.test", false).unwrap();
        assert_eq!(check_rcpt(&c, &r, ip, true, &remote), Ok(()));
        let unknown = Address::parse("bob@local.test", false).unwrap();
        assert_eq!(
            check_rcpt(&c, &r, ip, true, &unknown),
            Err(RcptRefusal::UnknownUser)
        );
    }

    #[test]
    fn relay_control() {
        assert_eq!(check("alice@local.test", "192.0.2.1"), Ok(()));
        assert_eq!(
            check("bob@local.test", "192.0.2.1"),
            Err(RcptRefusal::UnknownUser)
        );
        assert_eq!(RcptRefusal::UnknownUser.reply().enhanced, Some("5.1.1"));
        assert_eq!(
            check("x@remote.test", "192.0.2.1"),
            Err(RcptRefusal::RelayDenied)
        );
        assert_eq!(RcptRefusal::RelayDenied.reply().code, 550);
        assert_eq!(check("x@remote.test", "10.1.2.3"), Ok(()));
        assert_eq!(check("x@Backup.Test", "192.0.2.1"), Ok(()));
        assert_eq!(
            check("x%far.test@backup.test", "192.0.2.1"),
            Err(RcptRefusal::RoutingChars)
        );
        for trick in [
            "x%remote.test@local.test",
            "remote.test!x@local.test",
            "\"x@remote.test\"@local.test",
        ] {
            assert_eq!(
                check(trick, "192.0.2.1"),
                Err(RcptRefusal::RoutingChars),
                "{trick}"
            );
        }
        assert_eq!(
            check("x@[192.0.2.9]", "192.0.2.1"),
            Err(RcptRefusal::RelayDenied)
        );
    }
}
