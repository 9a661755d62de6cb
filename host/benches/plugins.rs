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
        // Fresh unless a case says otherwise, whatever the plugin declares.
        reuse: Some(false),
        capabilities: caps,
        services: Default::default(),
        directories: Default::default(),
        keys: Default::default(),
        tables: Vec::new(),
        shadow_of: None,
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
    setup_with(cfg, None)
}

fn setup_with(cfg: PluginConfig, dns: Option<mailgate::plugin::state::Resolver>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::open(&dir.path().join("cache.redb")).unwrap();
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-plugin-cache");
    // A key that outlives the run, so later runs load the compiled code
    // instead of compiling every component again.
    let key = compiled.with_extension("key");
    let compiled = mailgate::plugin::cache::CompileCache::open(&compiled, &key).unwrap();
    let plugins = Runtime::new(
        mailgate::store::Store::local(cache),
        Some(compiled),
        dns,
        None,
    )
    .unwrap();
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
        let s = setup(config(
            label,
            path,
            table,
            vec![Capability::Log, Capability::Lookup],
        ));
        let ctx = context();
        g.bench_function(label, |b| {
            b.to_async(&s.rt).iter(|| async {
                let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
                let o = sp.run(&ctx, Call::RcptTo("carol@local.test")).await;
                assert!(o.failures.is_empty() && o.verdict.is_none());
            })
        });
        // `reuse = true`: each transaction takes the instance an earlier
        // one gave back (no instantiation, no init), as the gateway runs
        // plugins that declare no per-transaction state.
        let mut reused = config(
            label,
            wasm(rel).unwrap(),
            table,
            vec![Capability::Log, Capability::Lookup],
        );
        reused.reuse = Some(true);
        let r = setup(reused);
        g.bench_function(
            format!("{label}, reused instance (a new transaction)"),
            |b| {
                b.to_async(&r.rt).iter(|| async {
                    let mut sp = SessionPlugins::new(Arc::clone(&r.plugins));
                    let o = sp.run(&ctx, Call::RcptTo("carol@local.test")).await;
                    assert!(o.failures.is_empty() && o.verdict.is_none());
                })
            },
        );
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
            let d = sp.route(&ctx, &info).await;
            assert!(d.failures.is_empty() && d.sender.is_some());
        })
    });
    // An address made by the forward path, reversed at RCPT.
    let srs_addr = s.rt.block_on(async {
        let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
        sp.route(&ctx, &info).await.sender.unwrap()
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

/// The ARC plugin: validating a message without a chain (what a fresh
/// instance and the parsing cost) and one with one ARC set (plus a body
/// hash and two RSA-2048 verifications in the host), and sealing a copy
/// (a body hash and two RSA-2048 signatures).
fn arc_cost(c: &mut Criterion) {
    let Some(path) = wasm("wasm32-wasip2/release/arc.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = mailgate::inbound::auth::keygen::generate(false, 2048).unwrap();
    let pem = dir.path().join("seal.pem");
    std::fs::write(&pem, &key.pem).unwrap();
    let zone = format!(
        "$ORIGIN fwd.test.\n$TTL 300\n{}\n",
        mailgate::inbound::auth::keygen::zone_line("fwd.test", "arc", &key.record)
    );
    let zone = mailgate::dns::zone::Zone::parse(&zone, "bench").unwrap();
    let mut cfg = config(
        "arc",
        path,
        "authserv_id = \"fwd.test\"\nseal = { domain = \"fwd.test\", selector = \"arc\", key = \"seal\" }",
        vec![
            Capability::Log,
            Capability::Dns,
            Capability::Crypto,
            Capability::Clock,
        ],
    );
    cfg.keys.insert("seal".into(), pem);
    // As the gateway should run it: instances reused between transactions.
    cfg.reuse = Some(true);
    let s = setup_with(
        cfg,
        Some(mailgate::plugin::state::Resolver::Zone(Arc::new(zone))),
    );
    let ctx = context();
    let body: String = (0..12)
        .map(|i| format!("Line {i:02} of a message of about one kibibyte, signed and sealed.\r\n"))
        .collect();
    let plain = format!(
        "Authentication-Results: fwd.test; spf=pass smtp.mailfrom=a@bench.test\r\nFrom: <a@bench.test>\r\nTo: <x@remote.test>\r\nSubject: bench\r\n\r\n{body}"
    );
    let d = wit::Delivery {
        message_id: "x".into(),
        sender: "a@bench.test".into(),
        recipients: vec!["x@remote.test".into()],
        domain: "remote.test".into(),
    };
    let sealed = s.rt.block_on(async {
        let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
        let o = sp
            .run(
                &ctx,
                Call::Deliver(&d, Arc::new(plain.clone().into_bytes())),
            )
            .await;
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        let mut top = String::new();
        for a in o.actions {
            if let wit::Action::AddHeader((n, v)) = a {
                top.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        assert!(top.contains("ARC-Seal: i=1"), "{top}");
        top + &plain
    });
    let mut g = c.benchmark_group("arc plugin, reused instance");
    for (label, msg) in [
        ("validate, no chain", &plain),
        ("validate, one ARC set", &sealed),
    ] {
        let data = Arc::new(msg.clone().into_bytes());
        let want = if label.ends_with("set") {
            "arc=pass"
        } else {
            "arc=none"
        };
        g.bench_function(label, |b| {
            b.to_async(&s.rt).iter(|| async {
                let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
                let o = sp.run(&ctx, Call::Data(Arc::clone(&data))).await;
                assert!(
                    o.actions
                        .iter()
                        .any(|a| matches!(a, wit::Action::AddAuthResult(e) if e.starts_with(want)))
                );
            })
        });
    }
    let data = Arc::new(plain.into_bytes());
    g.bench_function("seal a copy", |b| {
        b.to_async(&s.rt).iter(|| async {
            let mut sp = SessionPlugins::new(Arc::clone(&s.plugins));
            let o = sp.run(&ctx, Call::Deliver(&d, Arc::clone(&data))).await;
            assert_eq!(o.actions.len(), 3);
        })
    });
    g.finish();
}

criterion_group!(benches, hook_cost, srs_cost, arc_cost);
criterion_main!(benches);
