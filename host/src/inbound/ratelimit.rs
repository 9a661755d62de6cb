//! Rate limits (`[[rate_limit]]`): connections, messages and recipients
//! counted per client address, login or sender over a sliding window, in
//! memory on this node or, with `[store] redis`, in the pool's Redis so
//! that a limit holds across gateways ([`crate::store::windows`]).
//!
//! Each rule keeps, per key, the counts of the current fixed window and of
//! the one before; the sliding count is the current one plus the previous
//! one weighted by how much of it the sliding window still covers (the
//! approximation Cloudflare's and most Redis rate limiters use: exact
//! within a window, smooth across its edge, two numbers per key). A command
//! that is refused is not counted (Exim's "leaky" mode), so a client that
//! keeps trying gets through again once its rate has dropped.

use crate::config::ratelimit::{Counted, CountedPer, RateLimit};
use crate::config::store::OnOutage;
use crate::smtp::reply::Reply;
use crate::store::{Redis, windows};
use crate::table::Tables;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who a command comes from, as the rules key it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// The SMTP AUTH login, when the session has one.
    pub auth_user: Option<&'a str>,
    /// The envelope sender of the transaction (empty: the null sender);
    /// `None` before MAIL.
    pub sender: Option<&'a str>,
}

/// A rule that would be exceeded by one more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// What the rule counts.
    pub count: Counted,
    /// Per what.
    pub per: CountedPer,
    /// Its limit.
    pub limit: u32,
    /// Its window in seconds.
    pub window: u64,
    /// The key that is over it (the address, /64, login or sender).
    pub key: String,
}

impl Exceeded {
    /// The limit as written in replies: "10 per 1m".
    fn rate(&self) -> String {
        format!("{} per {}", self.limit, span(self.window))
    }

    /// The reply to MAIL or RCPT: 451 4.7.1.
    pub fn reply(&self) -> Reply {
        Reply::new(
            451,
            "4.7.1",
            format!(
                "Too many {} from this {} (limit {}); try again later",
                self.count.name(),
                self.per.name(),
                self.rate()
            ),
        )
    }

    /// The greeting that refuses a connection: 421 4.7.0.
    pub fn greeting(&self, hostname: &str) -> String {
        format!(
            "421 4.7.0 {hostname} Too many connections from your address (limit {}); try again later\r\n",
            self.rate()
        )
    }

    /// What the log says.
    pub fn log_text(&self) -> String {
        format!(
            "rate limit: {} {} from {} {}",
            self.rate(),
            self.count.name(),
            self.per.name(),
            self.key
        )
    }
}

/// Why a command was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// One more would exceed a rule.
    Exceeded(Exceeded),
    /// The shared counters cannot be reached and `store.on_outage` is
    /// `defer` (why).
    Unavailable(String),
}

impl Limited {
    /// The reply to MAIL or RCPT: 451 4.7.1 over a limit, 451 4.3.0
    /// when the counters cannot be read.
    pub fn reply(&self) -> Reply {
        match self {
            Limited::Exceeded(e) => e.reply(),
            Limited::Unavailable(_) => {
                Reply::new(451, "4.3.0", "Temporary local problem; try again later")
            }
        }
    }

    /// The greeting that refuses a connection.
    pub fn greeting(&self, hostname: &str) -> String {
        match self {
            Limited::Exceeded(e) => e.greeting(hostname),
            Limited::Unavailable(_) => {
                format!("421 4.3.0 {hostname} Temporary local problem; try again later\r\n")
            }
        }
    }

    /// What the log says.
    pub fn log_text(&self) -> String {
        match self {
            Limited::Exceeded(e) => e.log_text(),
            Limited::Unavailable(why) => format!("rate limit not checked: {why}"),
        }
    }
}

/// "90s", "5m", "2h", "1d".
fn span(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One key's counts under one rule.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Which fixed window `current` counts (time / window length).
    index: u64,
    current: u32,
    previous: u32,
}

impl Window {
    /// The counts as of fixed window `index`.
    fn at(self, index: u64) -> Window {
        match index.saturating_sub(self.index) {
            0 => self,
            1 => Window {
                index,
                current: 0,
                previous: self.current,
            },
            _ => Window {
                index,
                current: 0,
                previous: 0,
            },
        }
    }

    /// The sliding count at `now_ms` for a window of `len_ms`.
    fn sliding(self, now_ms: u64, len_ms: u64) -> f64 {
        let left = len_ms - now_ms % len_ms;
        self.current as f64 + self.previous as f64 * left as f64 / len_ms as f64
    }
}

/// The counters of every rule.
#[derive(Debug)]
pub struct RateLimiter {
    rules: Vec<RateLimit>,
    start: Instant,
    state: Mutex<State>,
    /// The pool's Redis, where the counters are kept when set.
    shared: Option<Arc<Redis>>,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<(usize, String), Window>,
    /// Size at which old entries are swept out next.
    sweep_at: usize,
}

const SWEEP_MIN: usize = 100_000;

/// What a full rule says.
fn exceeded(r: &RateLimit, key: String) -> Exceeded {
    Exceeded {
        count: r.count,
        per: r.per,
        limit: r.limit,
        window: r.window.0,
        key,
    }
}

/// The word for `per` in shared counter names.
fn per_tag(per: CountedPer) -> &'static str {
    match per {
        CountedPer::ClientIp => "ip",
        CountedPer::AuthUser => "login",
        CountedPer::Sender => "sender",
    }
}

/// The key a rule counts `s` under, or `None` when the rule does not apply.
fn key(per: CountedPer, s: &Subject<'_>) -> Option<String> {
    match per {
        CountedPer::ClientIp => Some(match s.ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                format!("{}/64", std::net::Ipv6Addr::from(o))
            }
        }),
        CountedPer::AuthUser => s.auth_user.map(str::to_string),
        CountedPer::Sender => s
            .sender
            .filter(|a| !a.is_empty())
            .map(|a| a.to_ascii_lowercase()),
    }
}

impl RateLimiter {
    /// The limiter of `[[rate_limit]]` (no rules: every call passes).
    pub fn new(rules: Vec<RateLimit>) -> RateLimiter {
        RateLimiter {
            rules,
            start: Instant::now(),
            state: Mutex::new(State {
                windows: HashMap::new(),
                sweep_at: SWEEP_MIN,
            }),
            shared: None,
        }
    }

    /// Keep the counters in `redis` (a pool's shared store), falling back
    /// to memory during an outage only under `on_outage = "local"`.
    pub fn shared(mut self, redis: Option<Arc<Redis>>) -> RateLimiter {
        self.shared = redis;
        self
    }

    /// Whether any rule counts `what` (callers skip the work otherwise).
    pub fn counts(&self, what: Counted) -> bool {
        self.rules.iter().any(|r| r.count == what)
    }

    /// Count one `what` from `s` against every rule that applies, or,
    /// when one more would exceed a rule, count nothing and say which. A
    /// client whose exemption cannot be looked up is counted.
    pub async fn take(
        &self,
        what: Counted,
        s: &Subject<'_>,
        tables: &Tables,
    ) -> Result<(), Limited> {
        if !self.counts(what) {
            return Ok(());
        }
        let exempt = |r: &RateLimit| match tables.in_hosts(&r.exempt, s.ip) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "rate_limit.exempt: lookup failed; counting the client");
                false
            }
        };
        if let Some(r) = &self.shared {
            let applying = self.applying(what, s, &exempt);
            let counters: Vec<windows::Counter> = applying
                .iter()
                .map(|(_, rule, k)| windows::Counter {
                    name: format!(
                        "rl:{}:{}:{}:{k}",
                        rule.count.name(),
                        per_tag(rule.per),
                        rule.window.0
                    ),
                    window: rule.window.0,
                    limit: rule.limit,
                })
                .collect();
            match windows::take(r, &counters).await {
                Ok(None) => return Ok(()),
                Ok(Some(i)) => {
                    let (_, rule, k) = &applying[i];
                    return Err(Limited::Exceeded(exceeded(rule, k.clone())));
                }
                Err(e) if r.policy() == OnOutage::Defer => {
                    return Err(Limited::Unavailable(e.to_string()));
                }
                // Local: this node's counters until Redis is back.
                Err(_) => {}
            }
        }
        let now = self.start.elapsed().as_millis() as u64;
        self.take_at(what, s, exempt, now)
            .map_err(Limited::Exceeded)
    }

    /// The rules that count `what` from `s`, with their keys.
    fn applying<'r>(
        &'r self,
        what: Counted,
        s: &Subject<'_>,
        exempt: &impl Fn(&RateLimit) -> bool,
    ) -> Vec<(usize, &'r RateLimit, String)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.count == what)
            .filter_map(|(i, r)| key(r.per, s).map(|k| (i, r, k)))
            .filter(|(_, r, _)| !exempt(r))
            .collect()
    }

    fn take_at(
        &self,
        what: Counted,
        s: &Subject<'_>,
        exempt: impl Fn(&RateLimit) -> bool,
        now_ms: u64,
    ) -> Result<(), Exceeded> {
        let applying = self.applying(what, s, &exempt);
        if applying.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut updated = Vec::with_capacity(applying.len());
        for (i, r, k) in applying {
            let len = r.window.0 * 1000;
            let index = now_ms / len;
            let fresh = Window {
                index,
                current: 0,
                previous: 0,
            };
            let w = st
                .windows
                .get(&(i, k.clone()))
                .map_or(fresh, |w| w.at(index));
            if w.sliding(now_ms, len) + 1.0 > r.limit as f64 {
                return Err(exceeded(r, k));
            }
            updated.push(((i, k), w));
        }
        for (k, mut w) in updated {
            w.current = w.current.saturating_add(1);
            st.windows.insert(k, w);
        }
        if st.windows.len() >= st.sweep_at {
            let rules = &self.rules;
            st.windows
                .retain(|(i, _), w| now_ms / (rules[*i].window.0 * 1000) <= w.index + 1);
            st.sweep_at = (st.windows.len() * 2).max(SWEEP_MIN);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Seconds;

    fn rule(count: Counted, per: CountedPer, limit: u32, window: u64) -> RateLimit {
        RateLimit {
            count,
            per,
            limit,
            window: Seconds(window),
            exempt: Default::default(),
        }
    }

    fn from(ip: &str) -> Subject<'_> {
        Subject {
            ip: ip.parse().unwrap(),
            auth_user: None,
            sender: None,
        }
    }

    #[test]
    fn a_flooding_client_is_stopped_and_another_is_not() {
        let l = RateLimiter::new(vec![rule(Counted::Messages, CountedPer::ClientIp, 3, 60)]);
        let none = |_: &RateLimit| false;
        for _ in 0..3 {
            l.take_at(Counted::Messages, &from("192.0.2.1"), none, 1000)
                .unwrap();
        }
        let e = l
            .take_at(Counted::Messages, &from("192.0.2.1"), none, 2000)
            .unwrap_err();
        assert_eq!(e.key, "192.0.2.1");
        let r = e.reply();
        assert_eq!((r.code, r.enhanced), (451, Some("4.7.1")));
        assert!(r.lines[0].contains("limit 3 per 1m"), "{:?}", r.lines);
        l.take_at(Counted::Messages, &from("192.0.2.2"), none, 2000)
            .unwrap();
        // Recipients are not counted by a messages rule.
        l.take_at(Counted::Recipients, &from("192.0.2.1"), none, 2000)
            .unwrap();
    }

    #[test]
    fn the_window_slides() {
        let l = RateLimiter::new(vec![rule(Counted::Messages, CountedPer::ClientIp, 4, 60)]);
        let none = |_: &RateLimit| false;
        let s = from("192.0.2.1");
        // Four near the end of the first minute.
        for _ in 0..4 {
            l.take_at(Counted::Messages, &s, none, 59_000).unwrap();
        }
        // Just into the next minute the previous four still weigh ~4.
        assert!(l.take_at(Counted::Messages, &s, none, 61_000).is_err());
        // Half way through it they weigh 2: two more fit, not a third.
        l.take_at(Counted::Messages, &s, none, 90_000).unwrap();
        l.take_at(Counted::Messages, &s, none, 90_000).unwrap();
        assert!(l.take_at(Counted::Messages, &s, none, 90_000).is_err());
        // Two windows later everything has gone.
        for _ in 0..4 {
            l.take_at(Counted::Messages, &s, none, 180_500).unwrap();
        }
    }

    #[test]
    fn refused_commands_are_not_counted_and_rules_count_together() {
        let l = RateLimiter::new(vec![
            rule(Counted::Recipients, CountedPer::ClientIp, 10, 60),
            rule(Counted::Recipients, CountedPer::Sender, 2, 60),
        ]);
        let none = |_: &RateLimit| false;
        let s = Subject {
            sender: Some("A@Example.test"),
            ..from("192.0.2.1")
        };
        l.take_at(Counted::Recipients, &s, none, 0).unwrap();
        l.take_at(Counted::Recipients, &s, none, 0).unwrap();
        for _ in 0..5 {
            let e = l.take_at(Counted::Recipients, &s, none, 0).unwrap_err();
            assert_eq!(
                (e.per, e.key.as_str()),
                (CountedPer::Sender, "a@example.test")
            );
        }
        // The refusals did not use up the client address's ten: eight
        // more from four other senders fit, the next does not.
        let senders = ["b@x.test", "c@x.test", "d@x.test", "e@x.test", "f@x.test"];
        for a in &senders[..4] {
            let other = Subject {
                sender: Some(a),
                ..s
            };
            l.take_at(Counted::Recipients, &other, none, 0).unwrap();
            l.take_at(Counted::Recipients, &other, none, 0).unwrap();
        }
        let fifth = Subject {
            sender: Some(senders[4]),
            ..s
        };
        let e = l.take_at(Counted::Recipients, &fifth, none, 0).unwrap_err();
        assert_eq!(e.per, CountedPer::ClientIp);
        // The null sender is never counted per sender.
        let bounce = Subject {
            sender: Some(""),
            ..from("192.0.2.9")
        };
        for _ in 0..10 {
            l.take_at(Counted::Recipients, &bounce, none, 0).unwrap();
        }
        assert_eq!(
            l.take_at(Counted::Recipients, &bounce, none, 0)
                .unwrap_err()
                .per,
            CountedPer::ClientIp
        );
    }

    #[test]
    fn logins_ipv6_networks_and_exemptions() {
        let l = RateLimiter::new(vec![
            rule(Counted::Messages, CountedPer::AuthUser, 1, 3600),
            rule(Counted::Connections, CountedPer::ClientIp, 1, 60),
        ]);
        let none = |_: &RateLimit| false;
        let anon = from("192.0.2.1");
        for _ in 0..3 {
            l.take_at(Counted::Messages, &anon, none, 0).unwrap();
        }
        let alice = Subject {
            auth_user: Some("alice"),
            ..anon
        };
        l.take_at(Counted::Messages, &alice, none, 0).unwrap();
        let e = l.take_at(Counted::Messages, &alice, none, 0).unwrap_err();
        assert!(e.reply().lines[0].contains("from this login (limit 1 per 1h)"));
        l.take_at(Counted::Connections, &from("2001:db8:1:2::5"), none, 0)
            .unwrap();
        let e = l
            .take_at(Counted::Connections, &from("2001:db8:1:2:ffff::9"), none, 0)
            .unwrap_err();
        assert_eq!(e.key, "2001:db8:1:2::/64");
        assert!(e.greeting("mx.test").starts_with("421 4.7.0 mx.test "));
        l.take_at(Counted::Connections, &from("2001:db8:1:3::5"), none, 0)
            .unwrap();
        let all = |_: &RateLimit| true;
        l.take_at(Counted::Connections, &from("2001:db8:1:2::5"), all, 0)
            .unwrap();
    }

    #[test]
    fn old_keys_are_swept() {
        let l = RateLimiter::new(vec![rule(Counted::Connections, CountedPer::ClientIp, 5, 1)]);
        let none = |_: &RateLimit| false;
        for i in 0..SWEEP_MIN as u32 - 1 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let s = Subject {
                ip,
                auth_user: None,
                sender: None,
            };
            l.take_at(Counted::Connections, &s, none, 0).unwrap();
        }
        l.take_at(Counted::Connections, &from("192.0.2.1"), none, 5_000)
            .unwrap();
        assert_eq!(l.state.lock().unwrap().windows.len(), 1);
    }
}
