//! The state of one plugin store: its WASI context, resource table,
//! limits, the plugin it runs and the host services it may reach.

use super::bindings::mailgate::plugin::types::{self as wit, CapError};
use super::engine::Loaded;
use super::zone;
use crate::cache::Cache;
use crate::config::plugin::Capability;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state.
pub struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) plugin: Arc<Loaded>,
    pub(super) cache: Cache,
    pub(super) dns: Option<Resolver>,
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
