//! The `lookup` interface: the host's lookup tables, read-only, only those
//! named in the plugin's `tables` (grant `lookup`). A table that cannot
//! answer is `failed`, never "absent".

use crate::config::plugin::Capability;
use crate::plugin::bindings::mailgate::plugin::lookup::{Host, SearchOrder};
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;
use crate::table::search as order;

impl State {
    /// The tables, when the plugin may read `table`.
    fn table(&self, table: &str) -> Result<std::sync::Arc<crate::table::Table>, CapError> {
        self.granted(Capability::Lookup)?;
        if !self.plugin.cfg.tables.iter().any(|t| t == table) {
            return Err(CapError::NotGranted);
        }
        let tables = self
            .tables
            .as_ref()
            .ok_or_else(|| CapError::Failed("no lookup tables here".into()))?;
        tables
            .get(table)
            .map_err(|e| CapError::Failed(e.to_string()))
    }
}

impl Host for State {
    async fn get(&mut self, table: String, key: String) -> Result<Option<String>, CapError> {
        self.table(&table)?
            .get(&key)
            .map_err(|e| CapError::Failed(e.to_string()))
    }

    async fn search(
        &mut self,
        table: String,
        key: String,
        how: SearchOrder,
    ) -> Result<Option<String>, CapError> {
        let t = self.table(&table)?;
        let found = match how {
            SearchOrder::Exact => t.get(&key),
            SearchOrder::Domain => t
                .first(&order::domain_keys(&key))
                .map(|f| f.map(|(_, v)| v)),
            SearchOrder::Address => t
                .first(&order::address_keys(&key))
                .map(|f| f.map(|(_, v)| v)),
            SearchOrder::Ip => match key.parse() {
                Ok(ip) => t.get_ip(ip),
                Err(_) => return Err(CapError::Failed(format!("{key:?} is not an IP address"))),
            },
        };
        found.map_err(|e| CapError::Failed(e.to_string()))
    }
}
