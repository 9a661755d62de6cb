//! One instance of one plugin in its own store, with its budgets: wall
//! time (epoch ticks), memory and fuel, reset before every call.

use super::engine::{Loaded, Runtime};
use super::state::State;
use crate::config::plugin::Capability;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;

/// The epoch tick: budgets are counted in these.
pub(super) const TICK: Duration = Duration::from_millis(5);

/// One instance of one plugin in its own store.
pub struct Instance {
    pub(super) store: Store<State>,
    pub(super) bindings: super::contract::Bindings,
    pub(super) plugin: Arc<Loaded>,
    /// Transactions served (see `pool`).
    pub(super) uses: u32,
    /// A hook call began and has not returned.
    pub(super) in_call: bool,
}

impl Instance {
    /// A fresh store and instance; runs `init` with the plugin's config.
    pub(super) async fn new(rt: &Runtime, plugin: Arc<Loaded>) -> Result<Instance, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.cfg.memory.0 as usize)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let mut wasi = WasiCtxBuilder::new();
        super::sandbox::restrict(&mut wasi, &plugin.caps);
        if plugin.caps.contains(&Capability::Directories) {
            for (name, dir) in &plugin.cfg.directories {
                wasi.preopened_dir(dir, format!("/{name}"), wasmtime_wasi::FsPerms::ReadWrite)
                    .map_err(|e| format!("directory {name} ({}): {e}", dir.display()))?;
            }
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: super::state::Limits::new(limits),
            plugin: Arc::clone(&plugin),
            store: rt.store.clone(),
            store_outage: None,
            dns: rt.dns.clone(),
            tables: rt.tables.clone(),
            route_headers: None,
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = plugin
            .cfg
            .timeout_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(1)
            + 1;
        store.set_epoch_deadline(ticks);
        store
            .set_fuel(if plugin.cfg.fuel == 0 {
                u64::MAX
            } else {
                plugin.cfg.fuel
            })
            .map_err(|e| e.to_string())?;
        let b = plugin
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| format!("instantiate: {e}"))?;
        plugin
            .pool
            .created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut inst = Instance {
            store,
            bindings: b,
            plugin,
            uses: 0,
            in_call: false,
        };
        let cfg = inst.plugin.config_json.clone();
        inst.reset_budget();
        match inst.bindings.init(&mut inst.store, &cfg).await {
            Ok(Ok(())) => Ok(inst),
            Ok(Err(e)) => Err(format!("init refused its config: {e}")),
            Err(e) => Err(format!("init failed: {e}")),
        }
    }

    pub(super) fn reset_budget(&mut self) {
        self.store.data_mut().limits.refused = false;
        self.store.data_mut().store_outage = None;
        let ticks = self
            .plugin
            .cfg
            .timeout_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(1)
            + 1;
        self.store.set_epoch_deadline(ticks);
        let _ = self.store.set_fuel(if self.plugin.cfg.fuel == 0 {
            u64::MAX
        } else {
            self.plugin.cfg.fuel
        });
    }

    /// Its linear memory grew past half the plugin's memory budget.
    pub(super) fn memory_worn(&self) -> bool {
        self.store.data().limits.memory > self.plugin.cfg.memory.0 as usize / 2
    }

    /// What the plugin's manifest says.
    pub(super) async fn describe(&mut self) -> Result<super::contract::Described, String> {
        self.reset_budget();
        self.bindings
            .describe(&mut self.store)
            .await
            .map_err(|e| e.to_string())
    }
}
