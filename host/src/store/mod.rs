//! State that outlives a message and, in a pool, is shared between the
//! gateways: the plugins' `kv` entries here; the TLS session-ticket keys
//! (`tls::shared_tickets`) and rate-limit counters (`inbound::ratelimit`)
//! use the same Redis connection.
//!
//! Without `[store] redis` everything is this node's own (redb). With it,
//! Redis holds the shared state; while it is unavailable,
//! `store.on_outage` decides: `defer` makes what needs it fail with
//! [`StoreError::Unavailable`] (the callers turn that into 4xx), `local`
//! uses this node's redb until Redis answers again.

mod local;
pub mod redis;
pub mod windows;

use crate::cache::Cache;
use crate::config::store::{OnOutage, Store as StoreConfig};
pub use redis::{Redis, SetupError, Unavailable};
use std::sync::Arc;

/// Why a store operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The shared store cannot be reached and `on_outage = "defer"`.
    #[error("{0}; the check defers (store.on_outage = defer)")]
    Unavailable(Unavailable),
    /// The local database failed, or the request was refused.
    #[error("{0}")]
    Failed(String),
}

/// The keys and values a plugin may store.
const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 1 << 20;

/// This node's cache and, in a pool, the shared Redis.
#[derive(Clone, Debug)]
pub struct Store {
    cache: Cache,
    redis: Option<Arc<Redis>>,
}

impl Store {
    /// Only this node's state.
    pub fn local(cache: Cache) -> Store {
        Store { cache, redis: None }
    }

    /// From `[store]`: shared through Redis when `redis` is set. Nothing
    /// is sent to Redis yet.
    pub fn open(cfg: &StoreConfig, cache: Cache) -> Result<Store, SetupError> {
        let redis = match &cfg.redis {
            Some(_) => {
                let r = Arc::new(Redis::new(cfg)?);
                let m = crate::metrics::get();
                m.store_up.set(&[], 1.0);
                m.store_info.set(&[r.endpoint(), cfg.on_outage.name()], 1.0);
                Some(r)
            }
            None => None,
        };
        Ok(Store { cache, redis })
    }

    /// This node's cache database.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The shared Redis, in a pool.
    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    fn kv_name(r: &Redis, ns: &str, key: &str) -> String {
        r.key(&format!("kv:{ns}:{key}"))
    }

    /// What a Redis failure becomes under the policy: `Ok(())` to go on
    /// with the local state, or the error to give.
    fn outage(r: &Redis, e: Unavailable) -> Result<(), StoreError> {
        match r.policy() {
            OnOutage::Defer => Err(StoreError::Unavailable(e)),
            OnOutage::Local => Ok(()),
        }
    }

    /// The value of `key` in namespace `ns` (a plugin's name), unless it
    /// is absent or expired.
    pub async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(r) = &self.redis {
            let cmd = ::redis::cmd("GET").arg(Self::kv_name(r, ns, key)).clone();
            match r.query::<Option<Vec<u8>>>(&cmd).await {
                Ok(v) => return Ok(v),
                Err(e) => Self::outage(r, e)?,
            }
        }
        local::get(&self.cache, ns, key).map_err(StoreError::Failed)
    }

    /// Set `key` in `ns` to `value` for `ttl_seconds` (0: no expiry).
    pub async fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(StoreError::Failed("key or value too large".into()));
        }
        if let Some(r) = &self.redis {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(Self::kv_name(r, ns, key)).arg(value);
            if ttl_seconds > 0 {
                cmd.arg("EX").arg(ttl_seconds);
            }
            match r.query::<()>(&cmd).await {
                Ok(()) => return Ok(()),
                Err(e) => Self::outage(r, e)?,
            }
        }
        local::set(&self.cache, ns, key, value, ttl_seconds)
            .await
            .map_err(StoreError::Failed)
    }

    /// Remove `key` from `ns`.
    pub async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        if let Some(r) = &self.redis {
            let cmd = ::redis::cmd("DEL").arg(Self::kv_name(r, ns, key)).clone();
            match r.query::<()>(&cmd).await {
                Ok(()) => return Ok(()),
                Err(e) => Self::outage(r, e)?,
            }
        }
        local::delete(&self.cache, ns, key)
            .await
            .map_err(StoreError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_entries_expire_and_are_per_namespace() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::local(Cache::open(&d.path().join("c.redb")).unwrap());
        s.kv_set("a", "k", b"v", 0).await.unwrap();
        assert_eq!(
            s.kv_get("a", "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(s.kv_get("b", "k").await.unwrap(), None);
        s.kv_delete("a", "k").await.unwrap();
        assert_eq!(s.kv_get("a", "k").await.unwrap(), None);
        assert!(
            s.kv_set("a", "k", &vec![0; MAX_VALUE + 1], 0)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_defers_or_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(&d.path().join("c.redb")).unwrap();
        let sock = d.path().join("none.sock");
        let mut cfg = StoreConfig {
            redis: Some(format!("unix://{}", sock.display())),
            ..StoreConfig::default()
        };
        let s = Store::open(&cfg, cache.clone()).unwrap();
        let e = s.kv_set("p", "k", b"v", 0).await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("defer"), "{e}");
        cfg.on_outage = OnOutage::Local;
        let s = Store::open(&cfg, cache).unwrap();
        s.kv_set("p", "k", b"v", 0).await.unwrap();
        assert_eq!(
            s.kv_get("p", "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}
