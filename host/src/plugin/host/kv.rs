//! The `kv` interface: a per-plugin key-value store with expiry (grant
//! `kv`), kept in this node's redb or, in a pool, in the shared Redis
//! ([`crate::store`]). A plugin sees the same interface either way.

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;
use crate::store::StoreError;

impl State {
    /// The plugin's error for a store failure; an outage under the defer
    /// policy is also remembered, so the hook's answer is overridden.
    fn store_error(&mut self, e: StoreError) -> CapError {
        if let StoreError::Unavailable(_) = &e {
            self.store_outage = Some(e.to_string());
        }
        CapError::Failed(e.to_string())
    }
}

impl bindings::mailgate::plugin::kv::Host for State {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapError> {
        self.granted(Capability::Kv)?;
        let r = self.store.kv_get(&self.plugin.cfg.name, &key).await;
        r.map_err(|e| self.store_error(e))
    }
    async fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u64) -> Result<(), CapError> {
        self.granted(Capability::Kv)?;
        let r = (self.store)
            .kv_set(&self.plugin.cfg.name, &key, &value, ttl_seconds)
            .await;
        r.map_err(|e| self.store_error(e))
    }
    async fn delete(&mut self, key: String) -> Result<(), CapError> {
        self.granted(Capability::Kv)?;
        let r = self.store.kv_delete(&self.plugin.cfg.name, &key).await;
        r.map_err(|e| self.store_error(e))
    }
}
