//! The `kv` interface: a per-plugin key-value store with expiry, kept in
//! the host's redb cache (grant `kv`).

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;

const KV: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("plugin_kv");

fn kv_key(plugin: &str, key: &str) -> String {
    format!("{plugin}\u{0}{key}")
}

impl bindings::mailgate::plugin::kv::Host for State {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapError> {
        use redb::ReadableDatabase;
        self.granted(Capability::Kv)?;
        let k = kv_key(&self.plugin.cfg.name, &key);
        let tx = self
            .cache
            .db()
            .begin_read()
            .map_err(|e| CapError::Failed(e.to_string()))?;
        let t = match tx.open_table(KV) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(CapError::Failed(e.to_string())),
        };
        let Some(v) = t
            .get(k.as_str())
            .map_err(|e| CapError::Failed(e.to_string()))?
        else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() < 8 {
            return Ok(None);
        }
        let expires = u64::from_le_bytes(v[..8].try_into().unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expires != 0 && expires <= now {
            return Ok(None);
        }
        Ok(Some(v[8..].to_vec()))
    }
    async fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u64) -> Result<(), CapError> {
        self.granted(Capability::Kv)?;
        if key.len() > 1024 || value.len() > 1 << 20 {
            return Err(CapError::Failed("key or value too large".into()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expires = if ttl_seconds == 0 {
            0
        } else {
            now + ttl_seconds
        };
        let mut v = expires.to_le_bytes().to_vec();
        v.extend_from_slice(&value);
        let k = kv_key(&self.plugin.cfg.name, &key);
        let r = self
            .cache
            .write(move |db| {
                let tx = db.begin_write()?;
                tx.open_table(KV)?.insert(k.as_str(), v.as_slice())?;
                tx.commit()?;
                Ok(())
            })
            .await;
        r.map_err(|e| CapError::Failed(e.to_string()))
    }
    async fn delete(&mut self, key: String) -> Result<(), CapError> {
        self.granted(Capability::Kv)?;
        let k = kv_key(&self.plugin.cfg.name, &key);
        let r = self
            .cache
            .write(move |db| {
                let tx = db.begin_write()?;
                tx.open_table(KV)?.remove(k.as_str())?;
                tx.commit()?;
                Ok(())
            })
            .await;
        r.map_err(|e| CapError::Failed(e.to_string()))
    }
}
