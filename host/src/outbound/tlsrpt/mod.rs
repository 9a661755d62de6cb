//! TLS reporting (RFC 8460) as a sending MTA: every new outbound
//! connection to an MX host adds its result ([`result::Outcome`]) under
//! the policy it was made under to a count per recipient domain and UTC
//! day ([`crate::cache::daily`]: in memory, merged into the cache database
//! every few seconds and at shutdown).
//! [`report`] turns a day's counts into the RFC 8460 JSON report and the
//! report message; [`rua`] reads the domain's `_smtp._tls` record and
//! POSTs to `https:` destinations. Sending (mail goes through our own
//! queue) is done by the queue (its `reports` module).

pub mod report;
pub mod result;
pub mod rua;
pub mod session;

use crate::cache::Cache;
use crate::cache::daily::{Daily, Tally};
use redb::TableDefinition;
use result::{FailureDetail, Outcome, PolicyId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Counts: `YYYY-MM-DD domain` -> JSON [`DayCounts`].
const COUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tlsrpt");
/// Days reported: `YYYY-MM-DD domain` -> unix time (LE) the report went.
const SENT: TableDefinition<&str, u64> = TableDefinition::new("tlsrpt_sent");

/// Distinct failure details kept per policy and day; beyond them failures
/// are counted under their type alone.
const MAX_DETAILS: usize = 500;

/// Days of counts kept (reports go out the day after).
pub const KEEP_DAYS: i64 = 8;

/// One policy's counts for a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounts {
    /// The policy.
    pub policy: PolicyId,
    /// Sessions that succeeded.
    pub success: u64,
    /// Failed sessions by detail.
    pub failures: Vec<(FailureDetail, u64)>,
}

impl PolicyCounts {
    /// Failed sessions in all.
    pub fn failed(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }
}

/// A domain's counts for a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// By policy.
    pub policies: Vec<PolicyCounts>,
}

impl DayCounts {
    fn entry(&mut self, policy: &PolicyId) -> &mut PolicyCounts {
        let i = match self.policies.iter().position(|p| p.policy == *policy) {
            Some(i) => i,
            None => {
                self.policies.push(PolicyCounts {
                    policy: policy.clone(),
                    success: 0,
                    failures: vec![],
                });
                self.policies.len() - 1
            }
        };
        &mut self.policies[i]
    }

    /// Count `n` sessions with `outcome` under `policy`.
    pub fn add(&mut self, policy: &PolicyId, outcome: &Outcome, n: u64) {
        let p = self.entry(policy);
        match outcome {
            Outcome::Success => p.success += n,
            Outcome::Failure(d) => add_failure(&mut p.failures, d, n),
        }
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &DayCounts) {
        for o in &other.policies {
            let p = self.entry(&o.policy);
            p.success += o.success;
            for (d, n) in &o.failures {
                add_failure(&mut p.failures, d, *n);
            }
        }
    }
}

fn add_failure(list: &mut Vec<(FailureDetail, u64)>, d: &FailureDetail, n: u64) {
    if let Some(e) = list.iter_mut().find(|(k, _)| k == d) {
        e.1 += n;
        return;
    }
    if list.len() < MAX_DETAILS {
        list.push((d.clone(), n));
        return;
    }
    let bare = FailureDetail {
        result: d.result,
        sending_ip: None,
        receiving_mx: None,
        receiving_ip: None,
        reason: None,
    };
    match list.iter_mut().find(|(k, _)| *k == bare) {
        Some(e) => e.1 += n,
        None => list.push((bare, n)),
    }
}

pub use crate::cache::daily::day_of;

/// The counts, shared by deliveries.
pub type Tlsrpt = Daily<DayCounts>;

impl Tally for DayCounts {
    fn merge(&mut self, other: &DayCounts) {
        DayCounts::merge(self, other)
    }
}

impl Daily<DayCounts> {
    /// Over the cache database; starts the writer (inside a runtime).
    pub fn new(cache: Cache) -> Arc<Tlsrpt> {
        Daily::open(cache, COUNTS, SENT, "TLS report")
    }

    /// Count one session to `domain` (today, UTC).
    pub fn record(&self, domain: &str, policy: &PolicyId, outcome: &Outcome) {
        self.record_at(chrono::Utc::now().timestamp(), domain, policy, outcome);
    }

    /// Count one session to `domain` at unix time `t`.
    pub fn record_at(&self, t: i64, domain: &str, policy: &PolicyId, outcome: &Outcome) {
        self.update_at(t, domain, |c| c.add(policy, outcome, 1));
    }
}

#[cfg(test)]
mod tests {
    use super::result::{PolicyType, ResultType};
    use super::*;

    fn fail(r: ResultType, ip: &str) -> Outcome {
        Outcome::Failure(FailureDetail {
            result: r,
            sending_ip: None,
            receiving_mx: Some("mx.example".into()),
            receiving_ip: Some(ip.into()),
            reason: None,
        })
    }

    #[test]
    fn counting_and_merging() {
        let sts = PolicyId {
            kind: PolicyType::Sts,
            strings: vec!["version: STSv1".into()],
            mx_host: vec!["mx.example".into()],
        };
        let mut a = DayCounts::default();
        a.add(&sts, &Outcome::Success, 1);
        a.add(&sts, &fail(ResultType::CertificateExpired, "192.0.2.1"), 1);
        a.add(&sts, &fail(ResultType::CertificateExpired, "192.0.2.1"), 1);
        a.add(&PolicyId::none(), &Outcome::Success, 1);
        assert_eq!(a.policies.len(), 2);
        assert_eq!(a.policies[0].success, 1);
        assert_eq!(a.policies[0].failed(), 2);
        assert_eq!(a.policies[0].failures.len(), 1);
        let mut b = DayCounts::default();
        b.add(&sts, &fail(ResultType::TlsaInvalid, "192.0.2.2"), 3);
        b.merge(&a);
        assert_eq!(b.policies[0].failed(), 5);
        assert_eq!(b.policies[0].success, 1);
        assert_eq!(b.policies[1].policy, PolicyId::none());
    }

    #[test]
    fn details_are_capped() {
        let mut c = DayCounts::default();
        for i in 0..(MAX_DETAILS + 50) {
            c.add(
                &PolicyId::none(),
                &fail(
                    ResultType::ValidationFailure,
                    &format!("10.0.{}.{}", i / 256, i % 256),
                ),
                1,
            );
        }
        let p = &c.policies[0];
        assert_eq!(p.failures.len(), MAX_DETAILS + 1);
        assert_eq!(p.failed(), (MAX_DETAILS + 50) as u64);
        assert_eq!(p.failures.last().unwrap().1, 50);
    }

    #[tokio::test]
    async fn store_survives_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c.redb")).unwrap();
        let t = Tlsrpt::new(cache.clone());
        let today = day_of(chrono::Utc::now().timestamp());
        t.record("Example.COM.", &PolicyId::none(), &Outcome::Success);
        assert_eq!(
            t.counts(&today, "example.com").unwrap().policies[0].success,
            1
        );
        t.flush().await.unwrap();
        t.record("example.com", &PolicyId::none(), &Outcome::Success);
        assert_eq!(
            t.counts(&today, "example.com").unwrap().policies[0].success,
            2
        );
        t.flush().await.unwrap();
        drop(t);
        let t = Tlsrpt::new(cache);
        assert_eq!(
            t.counts(&today, "example.com").unwrap().policies[0].success,
            2
        );
        assert_eq!(
            t.keys(None),
            vec![(today.clone(), "example.com".to_string())]
        );
        assert!(t.sent(&today, "example.com").is_none());
        t.mark_sent(&today, "example.com").await.unwrap();
        assert!(t.sent(&today, "example.com").is_some());
        // Finished days are due until sent; today is not.
        let now = chrono::Utc::now().timestamp();
        t.record_at(
            now - 86400,
            "a.example",
            &PolicyId::none(),
            &Outcome::Success,
        );
        t.record_at(
            now - 2 * 86400,
            "b.example",
            &PolicyId::none(),
            &Outcome::Success,
        );
        t.record("c.example", &PolicyId::none(), &Outcome::Success);
        t.flush().await.unwrap();
        let (d1, d2) = (day_of(now - 86400), day_of(now - 2 * 86400));
        assert_eq!(
            t.due(&today),
            vec![
                (d2.clone(), "b.example".to_string()),
                (d1.clone(), "a.example".to_string())
            ]
        );
        t.mark_sent(&d2, "b.example").await.unwrap();
        assert_eq!(t.due(&today), vec![(d1.clone(), "a.example".to_string())]);
        t.prune(&d1).await.unwrap();
        assert_eq!(t.keys(None).len(), 3);
        t.prune("9999-01-01").await.unwrap();
        assert!(t.keys(None).is_empty());
        assert!(t.sent(&today, "example.com").is_none());
    }
}
