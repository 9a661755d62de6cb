//! The daemon: opens the spool and caches, starts the queue, the listeners
//! and the control socket, and handles SIGTERM (stop accepting, let sessions
//! in flight finish up to `shutdown_timeout`).

use crate::cache::Cache;
use crate::config::Config;
use crate::inbound::listener::{self, ConnCounts};
use crate::inbound::session::Shared;
use crate::log::{Event, MainLog};
use crate::queue;
use crate::routing::Router;
use crate::spool::{Spool, SpoolOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Run the server until SIGTERM or SIGINT.
pub async fn serve(cfg: Config, config_path: Option<std::path::PathBuf>) -> Result<(), String> {
    let cfg = Arc::new(cfg);
    // Nothing the gateway writes is for other users: mail, keys, caches
    // and logs are at most group-readable (0640, directories 0750); the
    // spool, maildirs and the quarantine are private (0600/0700).
    // SAFETY: umask(2) only sets the process's file creation mask.
    unsafe {
        libc::umask(0o027);
    }
    // Every signal the daemon answers is caught from the start, so none
    // takes its default action (death) in the window before the main
    // loop: a SIGTERM just after READY=1, or just after the control socket
    // appears, is a clean shutdown; SIGUSR1 reopens the main log
    // (logrotate).
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
    // Every socket is bound first, while the process may still be root
    // (ports below 1024), then it becomes server.user for good.
    let mut bound = Vec::new();
    for l in &cfg.listeners {
        let l = l.get_ref();
        let sock = listener::bind(l.address)
            .map_err(|e| format!("cannot listen on {}: {e}", l.address))?;
        bound.push((l.clone(), sock));
    }
    let metrics_sock = match cfg.metrics.listen {
        Some(addr) => Some((
            addr,
            listener::bind(addr).map_err(|e| format!("cannot listen on {addr} (metrics): {e}"))?,
        )),
        None => None,
    };
    if let Some(u) = &cfg.server.user {
        crate::privileges::drop_to(u)?;
    }
    let data = &cfg.server.data_dir;
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let log = Arc::new(
        MainLog::open(
            &cfg.expand_path(&cfg.log.mainlog),
            cfg.log.millisec,
            cfg.log.format,
        )
        .map_err(|e| format!("main log {}: {e}", cfg.log.mainlog))?,
    );
    let files = raise_open_file_limit();
    let wanted = cfg.limits.max_connections as u64 + 2 * cfg.outbound.max_connections as u64 + 64;
    if files < wanted {
        log.event(&Event::notice(format!(
            "warning: the open file limit ({files}) is below what limits.max_connections \
             ({}) needs (about {wanted}); raise it (ulimit -n, LimitNOFILE)",
            cfg.limits.max_connections
        )));
    }
    let spool_dir = cfg.spool_dir();
    let spool = Spool::open(
        &spool_dir,
        SpoolOptions {
            segment_size: cfg.spool.segment_size.0.max(64 * 1024),
        },
    )
    .map_err(|e| format!("spool {}: {e}", spool_dir.display()))?;
    let cache = Cache::open(&cfg.cache_db())
        .map_err(|e| format!("cache {}: {e}", cfg.cache_db().display()))?;
    let store = crate::store::Store::open(&cfg.store, cache.clone()).map_err(|e| e.to_string())?;
    if let Some(r) = store.redis() {
        let to_log = Arc::clone(&log);
        r.on_change(move |text| to_log.event(&Event::notice(text)));
        log.event(&Event::notice(format!(
            "store: shared state in redis at {} (prefix {:?}, on_outage {})",
            r.endpoint(),
            cfg.store.prefix,
            cfg.store.on_outage.name()
        )));
    }
    let (tls, certs) = crate::tls::server_config(&cfg, &store)
        .await
        .map_err(|e| e.to_string())?;
    let router = Arc::new(Router::from_config(&cfg).map_err(|e| e.to_string())?);
    // A table the configuration names must be there from the start.
    router
        .tables()
        .check_config(&cfg)
        .map_err(|(key, e)| format!("{key}: {e}"))?;
    let pending = spool.list().len();
    let plugin_dns = crate::dns::Dns::new(
        &cfg.outbound.nameservers,
        cfg.outbound.dnssec_trust_anchors.as_deref(),
    )
    .ok()
    .map(|d| crate::plugin::Resolver::Live(Arc::new(d)));
    let compiled =
        crate::plugin::cache::CompileCache::open(&cfg.plugin_cache(), &cfg.plugin_cache_key())
            .map_err(|e| tracing::warn!(error = %e, "plugins run without a compile cache"))
            .ok();
    let runtime = crate::plugin::Runtime::new(
        store.clone(),
        compiled,
        plugin_dns,
        Some(Arc::clone(router.tables())),
    )
    .map_err(|e| e.to_string())?;
    let loaded = runtime
        .load(&cfg.plugins)
        .await
        .map_err(|e| e.to_string())?;
    for p in &loaded {
        log.event(&Event::notice(format!(
            "plugin {} {} loaded (sha256 {})",
            p.cfg.name,
            p.version,
            &p.hash[..16]
        )));
    }
    runtime.swap(loaded);
    let settings = crate::outbound::client::ClientSettings {
        helo: cfg
            .outbound
            .helo_name
            .clone()
            .unwrap_or_else(|| cfg.server.hostname.clone()),
        pipe_connect: cfg.outbound.pipe_connect,
        fast_open: cfg.outbound.fast_open,
        connect_timeout: cfg.outbound.connect_timeout.duration(),
        command_timeout: cfg.outbound.command_timeout.duration(),
        data_timeout: cfg.outbound.data_timeout.duration(),
        tls: crate::outbound::tls::ClientTls::new(
            cfg.outbound.tls_resumption,
            cfg.outbound.tls_ca_file.clone(),
        ),
        ehlo_cache: crate::outbound::ehlo_cache::EhloCache::new(
            cache.clone(),
            cfg.outbound.ehlo_cache_expiry.0,
        ),
    };
    // Credentials in a file are read now: an error in it stops the start.
    let logins = crate::outbound::login::Logins::load(&cfg.outbound).map_err(|e| e.to_string())?;
    let outbound = match crate::outbound::deliver::Outbound::new(
        Arc::clone(&cfg),
        settings,
        cache.clone(),
        Arc::clone(router.tables()),
        logins,
    ) {
        Ok(o) => Some(Arc::new(o)),
        Err(e) => {
            log.event(&Event::notice(format!(
                "outbound delivery disabled: {e}; remote mail stays queued"
            )));
            None
        }
    };
    let keys: Vec<_> = cfg.dkim.iter().map(|k| k.get_ref().clone()).collect();
    let signer = match crate::inbound::auth::sign::Signer::new(&keys) {
        Ok(s) if s.is_empty() => None,
        Ok(s) => Some(Arc::new(s)),
        Err(e) => return Err(format!("[[dkim]]: {e}")),
    };
    let dmarcrpt = cfg
        .auth
        .dmarc_reports
        .then(|| crate::dmarcrpt::Dmarcrpt::new(cache.clone()));
    let queue = queue::start(
        Arc::clone(&cfg),
        outbound.clone(),
        spool.clone(),
        Arc::clone(&router),
        Arc::clone(&log),
        Some(Arc::clone(&runtime)),
        queue::Helpers {
            finish: signer.clone().map(|s| s as Arc<dyn crate::queue::Finish>),
            dmarc: dmarcrpt.clone(),
        },
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let sasl = crate::inbound::sasl::Verifier::new(&cfg.smtp_auth, Arc::clone(router.tables()))
        .map(Arc::new);
    let shared = Arc::new(Shared {
        cfg: Arc::clone(&cfg),
        spool: spool.clone(),
        log: Arc::clone(&log),
        router,
        queue,
        tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
        shutdown: stop_rx,
        plugins: Some(Arc::clone(&runtime)),
        auth: outbound.as_ref().filter(|_| cfg.auth.enabled).map(|o| {
            Arc::new(crate::inbound::auth::Authenticator::new(
                o.dns().shared_resolver(),
                cfg.auth
                    .authserv_id
                    .clone()
                    .unwrap_or_else(|| cfg.server.hostname.clone()),
                cfg.auth.dkim_max_signatures,
            ))
        }),
        signer,
        dmarcrpt: dmarcrpt.clone(),
        sasl,
        rate_limits: crate::inbound::ratelimit::RateLimiter::new(
            cfg.rate_limits
                .iter()
                .map(|r| r.get_ref().clone())
                .collect(),
        )
        .shared(store.redis().cloned()),
    });
    let counts = Arc::new(ConnCounts::default());
    let mut addrs = Vec::new();
    for (l, sock) in bound {
        if cfg.server.fast_open_queue > 0
            && let Err(e) = crate::net::fast_open::listen(&sock, cfg.server.fast_open_queue)
        {
            tracing::debug!(address = %l.address, error = %e, "TCP Fast Open unavailable");
        }
        addrs.push(format!("{} ({:?})", l.address, l.mode));
        crate::metrics::get().listening(&l.address.to_string(), l.mode.name());
        tokio::spawn(listener::accept_loop(
            sock,
            l.mode,
            l.auth,
            Arc::clone(&shared),
            Arc::clone(&counts),
        ));
    }
    crate::metrics::register_spool(Box::new(spool.clone()));
    if let Some((addr, sock)) = metrics_sock {
        addrs.push(format!("{addr} (metrics)"));
        crate::metrics::get().listening(&addr.to_string(), "metrics");
        tokio::spawn(crate::metrics::http::serve(sock, shared.shutdown.clone()));
    }
    {
        let log = Arc::clone(&log);
        Arc::clone(&certs).watch(
            cfg.tls
                .reload_interval
                .duration()
                .max(Duration::from_secs(1)),
            move |r| {
                log.event(&Event::notice(match r {
                    Ok(()) => "TLS certificates reloaded (files changed)".to_string(),
                    Err(e) => format!("TLS certificate reload failed, the old ones stay: {e}"),
                }));
            },
        );
    }
    if cfg.tls.ocsp_fetch {
        match (
            crate::tls::sources(&cfg),
            crate::dns::Dns::new(
                &cfg.outbound.nameservers,
                cfg.outbound.dnssec_trust_anchors.as_deref(),
            ),
        ) {
            (Ok(sources), Ok(dns)) => {
                let log = Arc::clone(&log);
                crate::tls::ocsp_fetch::spawn(Arc::new(dns), sources, move |e| {
                    log.event(&Event::notice(format!("{e}; the current staple stays")));
                });
            }
            (Err(e), _) => log.event(&Event::notice(format!("OCSP fetching off: {e}"))),
            (_, Err(e)) => log.event(&Event::notice(format!("OCSP fetching off: {e}"))),
        }
    }
    let reload = Arc::new(crate::control::Reload {
        runtime: Arc::clone(&runtime),
        config_path: config_path.clone(),
        log: Arc::clone(&log),
    });
    crate::control::serve(
        &cfg.control_socket(),
        spool.clone(),
        Arc::clone(&log),
        Some(shared.queue.clone()),
        Some(Arc::clone(&reload)),
    )
    .await
    .map_err(|e| format!("control socket {}: {e}", cfg.control_socket().display()))?;
    log.event(&Event::notice(format!(
        "mailgate daemon started: pid={}, user={}, {} message(s) in the spool, listening on {}",
        std::process::id(),
        crate::privileges::current_user(),
        pending,
        addrs.join(", ")
    )));
    tracing::info!(listeners = %addrs.join(", "), "mailgate ready");
    crate::net::notify::notify("READY=1");

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                match log.reopen() {
                    Ok(()) => log.event(&Event::notice("main log reopened (SIGUSR1)")),
                    Err(e) => log.event(&Event::notice(format!(
                        "main log reopen failed, still writing the old file: {e}"
                    ))),
                }
            }
            _ = hup.recv() => {
                crate::net::notify::notify("RELOADING=1");
                let _ = reload.reload().await;
                let c = Arc::clone(&certs);
                let r = tokio::task::spawn_blocking(move || c.reload(true)).await;
                log.event(&Event::notice(match r {
                    Ok(Ok(_)) => "TLS certificates reloaded (SIGHUP)".to_string(),
                    Ok(Err(e)) => format!("TLS certificate reload failed, the old ones stay: {e}"),
                    Err(e) => format!("TLS certificate reload failed: {e}"),
                }));
                crate::net::notify::notify("READY=1");
            }
        }
    }
    crate::net::notify::notify("STOPPING=1");
    log.event(&Event::notice(
        "mailgate daemon stopping: no new connections; waiting for sessions in flight",
    ));
    let _ = stop_tx.send(true);
    let until = Instant::now() + cfg.server.shutdown_timeout.duration();
    while counts.total() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = counts.total();
    let deliveries = shared
        .queue
        .drain(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5)),
        )
        .await;
    if deliveries > 0 {
        log.event(&Event::notice(format!(
            "{deliveries} delivery(ies) still running at shutdown; they will be retried"
        )));
    }
    shared.queue.flush_reports().await;
    if let Some(o) = &outbound {
        o.close_all();
    }
    spool.close();
    let _ = std::fs::remove_file(cfg.control_socket());
    log.event(&Event::notice(format!(
        "mailgate daemon stopped ({left} session(s) cut off)"
    )));
    Ok(())
}

/// Raise the soft limit on open files to the hard limit (every connection
/// is a descriptor); returns the limit now in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
fn raise_open_file_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return u64::MAX;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
    }
    l.rlim_cur as u64
}
