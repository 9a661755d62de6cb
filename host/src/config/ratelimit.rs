//! `[[rate_limit]]`: how many connections, messages or recipients one
//! client address, login or sender may bring within a sliding window (what
//! Exim's `ratelimit` ACL condition is used for).

use super::{HostList, Seconds};
use serde::Deserialize;

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    /// New connections, refused with 421 4.7.0 at the greeting.
    Connections,
    /// MAIL commands the host's checks accept, refused with 451 4.7.1.
    Messages,
    /// RCPT commands the host's checks accept, refused with 451 4.7.1.
    Recipients,
}

impl Counted {
    /// The word in replies and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Counted::Connections => "connections",
            Counted::Messages => "messages",
            Counted::Recipients => "recipients",
        }
    }
}

/// Whose count a rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedPer {
    /// The client's address (an IPv6 client's /64).
    ClientIp,
    /// The SMTP AUTH login; sessions that did not authenticate are not
    /// counted.
    AuthUser,
    /// The envelope sender, lower case; the null sender is not counted.
    Sender,
}

impl CountedPer {
    /// The words in replies and log lines.
    pub fn name(self) -> &'static str {
        match self {
            CountedPer::ClientIp => "client address",
            CountedPer::AuthUser => "login",
            CountedPer::Sender => "sender",
        }
    }
}

/// One `[[rate_limit]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// What is counted.
    pub count: Counted,
    /// Per what (default: the client address). Connections can only be
    /// counted per client address.
    #[serde(default = "client_ip")]
    pub per: CountedPer,
    /// How many are allowed within `window`; the next is refused until the
    /// count drops below.
    pub limit: u32,
    /// The window's length ("1m", "1h", "1d").
    pub window: Seconds,
    /// Clients this rule does not count (networks, `*`, `table:NAME`).
    #[serde(default)]
    pub exempt: HostList,
}

fn client_ip() -> CountedPer {
    CountedPer::ClientIp
}

impl RateLimit {
    /// What is wrong with the rule, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.limit == 0 {
            return Some("rate_limit: limit must be at least 1".into());
        }
        if self.window.0 == 0 {
            return Some("rate_limit: window must be longer than 0s".into());
        }
        if self.count == Counted::Connections && self.per != CountedPer::ClientIp {
            return Some(
                "rate_limit: connections can only be counted per client_ip \
                 (nothing else is known when a client connects)"
                    .into(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<RateLimit, String> {
        let r: RateLimit = toml::from_str(text).map_err(|e| e.message().to_string())?;
        match r.problem() {
            Some(p) => Err(p),
            None => Ok(r),
        }
    }

    #[test]
    fn rules_and_their_mistakes() {
        let r = rule("count = \"messages\"\nlimit = 100\nwindow = \"1h\"\n").unwrap();
        assert_eq!(
            (r.count, r.per, r.limit, r.window),
            (Counted::Messages, CountedPer::ClientIp, 100, Seconds(3600))
        );
        let r = rule(
            "count = \"recipients\"\nper = \"auth_user\"\nlimit = 5\nwindow = \"1m\"\n\
             exempt = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(r.per, CountedPer::AuthUser);
        assert!(r.exempt.contains_listed("10.1.2.3".parse().unwrap()));
        let e = rule("count = \"connections\"\nper = \"sender\"\nlimit = 5\nwindow = \"1m\"\n")
            .unwrap_err();
        assert!(e.contains("per client_ip"), "{e}");
        let e = rule("count = \"messages\"\nlimit = 0\nwindow = \"1m\"\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = rule("count = \"bytes\"\nlimit = 1\nwindow = \"1m\"\n").unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
    }
}
