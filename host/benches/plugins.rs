//! Cost of plugin hook calls, as a transaction sees it: a fresh instance
//! (pooling allocator), the plugin's `init` with its config, and the call.
//! For the example plugins in Rust, C, Python and JavaScript, and for the
//! SRS plugin's two jobs (forward at routing, reverse at RCPT).
//!
//! The components must be built first (scripts/test.sh builds them all);
//! missing ones are skipped with a note.
//!
//!     cargo bench -p mailgate --bench plugins

use criterion::{Criterion, criterion_group, criterion_main};
use mailgate::cache::Cache;
use mailgate::config::plugin::{Capability, OnFailure, PluginConfig};
use mailgate::plugin::bindings::mailgate::plugin::types as wit;
use mailgate::plugin::{Call, Runtime, SessionPlugins};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn wasm(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is not built", p.display());
        None
    }
}

fn config(name: &str, path: PathBuf, table: &str, caps: Vec<Capability>) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        path,
        on_failure: OnFailure::Continue,
        timeout_ms: 10_000,
        memory: mailgate::config::ByteSize(128 << 20),
        fuel: 0,
        capabilities: caps,
        services: Default::default(),
        directories: Default::default(),
        keys: Default::default(),
        config: table.parse().expect("plugin table"),
    }
}

fn context() -> wit::Context {
    wit::Context {
        client_ip: "192.0.2.1".into(),
        client_port: 50000,
        client_name: None,
        helo: Some("client.example".into()),
        tls: None,
        auth_user: None,
        sender: Some("alice@orig.example".into()),
        recipients: vec!["carol@local.test".into()],
        message_id: None,
        vars: vec![],
        checks: vec![],
    }
}

struct Setup {
    rt: tokio::runtime::Runtime,
    plugins: Arc<Runtime>,
    _dir: tempfile::TempDir,
}

fn setup(cfg: PluginConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::open(&dir.path().join("cache.redb")).unwrap();
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-plugin-cache");
    let compiled =
        mailgate::plugin::cache::CompileCache::open(&compiled, &dir.path().join("compiled.key"))
            .unwrap();
    let plugins = Runtime::new(cache, Some(compiled), None).unwrap();
    let loaded = rt.block_on(plugins.load(&[cfg])).expect("plugin loads");
    plugins.swap(loaded);
    Setup {
        rt,
        plugins,
        _dir: dir,
    }
}

fn hook_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("rcpt hook, fresh instance + init + call");
    g.sample_size(30);
    let table = "reject = [\"bob@local.test\"]";
    for (label, rel) in [
        ("rust", "wasm32-wasip2/release/reject_list.wasm"),
        ("c", "c/reject_list_c.wasm"),
        ("python", "python/reject_list_py.wasm"),
        ("javascript", "js/reject_list_js.wasm"),
    ] {
        let Some(path) = wasm(rel) else { continue };
        let s = setup(config(label, path, table, vec![Capability::Log]));
        let ctx = context();
        g.bench_function(label, |b| {
            b.to_async(&s.rt).iter(|| async {
                let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
                let o = sp.run(&ctx, Call::RcptTo("carol@local.test")).await;
                assert!(o.failures.is_empty() && o.verdict.is_none());
            })
        });
        // The same instance for a second call: what the later hooks of a
        // transaction cost.
        g.bench_function(format!("{label}, second call in the transaction"), |b| {
            b.to_async(&s.rt).iter_custom(|iters| {
                let plugins = Arc::clone(&s.plugins);
                let ctx = ctx.clone();
                async move {
                    let mut sp = SessionPlugins::new(plugins);
                    sp.run(&ctx, Call::RcptTo("x@local.test")).await;
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        sp.run(&ctx, Call::RcptTo("carol@local.test")).await;
                    }
                    start.elapsed()
                }
            })
        });
    }
    g.finish();
}

fn srs_cost(c: &mut Criterion) {
    let Some(path) = wasm("wasm32-wasip2/release/srs.wasm") else {
        return;
    };
    let mut g = c.benchmark_group("srs plugin, fresh instance + init + call");
    let s = setup(config(
        "srs",
        path,
        "domain = \"local.test\"\nsecrets = [\"s3cret\", \"older\"]",
        vec![Capability::Log, Capability::Clock],
    ));
    let ctx = context();
    let info = wit::RouteInfo {
        recipient: "carol@remote.example".into(),
        original: Some("fwd@local.test".into()),
        remote: true,
    };
    g.bench_function("forward (route hook)", |b| {
        b.to_async(&s.rt).iter(|| async {
            let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
            let (d, _, f) = sp.route(&ctx, &info).await;
            assert!(f.is_empty() && d.sender.is_some());
        })
    });
    // An address made by the forward path, reversed at RCPT.
    let srs_addr = s.rt.block_on(async {
        let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
        sp.route(&ctx, &info).await.0.sender.unwrap()
    });
    let mut bounce = ctx.clone();
    bounce.sender = Some(String::new());
    g.bench_function("reverse (rcpt hook)", |b| {
        b.to_async(&s.rt).iter(|| async {
            let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
            let o = sp.run(&bounce, Call::RcptTo(&srs_addr)).await;
            assert!(o.verdict.is_none() && !o.actions.is_empty());
        })
    });
    g.finish();
}

criterion_group!(benches, hook_cost, srs_cost);
criterion_main!(benches);
