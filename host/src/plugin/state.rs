//! The state of one plugin store: its WASI context, resource table,
//! limits, the plugin it runs and the host services it may reach.

use super::bindings::mailgate::plugin::types::{self as wit, CapError};
use super::engine::Loaded;
use crate::config::plugin::Capability;
use crate::dns::zone;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state.
pub struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: Limits,
    pub(super) plugin: Arc<Loaded>,
    /// Where `kv` entries live (this node's redb, or the pool's Redis).
    pub(super) store: crate::store::Store,
    /// A `kv` call of the current hook found the shared store unavailable
    /// under `on_outage = "defer"`: the hook's answer is not followed and
    /// the command defers.
    pub(super) store_outage: Option<String>,
    pub(super) dns: Option<Resolver>,
    /// The lookup tables the `lookup` capability reads (none offline).
    pub(super) tables: Option<Arc<crate::table::Tables>>,
    /// The header fields `routing.add-header` collected for the recipient
    /// being routed: `Some` only during an `on-route` call.
    pub(super) route_headers: Option<Vec<(String, String)>>,
}

/// Where the dns capability gets its answers.
#[derive(Clone)]
pub enum Resolver {
    /// The host's resolver.
    Live(Arc<crate::dns::Dns>),
    /// A zone file (offline tests: `plugin test --dns`).
    Zone(Arc<zone::Zone>),
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl State {
    pub(super) fn granted(&self, c: Capability) -> Result<(), CapError> {
        if self.plugin.caps.contains(&c) {
            Ok(())
        } else {
            Err(CapError::NotGranted)
        }
    }
}

impl wit::Host for State {}

/// The store's limits ([`StoreLimits`]: memory per instance, instances,
/// trapping on a refused growth), remembering whether a growth was refused
/// since the last call began, so a failure is named by what happened and
/// not by its message.
pub struct Limits {
    inner: StoreLimits,
    /// A memory or table growth was refused.
    pub(super) refused: bool,
    /// The largest linear memory granted, in bytes.
    pub(super) memory: usize,
}

impl Limits {
    /// Wrap `inner`.
    pub fn new(inner: StoreLimits) -> Limits {
        Limits {
            inner,
            refused: false,
            memory: 0,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        match r {
            Ok(true) => self.memory = self.memory.max(desired),
            _ => self.refused = true,
        }
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.table_growing(current, desired, maximum);
        self.refused |= !matches!(r, Ok(true));
        r
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
