//! When queued recipients are due: retry times with doubling backoff, and
//! the grouping of due recipients into outgoing transactions.

use crate::config::Config;
use crate::outbound::deliver::Group;
use crate::spool::{Envelope, RcptState};
use std::collections::BTreeMap;

/// The next retry time after `attempts` attempts.
pub fn next_retry(cfg: &Config, attempts: u32, now: i64) -> i64 {
    let min = cfg.outbound.retry_min.0.max(1);
    let max = cfg.outbound.retry_max.0.max(min);
    let shift = attempts.saturating_sub(1).min(30);
    let delay = min.saturating_mul(1u64 << shift).min(max);
    now + delay as i64
}

/// Group due queued recipients by transport, domain and envelope sender
/// (a route hook may have given some recipients their own sender). A
/// plugin transport gets all its recipients of a message in one call,
/// whatever their domains.
pub fn due_groups(env: &Envelope, now: i64) -> BTreeMap<Group, Vec<usize>> {
    let mut m: BTreeMap<Group, Vec<usize>> = BTreeMap::new();
    for (i, r) in env.recipients.iter().enumerate() {
        if r.state == RcptState::Queued && r.next_attempt.is_none_or(|t| t <= now) {
            let domain = match &r.transport {
                Some(_) => String::new(),
                None => r
                    .address
                    .rsplit_once('@')
                    .map_or("", |x| x.1)
                    .to_lowercase(),
            };
            let g = Group {
                transport: r.transport.clone(),
                domain,
                sender: r.sender.clone().unwrap_or_else(|| env.sender.clone()),
            };
            m.entry(g).or_default().push(i);
        }
    }
    m
}
