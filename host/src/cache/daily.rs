//! Counts per UTC day and domain for the aggregate reports other systems
//! ask for (TLS reports, RFC 8460; DMARC reports, RFC 7489 §7.2). Counts
//! gather in memory and are merged into the cache database every few
//! seconds (and on demand), so a busy gateway writes once per interval,
//! not once per message; a crash loses at most one interval. A second
//! table notes the (day, domain) reports that went out.

use super::Cache;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long counts wait in memory before they are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// What a day's counts for one domain are: mergeable, stored as JSON.
pub trait Tally: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Add every count of `other`.
    fn merge(&mut self, other: &Self);
}

/// The UTC day of unix time `t`, `YYYY-MM-DD`.
pub fn day_of(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn key(day: &str, domain: &str) -> String {
    format!("{day} {domain}")
}

/// Daily counts of one kind, shared by the code that counts and the code
/// that reports.
pub struct Daily<V: Tally> {
    cache: Cache,
    counts: TableDefinition<'static, &'static str, &'static [u8]>,
    sent: TableDefinition<'static, &'static str, u64>,
    what: &'static str,
    pending: Mutex<BTreeMap<(String, String), V>>,
    flushing: tokio::sync::Mutex<()>,
}

impl<V: Tally> Daily<V> {
    /// Over the cache database's `counts` and `sent` tables; starts the
    /// writer (inside a runtime). `what` names the counts in warnings.
    pub fn open(
        cache: Cache,
        counts: TableDefinition<'static, &'static str, &'static [u8]>,
        sent: TableDefinition<'static, &'static str, u64>,
        what: &'static str,
    ) -> Arc<Daily<V>> {
        let t = Arc::new(Daily {
            cache,
            counts,
            sent,
            what,
            pending: Mutex::new(BTreeMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&t);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(FLUSH_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(t) = weak.upgrade() else { break };
                    if let Err(e) = t.flush().await {
                        tracing::warn!(error = %e, "cannot write {} counts", t.what);
                    }
                }
            });
        }
        t
    }

    /// Change the in-memory counts of `domain` for the day of unix time
    /// `t` with `f`.
    pub fn update_at(&self, t: i64, domain: &str, f: impl FnOnce(&mut V)) {
        let day = day_of(t);
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        f(self
            .pending
            .lock()
            .unwrap()
            .entry((day, domain))
            .or_default());
    }

    /// Merge the counts gathered in memory into the database.
    pub async fn flush(&self) -> Result<(), redb::Error> {
        let _one = self.flushing.lock().await;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            return Ok(());
        }
        let table = self.counts;
        let res = self
            .cache
            .write({
                let pending = pending.clone();
                move |db| {
                    let tx = db.begin_write()?;
                    {
                        let mut t = tx.open_table(table)?;
                        for ((day, domain), add) in &pending {
                            let k = key(day, domain);
                            let mut c: V = t
                                .get(k.as_str())?
                                .and_then(|v| serde_json::from_slice(v.value()).ok())
                                .unwrap_or_default();
                            c.merge(add);
                            let v = serde_json::to_vec(&c).expect("counts serialise");
                            t.insert(k.as_str(), v.as_slice())?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                }
            })
            .await;
        if res.is_err() {
            // Keep the counts for the next attempt.
            let mut p = self.pending.lock().unwrap();
            for (k, c) in pending {
                p.entry(k).or_default().merge(&c);
            }
        }
        res
    }

    fn stored(&self, day: &str, domain: &str) -> Option<V> {
        let tx = self.cache.db().begin_read().ok()?;
        let t = tx.open_table(self.counts).ok()?;
        let v = t.get(key(day, domain).as_str()).ok()??;
        serde_json::from_slice(v.value()).ok()
    }

    /// `domain`'s counts for `day`, written and pending.
    pub fn counts(&self, day: &str, domain: &str) -> Option<V> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let pending = self
            .pending
            .lock()
            .unwrap()
            .get(&(day.to_string(), domain.clone()))
            .cloned();
        match (self.stored(day, &domain), pending) {
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => Some(c),
            (Some(mut c), Some(p)) => {
                c.merge(&p);
                Some(c)
            }
        }
    }

    /// Every (day, domain) with counts, oldest first (`day`: only it).
    pub fn keys(&self, day: Option<&str>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .pending
            .lock()
            .unwrap()
            .keys()
            .filter(|(d, _)| day.is_none_or(|x| x == d))
            .cloned()
            .collect();
        if let Ok(tx) = self.cache.db().begin_read()
            && let Ok(t) = tx.open_table(self.counts)
            && let Ok(iter) = t.iter()
        {
            for (k, _) in iter.flatten() {
                if let Some((d, dom)) = k.value().split_once(' ')
                    && day.is_none_or(|x| x == d)
                {
                    out.push((d.to_string(), dom.to_string()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The (day, domain) reports due: days before `today` with counts
    /// and no sent mark, oldest first.
    pub fn due(&self, today: &str) -> Vec<(String, String)> {
        self.keys(None)
            .into_iter()
            .filter(|(d, dom)| d.as_str() < today && self.sent(d, dom).is_none())
            .collect()
    }

    /// When `day`'s report for `domain` went out (or was found to have
    /// nowhere to go).
    pub fn sent(&self, day: &str, domain: &str) -> Option<u64> {
        let tx = self.cache.db().begin_read().ok()?;
        let t = tx.open_table(self.sent).ok()?;
        Some(t.get(key(day, domain).as_str()).ok()??.value())
    }

    /// Note that `day`'s report for `domain` is done.
    pub async fn mark_sent(&self, day: &str, domain: &str) -> Result<(), redb::Error> {
        let k = key(day, domain);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let table = self.sent;
        self.cache
            .write(move |db| {
                let tx = db.begin_write()?;
                tx.open_table(table)?.insert(k.as_str(), now)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Drop counts and sent marks of days before `day`.
    pub async fn prune(&self, day: &str) -> Result<(), redb::Error> {
        let day = day.to_string();
        let (counts, sent) = (self.counts, self.sent);
        self.cache
            .write(move |db| {
                let tx = db.begin_write()?;
                {
                    let mut t = tx.open_table(counts)?;
                    t.retain(|k, _| k.split(' ').next().is_none_or(|d| d >= day.as_str()))?;
                    let mut s = tx.open_table(sent)?;
                    s.retain(|k, _| k.split(' ').next().is_none_or(|d| d >= day.as_str()))?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}
