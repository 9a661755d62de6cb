//! The plugins' key-value entries in this node's redb cache: the store
//! without `[store] redis`, and the fallback under `on_outage = "local"`.
//! Each value is kept behind its expiry (u64 LE unix seconds, 0: none).

use crate::cache::Cache;

const KV: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("plugin_kv");

fn kv_key(ns: &str, key: &str) -> String {
    format!("{ns}\u{0}{key}")
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of `key` in namespace `ns`, unless absent or expired.
pub(super) fn get(cache: &Cache, ns: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    use redb::ReadableDatabase;
    let k = kv_key(ns, key);
    let tx = cache.db().begin_read().map_err(|e| e.to_string())?;
    let t = match tx.open_table(KV) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let Some(v) = t.get(k.as_str()).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let v = v.value();
    if v.len() < 8 {
        return Ok(None);
    }
    let expires = u64::from_le_bytes(v[..8].try_into().unwrap());
    if expires != 0 && expires <= now() {
        return Ok(None);
    }
    Ok(Some(v[8..].to_vec()))
}

/// Set `key` (committed with an fsync, off the async workers).
pub(super) async fn set(
    cache: &Cache,
    ns: &str,
    key: &str,
    value: &[u8],
    ttl_seconds: u64,
) -> Result<(), String> {
    let expires = if ttl_seconds == 0 {
        0
    } else {
        now() + ttl_seconds
    };
    let mut v = expires.to_le_bytes().to_vec();
    v.extend_from_slice(value);
    let k = kv_key(ns, key);
    cache
        .write(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(KV)?.insert(k.as_str(), v.as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
}

/// Remove `key`.
pub(super) async fn delete(cache: &Cache, ns: &str, key: &str) -> Result<(), String> {
    let k = kv_key(ns, key);
    cache
        .write(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(KV)?.remove(k.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
}
