//! The client's EHLO cache for early pipelining, in the cache database.
//! Keyed like Exim's: `<ip>:<port>.EHLO` (`[<ip6>]:<port>.EHLO`); the value
//! holds capability bitmaps for cleartext and after TLS, and when it was
//! stored. Entries older than the expiry are ignored and deleted.

use crate::cache::Cache;
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("ehlo_cache");

/// One cached server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix time stored.
    pub stored: i64,
    /// Capabilities before TLS.
    pub clear: u16,
    /// Capabilities after STARTTLS, when seen.
    pub crypted: Option<u16>,
}

/// Exim's key form.
pub fn key(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}.EHLO", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}.EHLO", a.ip(), a.port()),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The EHLO cache.
#[derive(Clone)]
pub struct EhloCache {
    cache: Cache,
    expiry: i64,
}

impl EhloCache {
    /// Over the given database; entries live `expiry` seconds.
    pub fn new(cache: Cache, expiry: u64) -> EhloCache {
        EhloCache {
            cache,
            expiry: expiry as i64,
        }
    }

    /// A fresh entry for `addr`, if any.
    pub fn get(&self, addr: SocketAddr) -> Option<Entry> {
        let k = key(addr);
        let entry: Option<Entry> = (|| {
            let tx = self.cache.db().begin_read().ok()?;
            let t = tx.open_table(TABLE).ok()?;
            let v = t.get(k.as_str()).ok()??;
            serde_json::from_slice(v.value()).ok()
        })();
        match entry {
            Some(e) if now() - e.stored <= self.expiry => Some(e),
            // An expired entry is left for the next put to replace.
            Some(_) | None => None,
        }
    }

    /// Store or replace, from capability bitmaps.
    pub async fn put_bits(&self, addr: SocketAddr, clear: u16, crypted: Option<u16>) {
        let e = Entry {
            stored: now(),
            clear,
            crypted,
        };
        let v = serde_json::to_vec(&e).expect("entry serialises");
        if let Err(e) = self.cache.put(TABLE, key(addr), Some(v)).await {
            tracing::warn!(error = %e, "cannot write the EHLO cache");
        }
    }

    /// Forget `addr`.
    pub async fn remove(&self, addr: SocketAddr) {
        if let Err(e) = self.cache.put(TABLE, key(addr), None).await {
            tracing::warn!(error = %e, "cannot write the EHLO cache");
        }
    }
}
