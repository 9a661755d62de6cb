//! The plugin runtime: WebAssembly components loaded through the WIT
//! contract in `wit/`, run by wasmtime 48 with the pooling allocator, an
//! `InstancePre` per plugin and a fresh `Store` per transaction.
//!
//! Budgets per plugin: wall time per call (epoch interruption), memory
//! (`StoreLimits`) and optional fuel. A trap, timeout, memory exhaustion or
//! malformed answer applies the plugin's failure policy (continue or
//! tempfail), is logged and counted, and never touches other sessions. The
//! loaded set is swapped atomically on reload; sessions in flight keep the
//! set they started with.

pub mod config;
pub mod services;
pub mod zone;

use crate::cache::Cache;
use config::{Capability, OnFailure, PluginConfig};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Generated bindings of the `mailgate-plugin` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "mailgate-plugin",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "mailgate:plugin/types.message": super::MessageData,
            "mailgate:plugin/services.connection": super::services::ServiceConn,
        },
    });
}

use bindings::mailgate::plugin::types::{self as wit, CapError, Hook};

/// The WIT name of a hook.
pub fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Connect => "connect",
        Hook::Helo => "helo",
        Hook::MailFrom => "mail-from",
        Hook::RcptTo => "rcpt-to",
        Hook::Data => "data",
        Hook::Route => "route",
        Hook::Deliver => "deliver",
        Hook::Transport => "transport",
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The epoch tick: budgets are counted in these.
const TICK: Duration = Duration::from_millis(5);

/// The message behind the `message` resource.
pub struct MessageData {
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    body_start: usize,
}

impl MessageData {
    /// Parse the header block of `data` (CRLF lines).
    pub fn new(data: Arc<Vec<u8>>) -> MessageData {
        let end = memchr::memmem::find(&data, b"\r\n\r\n").map_or(data.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&data[..end.min(data.len())]);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        MessageData {
            headers,
            body_start: end.min(data.len()),
            body: data,
        }
    }
}

/// Per-store state.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: Arc<Loaded>,
    cache: Cache,
    dns: Option<Resolver>,
}

/// Where the dns capability gets its answers.
#[derive(Clone)]
pub enum Resolver {
    /// The host's resolver.
    Live(Arc<crate::delivery::hop::Dns>),
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
    fn granted(&self, c: Capability) -> Result<(), CapError> {
        if self.plugin.caps.contains(&c) {
            Ok(())
        } else {
            Err(CapError::NotGranted)
        }
    }
}

impl wit::Host for State {}

impl wit::HostMessage for State {
    async fn headers(&mut self, m: Resource<MessageData>) -> Vec<(String, String)> {
        self.table
            .get(&m)
            .map(|m| m.headers.clone())
            .unwrap_or_default()
    }
    async fn header(&mut self, m: Resource<MessageData>, name: String) -> Vec<String> {
        self.table
            .get(&m)
            .map(|m| {
                m.headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn body_size(&mut self, m: Resource<MessageData>) -> u64 {
        self.table
            .get(&m)
            .map_or(0, |m| (m.body.len() - m.body_start) as u64)
    }
    async fn read_body(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        let Ok(m) = self.table.get(&m) else {
            return vec![];
        };
        let body = &m.body[m.body_start..];
        let start = (offset as usize).min(body.len());
        let end = start.saturating_add(len as usize).min(body.len());
        body[start..end].to_vec()
    }
    async fn size(&mut self, m: Resource<MessageData>) -> u64 {
        self.table.get(&m).map_or(0, |m| m.body.len() as u64)
    }
    async fn read_raw(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        let Ok(m) = self.table.get(&m) else {
            return vec![];
        };
        let start = (offset as usize).min(m.body.len());
        let end = start.saturating_add(len as usize).min(m.body.len());
        m.body[start..end].to_vec()
    }
    async fn drop(&mut self, m: Resource<MessageData>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl bindings::mailgate::plugin::log::Host for State {
    async fn write(&mut self, level: bindings::mailgate::plugin::log::Level, message: String) {
        if self.granted(Capability::Log).is_err() {
            return;
        }
        use bindings::mailgate::plugin::log::Level;
        let name = &self.plugin.cfg.name;
        let message: String = message.chars().take(2000).collect();
        match level {
            Level::Error => tracing::error!(plugin = %name, "{message}"),
            Level::Warn => tracing::warn!(plugin = %name, "{message}"),
            Level::Info => tracing::info!(plugin = %name, "{message}"),
            Level::Debug => tracing::debug!(plugin = %name, "{message}"),
        }
    }
}

impl bindings::mailgate::plugin::clock::Host for State {
    async fn now(&mut self) -> Result<u64, CapError> {
        self.granted(Capability::Clock)?;
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()))
    }
}

impl bindings::mailgate::plugin::random::Host for State {
    async fn bytes(&mut self, len: u32) -> Result<Vec<u8>, CapError> {
        self.granted(Capability::Random)?;
        let mut v = vec![0u8; len.min(1 << 16) as usize];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v)
            .map_err(|_| CapError::Failed("no randomness".into()))?;
        Ok(v)
    }
}

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
        let r: Result<(), redb::Error> = (|| {
            let tx = self.cache.db().begin_write()?;
            tx.open_table(KV)?.insert(k.as_str(), v.as_slice())?;
            tx.commit()?;
            Ok(())
        })();
        r.map_err(|e| CapError::Failed(e.to_string()))
    }
    async fn delete(&mut self, key: String) -> Result<(), CapError> {
        self.granted(Capability::Kv)?;
        let k = kv_key(&self.plugin.cfg.name, &key);
        let r: Result<(), redb::Error> = (|| {
            let tx = self.cache.db().begin_write()?;
            tx.open_table(KV)?.remove(k.as_str())?;
            tx.commit()?;
            Ok(())
        })();
        r.map_err(|e| CapError::Failed(e.to_string()))
    }
}

impl bindings::mailgate::plugin::dns::Host for State {
    async fn lookup(
        &mut self,
        name: String,
        rtype: bindings::mailgate::plugin::dns::RecordType,
    ) -> Result<bindings::mailgate::plugin::dns::Answer, CapError> {
        use bindings::mailgate::plugin::dns::RecordType as R;
        use hickory_resolver::proto::rr::RecordType;
        self.granted(Capability::Dns)?;
        let Some(dns) = self.dns.clone() else {
            return Err(CapError::Failed("no resolver configured".into()));
        };
        let t = match rtype {
            R::A => RecordType::A,
            R::Aaaa => RecordType::AAAA,
            R::Mx => RecordType::MX,
            R::Txt => RecordType::TXT,
            R::Ptr => RecordType::PTR,
            R::Tlsa => RecordType::TLSA,
        };
        // Zone-file answers (offline tests) are not validated.
        let res = match &dns {
            Resolver::Live(d) => d.records_checked(&name, t).await,
            Resolver::Zone(z) => z.lookup(&name, t).map(|r| (r, false)),
        };
        match res {
            Ok((records, secure)) => {
                Ok(bindings::mailgate::plugin::dns::Answer { records, secure })
            }
            Err(e) => Err(CapError::Failed(e)),
        }
    }
}

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
    caps: HashSet<Capability>,
    pre: bindings::MailgatePluginPre<State>,
    config_json: String,
    /// Hook calls made.
    pub calls: AtomicU64,
    /// Failures (traps, timeouts, bad answers).
    pub failures: AtomicU64,
}

/// The runtime: one engine, the current set of plugins.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    current: RwLock<Arc<Vec<Arc<Loaded>>>>,
    cache: Cache,
    compiled_dir: PathBuf,
    dns: Option<Resolver>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Runtime {
    /// Create the engine (pooling allocator, epoch interruption, fuel) and
    /// start the epoch ticker. Compiled code is cached in `compiled_dir`.
    pub fn new(
        cache: Cache,
        compiled_dir: PathBuf,
        dns: Option<Resolver>,
    ) -> Result<Arc<Runtime>, String> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        cfg.consume_fuel(true);
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
        let engine = Engine::new(&cfg).map_err(|e| format!("wasm engine: {e}"))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("WASI: {e}"))?;
        bindings::MailgatePlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| format!("linker: {e}"))?;
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
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            current: RwLock::new(Arc::new(Vec::new())),
            cache,
            compiled_dir,
            dns,
        }))
    }

    fn compile(&self, path: &Path) -> Result<(Component, String), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let hash = hex(digest.as_ref());
        let cached = self.compiled_dir.join(format!("{hash}-wasmtime48.cwasm"));
        if cached.exists() {
            // SAFETY: the file is our own serialisation of this exact
            // component (named by its hash), made by this engine version.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, &cached) } {
                return Ok((c, hash));
            }
        }
        let c = Component::new(&self.engine, &bytes)
            .map_err(|e| format!("{}: not a valid component: {e}", path.display()))?;
        if std::fs::create_dir_all(&self.compiled_dir).is_ok()
            && let Ok(ser) = c.serialize()
        {
            // A name of our own: another process may compile the same
            // component into the same cache at the same time.
            let tmp = cached.with_extension(format!(
                "{}.{}.tmp",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::write(&tmp, ser).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
        }
        Ok((c, hash))
    }

    /// Load (compile, link, ask for the manifest, init) a set of plugins.
    /// Nothing changes on error.
    pub async fn load(&self, cfgs: &[PluginConfig]) -> Result<Vec<Arc<Loaded>>, String> {
        let mut out = Vec::new();
        for cfg in cfgs {
            let (component, hash) = self
                .compile(&cfg.path)
                .map_err(|e| format!("plugin {}: {e}", cfg.name))?;
            let pre = self.linker.instantiate_pre(&component).map_err(|e| {
                format!(
                    "plugin {}: does not fit the mailgate:plugin@0.1.0 contract: {e}",
                    cfg.name
                )
            })?;
            let pre = bindings::MailgatePluginPre::new(pre).map_err(|e| {
                format!(
                    "plugin {}: does not export mailgate:plugin/plugin@0.1.0: {e}",
                    cfg.name
                )
            })?;
            let mut loaded = Loaded {
                cfg: cfg.clone(),
                hash,
                version: String::new(),
                hooks: Vec::new(),
                caps: cfg.capabilities.iter().copied().collect(),
                pre,
                config_json: cfg.config_json(),
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            };
            // Probe: instantiate once, read the manifest, run init.
            let probe = Arc::new(Loaded {
                ..clone_loaded(&loaded)
            });
            let mut inst = Instance::new(self, Arc::clone(&probe))
                .await
                .map_err(|e| format!("plugin {}: {e}", cfg.name))?;
            let m = inst
                .describe()
                .await
                .map_err(|e| format!("plugin {}: describe failed: {e}", cfg.name))?;
            loaded.version = m.version;
            loaded.hooks = m.hooks.into_iter().collect();
            out.push(Arc::new(loaded));
        }
        Ok(out)
    }

    /// Make `plugins` the current set (sessions in flight keep theirs).
    pub fn swap(&self, plugins: Vec<Arc<Loaded>>) {
        *self.current.write().unwrap() = Arc::new(plugins);
    }

    /// The current set.
    pub fn current(&self) -> Arc<Vec<Arc<Loaded>>> {
        Arc::clone(&self.current.read().unwrap())
    }
}

fn clone_loaded(l: &Loaded) -> Loaded {
    Loaded {
        cfg: l.cfg.clone(),
        hash: l.hash.clone(),
        version: l.version.clone(),
        hooks: l.hooks.clone(),
        caps: l.caps.clone(),
        pre: l.pre.clone(),
        config_json: l.config_json.clone(),
        calls: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    }
}

/// One instance of one plugin in its own store.
pub struct Instance {
    store: Store<State>,
    bindings: bindings::MailgatePlugin,
    plugin: Arc<Loaded>,
}

impl Instance {
    /// A fresh store and instance; runs `init` with the plugin's config.
    pub async fn new(rt: &Runtime, plugin: Arc<Loaded>) -> Result<Instance, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.cfg.memory.0 as usize)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let mut wasi = WasiCtxBuilder::new();
        if plugin.caps.contains(&Capability::Directories) {
            for (name, dir) in &plugin.cfg.directories {
                wasi.preopened_dir(dir, format!("/{name}"), wasmtime_wasi::FsPerms::ReadWrite)
                    .map_err(|e| format!("directory {name} ({}): {e}", dir.display()))?;
            }
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            plugin: Arc::clone(&plugin),
            cache: rt.cache.clone(),
            dns: rt.dns.clone(),
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
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("instantiate: {e}"))?;
        let mut inst = Instance {
            store,
            bindings: b,
            plugin,
        };
        let cfg = inst.plugin.config_json.clone();
        inst.reset_budget();
        match inst
            .bindings
            .mailgate_plugin_plugin()
            .call_init(&mut inst.store, &cfg)
            .await
        {
            Ok(Ok(())) => Ok(inst),
            Ok(Err(e)) => Err(format!("init refused its config: {e}")),
            Err(e) => Err(format!("init failed: {e}")),
        }
    }

    fn reset_budget(&mut self) {
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

    async fn describe(&mut self) -> Result<wit::Manifest, String> {
        self.reset_budget();
        self.bindings
            .mailgate_plugin_plugin()
            .call_describe(&mut self.store)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The outcome of running a hook through every plugin that has it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The deciding verdict (`None`: everyone said continue).
    pub verdict: Option<wit::Verdict>,
    /// Actions collected, in plugin order.
    pub actions: Vec<wit::Action>,
    /// Failures, for the log: (plugin, reason, policy).
    pub failures: Vec<(String, String, OnFailure)>,
}

/// Which hook to call, with its arguments.
pub enum Call<'a> {
    /// on-connect
    Connect,
    /// on-helo
    Helo,
    /// on-mail-from
    MailFrom,
    /// on-rcpt-to
    RcptTo(&'a str),
    /// on-data
    Data(Arc<Vec<u8>>),
    /// on-deliver: the transaction and the message as it will be sent.
    Deliver(&'a wit::Delivery, Arc<Vec<u8>>),
}

impl Call<'_> {
    fn hook(&self) -> Hook {
        match self {
            Call::Connect => Hook::Connect,
            Call::Helo => Hook::Helo,
            Call::MailFrom => Hook::MailFrom,
            Call::RcptTo(_) => Hook::RcptTo,
            Call::Data(_) => Hook::Data,
            Call::Deliver(..) => Hook::Deliver,
        }
    }
}

/// The plugins of one session: the set it started with, and one instance
/// per plugin for the current transaction.
pub struct SessionPlugins {
    rt: Arc<Runtime>,
    set: Arc<Vec<Arc<Loaded>>>,
    instances: Vec<Option<Instance>>,
}

impl SessionPlugins {
    /// Snapshot the current set.
    pub fn new(rt: Arc<Runtime>) -> SessionPlugins {
        let set = rt.current();
        let n = set.len();
        SessionPlugins {
            rt,
            set,
            instances: (0..n).map(|_| None).collect(),
        }
    }

    /// True when no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// End of a transaction: the next call gets fresh instances.
    pub fn reset(&mut self) {
        for i in self.instances.iter_mut() {
            *i = None;
        }
    }

    /// Run a hook through the plugins in config order.
    pub async fn run(&mut self, ctx: &wit::Context, call: Call<'_>) -> Outcome {
        let mut out = Outcome::default();
        let hook = call.hook();
        let set = Arc::clone(&self.set);
        for (i, p) in set.iter().enumerate() {
            if !p.hooks.contains(&hook) {
                continue;
            }
            p.calls.fetch_add(1, Ordering::Relaxed);
            let res = self.call_one(i, ctx, &call).await;
            match res {
                Ok(resp) => {
                    out.actions.extend(resp.actions);
                    match resp.verdict {
                        wit::Verdict::Continue => {}
                        v => {
                            out.verdict = Some(v);
                            break;
                        }
                    }
                }
                Err(reason) => {
                    // A failed instance may be poisoned: dropped.
                    self.failed(i);
                    out.failures
                        .push((p.cfg.name.clone(), reason, p.cfg.on_failure));
                    if p.cfg.on_failure == OnFailure::Tempfail {
                        out.verdict = Some(wit::Verdict::Defer(wit::SmtpReply {
                            code: 451,
                            enhanced: "4.3.0".into(),
                            text: "Temporary local problem; try again later".into(),
                        }));
                        break;
                    }
                }
            }
        }
        out
    }

    /// True when some plugin of the set implements `hook`.
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.set.iter().any(|p| p.hooks.contains(&hook))
    }

    async fn instance(&mut self, i: usize) -> Result<&mut Instance, String> {
        if self.instances[i].is_none() {
            let p = Arc::clone(&self.set[i]);
            self.instances[i] = Some(Instance::new(&self.rt, p).await?);
        }
        let inst = self.instances[i].as_mut().expect("instance just created");
        inst.reset_budget();
        Ok(inst)
    }

    /// Count a failure of plugin `i` and drop its (maybe poisoned) instance.
    fn failed(&mut self, i: usize) {
        self.set[i].failures.fetch_add(1, Ordering::Relaxed);
        self.instances[i] = None;
    }

    /// Run the route hook of every plugin that has it, in config order,
    /// each seeing the decision of the one before. Returns the final
    /// decision, the plugin that asked to be the transport (if any), and
    /// failures as in [`Outcome`].
    pub async fn route(
        &mut self,
        ctx: &wit::Context,
        info: &wit::RouteInfo,
    ) -> (
        wit::RouteDecision,
        Option<String>,
        Vec<(String, String, OnFailure)>,
    ) {
        let mut info = info.clone();
        let mut sender = None;
        let mut transport = None;
        let mut failures = Vec::new();
        let set = Arc::clone(&self.set);
        for (i, p) in set.iter().enumerate() {
            if !p.hooks.contains(&Hook::Route) {
                continue;
            }
            p.calls.fetch_add(1, Ordering::Relaxed);
            let r = match self.instance(i).await {
                Ok(inst) => inst
                    .bindings
                    .mailgate_plugin_plugin()
                    .call_on_route(&mut inst.store, ctx, &info)
                    .await
                    .map_err(describe_error),
                Err(e) => Err(e),
            };
            let r = r.and_then(|d| {
                if d.recipient.is_empty()
                    || d.recipient.contains(['\r', '\n', '<', '>'])
                    || d.sender
                        .as_ref()
                        .is_some_and(|s| s.contains(['\r', '\n', '<', '>']))
                {
                    Err("malformed answer: bad address in route decision".to_string())
                } else {
                    Ok(d)
                }
            });
            match r {
                Ok(d) => {
                    info.recipient = d.recipient;
                    if d.sender.is_some() {
                        sender = d.sender;
                    }
                    if d.transport && transport.is_none() {
                        transport = Some(p.cfg.name.clone());
                    }
                }
                Err(reason) => {
                    self.failed(i);
                    failures.push((p.cfg.name.clone(), reason, p.cfg.on_failure));
                }
            }
        }
        (
            wit::RouteDecision {
                recipient: info.recipient,
                sender,
                transport: transport.is_some(),
            },
            transport,
            failures,
        )
    }

    /// Hand a delivery to the transport hook of plugin `name`.
    pub async fn transport(
        &mut self,
        name: &str,
        ctx: &wit::Context,
        d: &wit::Delivery,
        data: Arc<Vec<u8>>,
    ) -> Result<wit::TransportResult, String> {
        let Some(i) = self.set.iter().position(|p| p.cfg.name == name) else {
            return Err(format!("plugin {name} is not loaded"));
        };
        if !self.set[i].hooks.contains(&Hook::Transport) {
            return Err(format!("plugin {name} has no transport hook"));
        }
        self.set[i].calls.fetch_add(1, Ordering::Relaxed);
        let r = async {
            let inst = self.instance(i).await?;
            let res = inst
                .store
                .data_mut()
                .table
                .push(MessageData::new(data))
                .map_err(|e| e.to_string())?;
            let borrowed = Resource::<MessageData>::new_borrow(res.rep());
            let r = inst
                .bindings
                .mailgate_plugin_plugin()
                .call_on_transport(&mut inst.store, ctx, d, borrowed)
                .await;
            let _ = inst.store.data_mut().table.delete(res);
            r.map_err(describe_error)
        }
        .await;
        if r.is_err() {
            self.failed(i);
        }
        r
    }

    async fn call_one(
        &mut self,
        i: usize,
        ctx: &wit::Context,
        call: &Call<'_>,
    ) -> Result<wit::Response, String> {
        let inst = self.instance(i).await?;
        let api = inst.bindings.mailgate_plugin_plugin();
        let r = match call {
            Call::Connect => api.call_on_connect(&mut inst.store, ctx).await,
            Call::Helo => api.call_on_helo(&mut inst.store, ctx).await,
            Call::MailFrom => api.call_on_mail_from(&mut inst.store, ctx).await,
            Call::RcptTo(r) => api.call_on_rcpt_to(&mut inst.store, ctx, r).await,
            Call::Data(d) | Call::Deliver(_, d) => {
                let res = inst
                    .store
                    .data_mut()
                    .table
                    .push(MessageData::new(Arc::clone(d)))
                    .map_err(|e| e.to_string())?;
                let borrowed = Resource::<MessageData>::new_borrow(res.rep());
                let r = match call {
                    Call::Deliver(del, _) => {
                        api.call_on_deliver(&mut inst.store, ctx, del, borrowed)
                            .await
                    }
                    _ => api.call_on_data(&mut inst.store, ctx, borrowed).await,
                };
                let _ = inst.store.data_mut().table.delete(res);
                r
            }
        };
        let resp = r.map_err(describe_error)?;
        validate(&resp)?;
        Ok(resp)
    }
}

fn describe_error(e: wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        return match t {
            wasmtime::Trap::Interrupt => "time budget exceeded".into(),
            wasmtime::Trap::OutOfFuel => "fuel budget exceeded".into(),
            other => format!("trap: {other}"),
        };
    }
    let s = format!("{e:#}");
    if s.contains("forcing trap when growing memory") {
        "memory budget exceeded".into()
    } else {
        s.lines().next().unwrap_or("failure").to_string()
    }
}

/// Refuse malformed answers: bad reply codes, header injection.
fn validate(r: &wit::Response) -> Result<(), String> {
    let check_reply = |rep: &wit::SmtpReply, lo: u16, hi: u16| {
        if !(lo..=hi).contains(&rep.code) {
            return Err(format!(
                "malformed answer: reply code {} out of range",
                rep.code
            ));
        }
        if rep.text.contains(['\r', '\n']) || rep.enhanced.contains(['\r', '\n']) {
            return Err("malformed answer: line break in reply text".into());
        }
        Ok(())
    };
    match &r.verdict {
        wit::Verdict::Reject(rep) => check_reply(rep, 500, 599)?,
        wit::Verdict::Defer(rep) => check_reply(rep, 400, 499)?,
        _ => {}
    }
    for a in &r.actions {
        if let wit::Action::AddHeader((name, value)) = a {
            let bad_name =
                name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
            if bad_name || value.contains(['\r', '\n']) {
                return Err(format!("malformed answer: bad header {name:?}"));
            }
        }
    }
    Ok(())
}

/// Run a plugin offline through every hook it declares, with a context
/// built from a message file, and describe what it answered. Used by
/// `mailgate plugin test`.
pub async fn test_offline(
    cfg: &PluginConfig,
    message: &[u8],
    sender: &str,
    recipients: &[String],
    work_dir: &Path,
    zone: Option<zone::Zone>,
) -> Result<String, String> {
    let cache = Cache::open(&work_dir.join("cache.redb")).map_err(|e| e.to_string())?;
    let dns = zone.map(|z| Resolver::Zone(Arc::new(z)));
    let rt = Runtime::new(cache, work_dir.join("compiled"), dns)?;
    let loaded = rt.load(std::slice::from_ref(cfg)).await?;
    let p = Arc::clone(&loaded[0]);
    rt.swap(loaded);
    let mut out = format!(
        "plugin {} {} (sha256 {})\nhooks: {}\n",
        p.cfg.name,
        p.version,
        p.hash,
        p.hooks
            .iter()
            .map(|h| hook_name(*h))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut sp = SessionPlugins::new(Arc::clone(&rt));
    let mut ctx = wit::Context {
        client_ip: "192.0.2.1".into(),
        client_port: 50000,
        client_name: None,
        helo: Some("client.example".into()),
        tls: None,
        auth_user: None,
        sender: None,
        recipients: vec![],
        message_id: None,
        vars: vec![],
        checks: vec![],
    };
    let hooked = |h: Hook| p.hooks.contains(&h);
    let show = |hook: &str, o: &Outcome| {
        let mut s = format!("{hook}: ");
        s.push_str(&match &o.verdict {
            None => "continue".to_string(),
            Some(v) => verdict_text(v),
        });
        for a in &o.actions {
            s.push_str(&format!("\n    {}", action_text(a)));
        }
        for (_, why, policy) in &o.failures {
            s.push_str(&format!("\n    FAILED: {why} (policy {policy:?})"));
        }
        s.push('\n');
        s
    };
    let apply_vars = |ctx: &mut wit::Context, o: &Outcome| {
        for a in &o.actions {
            if let wit::Action::SetVar((k, v)) = a {
                ctx.vars.retain(|(n, _)| n != k);
                ctx.vars.push((k.clone(), v.clone()));
            }
        }
    };
    let mark = |h: Hook, name: String| {
        if hooked(h) {
            name
        } else {
            format!("{name} (not hooked)")
        }
    };
    let o = sp.run(&ctx, Call::Connect).await;
    out.push_str(&show(&mark(Hook::Connect, "connect".into()), &o));
    apply_vars(&mut ctx, &o);
    let o = sp.run(&ctx, Call::Helo).await;
    out.push_str(&show(&mark(Hook::Helo, "helo".into()), &o));
    apply_vars(&mut ctx, &o);
    ctx.sender = Some(sender.to_string());
    let o = sp.run(&ctx, Call::MailFrom).await;
    out.push_str(&show(
        &mark(Hook::MailFrom, format!("mail-from <{sender}>")),
        &o,
    ));
    apply_vars(&mut ctx, &o);
    for r in recipients {
        let o = sp.run(&ctx, Call::RcptTo(r)).await;
        out.push_str(&show(&mark(Hook::RcptTo, format!("rcpt-to <{r}>")), &o));
        apply_vars(&mut ctx, &o);
        if o.verdict
            .as_ref()
            .is_none_or(|v| !matches!(v, wit::Verdict::Reject(_) | wit::Verdict::Defer(_)))
        {
            ctx.recipients.push(r.clone());
        }
    }
    let mut data = message.to_vec();
    if !data.windows(2).any(|w| w == b"\r\n") {
        // A file with LF line endings: canonicalise to CRLF.
        data = String::from_utf8_lossy(message)
            .replace('\n', "\r\n")
            .into_bytes();
    }
    let data = Arc::new(data);
    let o = sp.run(&ctx, Call::Data(Arc::clone(&data))).await;
    out.push_str(&show(&mark(Hook::Data, "data".into()), &o));
    apply_vars(&mut ctx, &o);
    // Routing and delivery, as if every recipient were remote.
    ctx.message_id = Some("offline-test".into());
    let mut transports: Vec<(String, String, Option<String>)> = Vec::new();
    let mut outgoing: Vec<(String, String)> = Vec::new();
    for r in ctx.recipients.clone() {
        let info = wit::RouteInfo {
            recipient: r.clone(),
            original: None,
            remote: true,
        };
        if !hooked(Hook::Route) {
            out.push_str(&format!("route <{r}> (not hooked): unchanged\n"));
            outgoing.push((sender.to_string(), r));
            continue;
        }
        let (d, transport, failures) = sp.route(&ctx, &info).await;
        let mut line = format!("route <{r}>: recipient <{}>", d.recipient);
        if let Some(s) = &d.sender {
            line.push_str(&format!(", sender <{s}>"));
        }
        if let Some(t) = &transport {
            line.push_str(&format!(", transport {t}"));
        }
        for (_, why, policy) in &failures {
            line.push_str(&format!("\n    FAILED: {why} (policy {policy:?})"));
        }
        out.push_str(&line);
        out.push('\n');
        let s = d.sender.unwrap_or_else(|| sender.to_string());
        match transport {
            Some(t) => transports.push((t, d.recipient, Some(s))),
            None => outgoing.push((s, d.recipient)),
        }
    }
    for (s, r) in &outgoing {
        let del = wit::Delivery {
            message_id: "offline-test".into(),
            sender: s.clone(),
            recipients: vec![r.clone()],
            domain: r.rsplit_once('@').map_or("", |x| x.1).to_lowercase(),
        };
        let o = sp.run(&ctx, Call::Deliver(&del, Arc::clone(&data))).await;
        out.push_str(&show(&mark(Hook::Deliver, format!("deliver <{r}>")), &o));
    }
    for (t, r, s) in transports {
        let del = wit::Delivery {
            message_id: "offline-test".into(),
            sender: s.unwrap_or_default(),
            recipients: vec![r.clone()],
            domain: String::new(),
        };
        let line = match sp.transport(&t, &ctx, &del, Arc::clone(&data)).await {
            Ok(wit::TransportResult::Delivered(x)) => format!("delivered: {x}"),
            Ok(wit::TransportResult::Deferred(x)) => format!("deferred: {x}"),
            Ok(wit::TransportResult::Failed(x)) => format!("failed: {x}"),
            Err(e) => format!("FAILED: {e}"),
        };
        out.push_str(&format!("transport <{r}>: {line}\n"));
    }
    out.push_str(&format!(
        "calls: {}, failures: {}\n",
        p.calls.load(Ordering::Relaxed),
        p.failures.load(Ordering::Relaxed)
    ));
    Ok(out)
}

fn verdict_text(v: &wit::Verdict) -> String {
    match v {
        wit::Verdict::Continue => "continue".into(),
        wit::Verdict::Accept => "accept".into(),
        wit::Verdict::Reject(r) => format!("reject {} {} {}", r.code, r.enhanced, r.text),
        wit::Verdict::Defer(r) => format!("defer {} {} {}", r.code, r.enhanced, r.text),
        wit::Verdict::Discard => "discard".into(),
        wit::Verdict::Quarantine(why) => format!("quarantine ({why})"),
    }
}

fn action_text(a: &wit::Action) -> String {
    match a {
        wit::Action::AddHeader((n, v)) => format!("add-header {n}: {v}"),
        wit::Action::RemoveHeader(n) => format!("remove-header {n}"),
        wit::Action::SetSender(s) => format!("set-sender <{s}>"),
        wit::Action::AddRecipient(r) => format!("add-recipient <{r}>"),
        wit::Action::RemoveRecipient(r) => format!("remove-recipient <{r}>"),
        wit::Action::SetVar((k, v)) => format!("set-var {k}={v}"),
        wit::Action::AddAuthResult(e) => format!("add-auth-result {e}"),
        wit::Action::Redirect(r) => format!("redirect <{r}>"),
    }
}
