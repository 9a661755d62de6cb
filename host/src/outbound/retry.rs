//! Per-host retry hints in the cache database: after a host fails to answer
//! (connect, greeting, EHLO or TLS trouble), it is not tried again until its
//! retry time, so that a dead host does not cost every queued message a
//! timeout. Keyed by `ip:port`; the interval doubles per failure between
//! `retry_min` and `retry_max`.

use crate::cache::Cache;
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("retry_hints");

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Hint {
    failures: u32,
    next_try: i64,
}

/// Host retry hints.
#[derive(Clone)]
pub struct RetryHints {
    cache: Cache,
    min: u64,
    max: u64,
}

impl RetryHints {
    /// Over the cache database.
    pub fn new(cache: Cache, min: u64, max: u64) -> RetryHints {
        RetryHints {
            cache,
            min: min.max(1),
            max: max.max(min.max(1)),
        }
    }

    fn get(&self, k: &str) -> Option<Hint> {
        let tx = self.cache.db().begin_read().ok()?;
        let t = tx.open_table(TABLE).ok()?;
        let v = t.get(k).ok()??;
        serde_json::from_slice(v.value()).ok()
    }

    async fn write(&self, k: &str, h: Option<Hint>) {
        let k = k.to_string();
        let v = h.map(|h| serde_json::to_vec(&h).expect("hint serialises"));
        let r = self
            .cache
            .write(move |db| {
                let tx = db.begin_write()?;
                {
                    let mut t = tx.open_table(TABLE)?;
                    match v {
                        Some(v) => {
                            t.insert(k.as_str(), v.as_slice())?;
                        }
                        None => {
                            t.remove(k.as_str())?;
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write retry hints");
        }
    }

    /// The time before which `addr` should not be tried, if in the future.
    pub fn blocked_until(&self, addr: SocketAddr, now: i64) -> Option<i64> {
        self.get(&addr.to_string())
            .map(|h| h.next_try)
            .filter(|&t| t > now)
    }

    /// Record a failure of `addr`.
    pub async fn failed(&self, addr: SocketAddr, now: i64) {
        let k = addr.to_string();
        let failures = self.get(&k).map_or(0, |h| h.failures) + 1;
        let delay = self
            .min
            .saturating_mul(1u64 << (failures - 1).min(30))
            .min(self.max);
        self.write(
            &k,
            Some(Hint {
                failures,
                next_try: now + delay as i64,
            }),
        )
        .await;
    }

    /// `addr` answered: forget its failures.
    pub async fn succeeded(&self, addr: SocketAddr) {
        let k = addr.to_string();
        if self.get(&k).is_some() {
            self.write(&k, None).await;
        }
    }

    /// Forget every hint (a forced queue run).
    pub async fn clear(&self) {
        let r = self
            .cache
            .write(|db| {
                let tx = db.begin_write()?;
                tx.delete_table(TABLE)?;
                tx.commit()?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot clear retry hints");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backoff_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let h = RetryHints::new(Cache::open(&dir.path().join("c.redb")).unwrap(), 10, 35);
        let a: SocketAddr = "192.0.2.1:25".parse().unwrap();
        assert_eq!(h.blocked_until(a, 1000), None);
        h.failed(a, 1000).await;
        assert_eq!(h.blocked_until(a, 1000), Some(1010));
        h.failed(a, 1000).await;
        assert_eq!(h.blocked_until(a, 1000), Some(1020));
        h.failed(a, 1000).await;
        assert_eq!(h.blocked_until(a, 1000), Some(1035));
        assert_eq!(h.blocked_until(a, 2000), None);
        h.succeeded(a).await;
        assert_eq!(h.blocked_until(a, 1000), None);
        h.failed(a, 1000).await;
        h.clear().await;
        assert_eq!(h.blocked_until(a, 1000), None);
    }
}
