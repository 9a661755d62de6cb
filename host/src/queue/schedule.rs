//! When queued recipients are due: retry times with doubling backoff, and
//! the grouping of due recipients into outgoing transactions.

use crate::config::Config;
use crate::outbound::deliver::Group;
use crate::spool::{Envelope, RcptState, copy_headers};
use std::collections::BTreeMap;

/// The next retry time after `attempts` attempts.
pub fn next_retry(cfg: &Config, attempts: u32, now: i64) -> i64 {
    let min = cfg.outbound.retry_min.0.max(1);
    let max = cfg.outbound.retry_max.0.max(min);
    let shift = attempts.saturating_sub(1).min(30);
    let delay = min.saturating_mul(1u64 << shift).min(max);
    now + delay as i64
}

/// Group due queued recipients by transport, domain, envelope sender and
/// header fields for their copy (a route hook may have given some
/// recipients their own sender or fields). A
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
                headers: copy_headers(&env.recipients, i),
            };
            m.entry(g).or_default().push(i);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_with_their_own_fields_get_their_own_transaction() {
        let mut env = crate::spool::envelope::test_envelope(
            "x",
            &[
                "a@remote.test",
                "b@remote.test",
                "c@remote.test",
                "d@remote.test",
            ],
        );
        for r in &mut env.recipients {
            r.state = RcptState::Queued;
        }
        let h = |v: &str| vec![("X-Verdict".to_string(), v.to_string())];
        env.recipients[0].headers = h("deliver");
        env.recipients[1].headers = h("alternate");
        env.recipients[2].headers = h("deliver");
        let g: Vec<(String, Vec<usize>)> = due_groups(&env, 0)
            .into_iter()
            .map(|(g, v)| (g.headers, v))
            .collect();
        assert_eq!(
            g,
            vec![
                (String::new(), vec![3]),
                ("X-Verdict: alternate\r\n".into(), vec![1]),
                ("X-Verdict: deliver\r\n".into(), vec![0, 2]),
            ]
        );
    }
}
