//! The wasmtime engine (pooling allocator, epoch interruption, fuel), the
//! compile cache, and the loaded plugin set that reloads swap atomically.

use super::bindings;
use super::bindings::mailgate::plugin::types::Hook;
use super::cache::CompileCache;
use super::error::PluginError;
use super::host::crypto::HeldKey;
use super::instance::Instance;
use super::instance::TICK;
use super::pool::Pool;
use super::state::{Resolver, State};
use crate::config::plugin::{Capability, PluginConfig};
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// A loaded plugin.
pub struct Loaded {
    /// Its configuration.
    pub cfg: PluginConfig,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Version from its manifest.
    pub version: String,
    /// Hooks from its manifest.
    pub hooks: Vec<Hook>,
    pub(super) caps: HashSet<Capability>,
    /// Its host-held signing keys (`keys`), by name.
    pub(super) keys: HashMap<String, Arc<HeldKey>>,
    pub(super) pre: super::contract::Pre,
    /// The contract its component implements.
    pub contract: super::contract::Contract,
    pub(super) config_json: String,
    /// Hook calls made.
    pub calls: AtomicU64,
    /// Failures (traps, timeouts, bad answers).
    pub failures: AtomicU64,
    /// Whether an instance serves more than one transaction: its config's
    /// `reuse`, or else what its manifest declares.
    pub reuse: bool,
    /// Its idle instances, when it is reused.
    pub pool: Pool,
    /// Comparisons with its active plugin, when it is a shadow.
    pub shadow: super::shadow::ShadowStats,
}

/// The runtime: one engine, the current set of plugins.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    /// The linker of contract 0.2 components.
    pub(super) linker_v2: Linker<State>,
    pub(super) current: RwLock<Arc<Vec<Arc<Loaded>>>>,
    pub(super) store: Store,
    pub(super) compiled: Option<CompileCache>,
    pub(super) dns: Option<Resolver>,
    pub(super) tables: Option<Arc<crate::table::Tables>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Runtime {
    /// Create the engine (pooling allocator, epoch interruption, fuel) and
    /// start the epoch ticker. Compiled code is kept in `compiled` (none:
    /// every load compiles). The `lookup` capability reads `tables`; the
    /// `kv` capability keeps its entries in `store`.
    pub fn new(
        store: Store,
        compiled: Option<CompileCache>,
        dns: Option<Resolver>,
        tables: Option<Arc<crate::table::Tables>>,
    ) -> Result<Arc<Runtime>, PluginError> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        cfg.consume_fuel(true);
        // MAILGATE_PERFMAP=1: name the plugins' compiled functions for
        // `perf` (/tmp/perf-PID.map), to see where a plugin spends its time.
        if std::env::var_os("MAILGATE_PERFMAP").is_some() {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(1000)
            .total_core_instances(2000)
            .total_memories(1000)
            .total_tables(2000)
            .total_stacks(1000)
            .max_memory_size(256 << 20)
            // Per-transaction instances make reset cost matter: reset only
            // the pages an instance dirtied, with memset, instead of
            // madvise (whose TLB shootdowns hit every core), and batch the
            // decommits that remain.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .decommit_batch_size(32);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(format!("WASI: {e}")))?;
        bindings::MailgatePlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("linker: {e}")))?;
        let mut linker_v2: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_v2)
            .map_err(|e| PluginError::Engine(format!("WASI: {e}")))?;
        super::bindings_v2::Host_::add_to_linker::<State, HasSelf<State>>(&mut linker_v2, |s| s)
            .map_err(|e| PluginError::Engine(format!("linker (0.2): {e}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("epoch thread: {e}")))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            linker_v2,
            current: RwLock::new(Arc::new(Vec::new())),
            store,
            compiled,
            dns,
            tables,
        }))
    }

    fn compile(&self, path: &Path) -> Result<(Component, String), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let hash = hex(digest.as_ref());
        if let Some(cc) = &self.compiled {
            match cc.load(&hash) {
                Ok(Some(code)) => {
                    // SAFETY: these bytes are what this gateway serialised
                    // for this exact component with this wasmtime version:
                    // the keyed digest over them was verified in memory (see
                    // `plugin::cache`), so nobody else's code is loaded.
                    match unsafe { Component::deserialize(&self.engine, &code) } {
                        Ok(c) => return Ok((c, hash)),
                        Err(e) => {
                            tracing::warn!(plugin = %path.display(), error = %e, "cached code did not load; compiling")
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(plugin = %path.display(), error = %e, "compiled code in the cache refused; compiling")
                }
            }
        }
        let c = Component::new(&self.engine, &bytes)
            .map_err(|e| format!("{}: not a valid component: {e}", path.display()))?;
        if let Some(cc) = &self.compiled
            && let Ok(ser) = c.serialize()
            && let Err(e) = cc.store(&hash, &ser)
        {
            tracing::warn!(plugin = %path.display(), error = %e, "cannot cache compiled code");
        }
        Ok((c, hash))
    }

    /// Load (compile, link, ask for the manifest, init) a set of plugins.
    /// Nothing changes on error.
    pub async fn load(&self, cfgs: &[PluginConfig]) -> Result<Vec<Arc<Loaded>>, PluginError> {
        let mut out = Vec::new();
        for cfg in cfgs {
            let fail = |reason: String| PluginError::Load {
                plugin: cfg.name.clone(),
                reason,
            };
            let (component, hash) = self.compile(&cfg.path).map_err(fail)?;
            use super::contract::{Contract, Pre};
            let pre = match super::contract::contract_of(&component) {
                Some(Contract::V0_2) => Pre::V2(Box::new(
                    super::contract::link_v2(&self.linker_v2, &component, &cfg.capabilities)
                        .map_err(fail)?,
                )),
                Some(Contract::V0_1) => {
                    let pre = self.linker.instantiate_pre(&component).map_err(|e| {
                        fail(format!(
                            "does not fit the mailgate:plugin@0.1.0 contract: {e}"
                        ))
                    })?;
                    Pre::V1(bindings::MailgatePluginPre::new(pre).map_err(|e| {
                        fail(format!("does not export mailgate:plugin/plugin@0.1.0: {e}"))
                    })?)
                }
                None => {
                    return Err(fail(
                        "exports neither mailgate:plugin/plugin@0.2.0 nor @0.1.0: not a mailgate plugin, or built for another contract version"
                            .into(),
                    ));
                }
            };
            let mut loaded = Loaded {
                cfg: cfg.clone(),
                hash,
                version: String::new(),
                hooks: Vec::new(),
                caps: cfg.capabilities.iter().copied().collect(),
                keys: super::host::crypto::load_keys(&cfg.keys).map_err(fail)?,
                contract: pre.contract(),
                pre,
                config_json: cfg.config_json(),
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                reuse: false,
                pool: Pool::default(),
                shadow: Default::default(),
            };
            // Probe: instantiate once, read the manifest, run init.
            let probe = Arc::new(Loaded {
                ..clone_loaded(&loaded)
            });
            let mut inst = Instance::new(self, Arc::clone(&probe))
                .await
                .map_err(fail)?;
            let m = inst
                .describe()
                .await
                .map_err(|e| fail(format!("describe failed: {e}")))?;
            loaded.version = m.version;
            loaded.reuse = cfg.reuse.unwrap_or(m.reusable);
            loaded.hooks = match loaded.pre.exported_hooks() {
                Some(h) => h,
                None => m.hooks.unwrap_or_default(),
            };
            out.push(Arc::new(loaded));
        }
        Ok(out)
    }

    /// Make `plugins` the current set (sessions in flight keep theirs).
    /// The idle instances of plugins that left the set are dropped.
    pub fn swap(&self, plugins: Vec<Arc<Loaded>>) {
        let kept: Vec<Arc<Loaded>> = plugins.clone();
        let old = std::mem::replace(&mut *self.current.write().unwrap(), Arc::new(plugins));
        for p in old.iter() {
            if !kept.iter().any(|k| Arc::ptr_eq(k, p)) {
                p.pool.retire();
            }
        }
    }

    /// The current set.
    pub fn current(&self) -> Arc<Vec<Arc<Loaded>>> {
        Arc::clone(&self.current.read().unwrap())
    }
}

impl Drop for Runtime {
    /// Idle instances hold their plugin: retiring the pools breaks that
    /// cycle.
    fn drop(&mut self) {
        if let Ok(set) = self.current.get_mut() {
            for p in set.iter() {
                p.pool.retire();
            }
        }
    }
}

pub(super) fn clone_loaded(l: &Loaded) -> Loaded {
    Loaded {
        cfg: l.cfg.clone(),
        hash: l.hash.clone(),
        version: l.version.clone(),
        hooks: l.hooks.clone(),
        caps: l.caps.clone(),
        keys: l.keys.clone(),
        pre: l.pre.clone(),
        contract: l.contract,
        config_json: l.config_json.clone(),
        calls: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        reuse: l.reuse,
        pool: Pool::default(),
        shadow: Default::default(),
    }
}
