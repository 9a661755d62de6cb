//! The control socket: how `mailgate queue ...` reaches a running server.
//! One request line, one JSON answer, then the connection closes.
//!
//! Requests: `STATUS`, `LIST`, `SHOW <id>`, `REMOVE <id>`, `RETRY <id>`, `RETRY`
//! (every message: `queue retry --all` and `queue flush`), `PLUGINS`,
//! `RELOAD`, `SHADOW {"of": NAME, "path": PATH, "config": {...}}`,
//! `PROMOTE <name>`, `TLSRPT <day> <domain|*> [SEND]` (`report tls`),
//! `DMARCRPT <day> <domain|*> [SEND]` (`report dmarc`).

use crate::log::{Event, MainLog};
use crate::queue::QueueHandle;

/// What a plugin reload needs.
pub struct Reload {
    /// The runtime.
    pub runtime: Arc<crate::plugin::Runtime>,
    /// The config file to re-read (`None`: the embedded default).
    pub config_path: Option<std::path::PathBuf>,
    /// The main log.
    pub log: Arc<MainLog>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A plugin would not load.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
}

impl Reload {
    /// Re-read the config's `[[plugin]]` tables, load them, and switch
    /// atomically; on any error the running set stays.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let cfg = match &self.config_path {
            Some(p) => crate::config::Config::load(p).map_err(ReloadError::from),
            None => Ok(crate::config::Config::default_config()),
        };
        let res = match cfg {
            Ok(cfg) => self
                .runtime
                .load(&cfg.plugins)
                .await
                .map_err(ReloadError::from),
            Err(e) => Err(e),
        };
        match res {
            Ok(set) => {
                let n = set.len();
                for p in &set {
                    self.log.event(&Event::notice(format!(
                        "plugin {} {} loaded (sha256 {})",
                        p.cfg.name,
                        p.version,
                        &p.hash[..16]
                    )));
                }
                self.runtime.swap(set);
                self.log
                    .event(&Event::notice(format!("plugins reloaded: {n} active")));
                Ok(n)
            }
            Err(e) => {
                self.log.event(&Event::notice(format!(
                    "plugin reload refused, the running plugins stay: {e}"
                )));
                Err(e)
            }
        }
    }

    /// Start a shadow from a `SHADOW` request's JSON.
    async fn shadow(&self, args: &str) -> serde_json::Value {
        #[derive(serde::Deserialize)]
        struct Args {
            of: String,
            path: std::path::PathBuf,
            #[serde(default)]
            config: Option<toml::Table>,
        }
        let a: Args = match serde_json::from_str(args) {
            Ok(a) => a,
            Err(e) => return serde_json::json!({ "error": format!("bad SHADOW request: {e}") }),
        };
        match self.runtime.add_shadow(&a.of, a.path, a.config).await {
            Ok(p) => {
                self.log.event(&Event::notice(format!(
                    "plugin {} {} (sha256 {}) shadows {}",
                    p.cfg.name,
                    p.version,
                    &p.hash[..16],
                    a.of
                )));
                serde_json::json!({ "shadow": p.cfg.name, "version": p.version })
            }
            Err(e) => {
                self.log.event(&Event::notice(format!(
                    "plugin shadow for {} refused, the running plugins stay: {e}",
                    a.of
                )));
                serde_json::json!({ "error": e.to_string() })
            }
        }
    }

    /// Promote the shadow of `name`.
    fn promote(&self, name: &str) -> serde_json::Value {
        match self.runtime.promote(name) {
            Ok((shadow, active)) => {
                self.log.event(&Event::notice(format!(
                    "plugin {shadow} promoted: it is now {active}; until the config file says so, \
                     a reload brings the old version back"
                )));
                serde_json::json!({ "promoted": shadow, "as": active })
            }
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    }

    fn list(&self) -> serde_json::Value {
        let set = self.runtime.current();
        serde_json::Value::Array(
            set.iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.cfg.name,
                        "version": p.version,
                        "contract": p.contract.version(),
                        "sha256": p.hash,
                        "path": p.cfg.path,
                        "hooks": p.hooks.iter().map(|h| crate::plugin::hook_name(*h)).collect::<Vec<_>>(),
                        "capabilities": p.cfg.capabilities.iter().map(|c| format!("{c:?}").to_lowercase()).collect::<Vec<_>>(),
                        "on_failure": format!("{:?}", p.cfg.on_failure).to_lowercase(),
                        "calls": p.calls.load(std::sync::atomic::Ordering::Relaxed),
                        "failures": p.failures.load(std::sync::atomic::Ordering::Relaxed),
                        "reuse": p.reuse,
                        "reuse_declared": p.cfg.reuse.is_none() && p.reuse,
                        "instances": p.pool.created.load(std::sync::atomic::Ordering::Relaxed),
                        "reused": p.pool.reused.load(std::sync::atomic::Ordering::Relaxed),
                        "idle": p.pool.idle(),
                        "shadow_of": p.cfg.shadow_of,
                        "compared": p.shadow.compared.load(std::sync::atomic::Ordering::Relaxed),
                        "differed": p.shadow.differed.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect(),
        )
    }
}
use crate::spool::Spool;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Answer one request against a spool (used by the server and, when no
/// server runs, by the CLI directly).
pub async fn answer(
    spool: &Spool,
    log: Option<&MainLog>,
    queue: Option<&QueueHandle>,
    reload: Option<&Reload>,
    request: &str,
) -> serde_json::Value {
    use serde_json::json;
    let mut words = request.split_whitespace();
    match (
        words.next().map(str::to_ascii_uppercase).as_deref(),
        words.next(),
    ) {
        (Some("LIST"), None) => json!({ "messages": spool.list() }),
        (Some("SHOW"), Some(id)) => match (spool.get(id), spool.read_data(id)) {
            (Some(env), Ok(data)) => json!({
                "envelope": env,
                "content": String::from_utf8_lossy(&data),
            }),
            _ => json!({ "error": format!("no message {id} in the queue") }),
        },
        (Some("REMOVE"), Some(id)) => {
            if spool.get(id).is_none() {
                return json!({ "error": format!("no message {id} in the queue") });
            }
            let done = match spool.complete(id) {
                Ok(wait) => wait
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("spool writer stopped"))),
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    if let Some(l) = log {
                        l.event(&Event::message_notice(id, "removed by the administrator"));
                        l.event(&Event::Completed { id: id.to_string() });
                    }
                    json!({ "removed": id })
                }
                Err(e) => json!({ "error": e.to_string() }),
            }
        }
        (Some("RETRY"), id) => match queue {
            Some(q) => {
                if let Some(id) = id
                    && spool.get(id).is_none()
                {
                    return json!({ "error": format!("no message {id} in the queue") });
                }
                json!({ "retried": q.retry(id).await })
            }
            None => json!({ "error": "no server is running; deliveries happen when it starts" }),
        },
        (Some("STATUS"), None) => status(spool, log, reload),
        (Some("PLUGINS"), None) => match reload {
            Some(r) => json!({ "plugins": r.list() }),
            None => json!({ "error": "no server is running" }),
        },
        (Some("SHADOW"), Some(_)) => match reload {
            Some(r) => r.shadow(request.trim_start()[6..].trim()).await,
            None => json!({ "error": "no server is running" }),
        },
        (Some("PROMOTE"), Some(name)) => match reload {
            Some(r) => r.promote(name),
            None => json!({ "error": "no server is running" }),
        },
        (Some("RELOAD"), None) => match reload {
            Some(r) => match r.reload().await {
                Ok(n) => json!({ "reloaded": n }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            None => json!({ "error": "no server is running" }),
        },
        (Some("TLSRPT"), Some(day)) => match queue {
            Some(q) => {
                let domain = words.next().filter(|d| *d != "*");
                let send = words.next().is_some_and(|w| w.eq_ignore_ascii_case("SEND"));
                q.tls_reports(day, domain, send).await
            }
            None => json!({ "error": "no server is running" }),
        },
        (Some("DMARCRPT"), Some(day)) => match queue {
            Some(q) => {
                let domain = words.next().filter(|d| *d != "*");
                let send = words.next().is_some_and(|w| w.eq_ignore_ascii_case("SEND"));
                q.dmarc_reports(day, domain, send).await
            }
            None => json!({ "error": "no server is running" }),
        },
        _ => json!({ "error": format!("bad request {request:?}") }),
    }
}

/// What `mailgate status` shows: version, uptime, listeners, connections,
/// the spool, the plugins and the latest problems in the log.
/// The shared store as `status` shows it: `null` without `[store] redis`.
fn store_status(m: &crate::metrics::Metrics) -> serde_json::Value {
    let Some((labels, _)) = m.store_info.series().into_iter().next() else {
        return serde_json::Value::Null;
    };
    let up = m.store_up.series().first().is_some_and(|(_, v)| *v > 0.0);
    serde_json::json!({
        "redis": labels[0],
        "on_outage": labels[1],
        "available": up,
        "failures": m.store_failures.total(),
    })
}

fn status(spool: &Spool, log: Option<&MainLog>, reload: Option<&Reload>) -> serde_json::Value {
    use serde_json::json;
    let m = crate::metrics::get();
    let q = spool.state();
    let listeners: Vec<_> = m
        .listeners
        .series()
        .into_iter()
        .map(|(k, _)| json!({ "address": k[0], "mode": k[1] }))
        .collect();
    let plugins = reload.map(|r| r.list()).unwrap_or_else(|| json!([]));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": m.uptime().as_secs(),
        "listeners": listeners,
        "connections": {
            "open": m.connections_open.total() as u64,
            "since_start": m.connections.total(),
            "refused": m.connections_refused.total(),
        },
        "messages": {
            "received": m.messages_received.total(),
            "rejections": m.rejections.total(),
        },
        "queue": {
            "messages": q.messages,
            "bytes": q.bytes,
            "pending": q.pending,
            "queued": q.queued,
            "deferred": q.deferred,
            "oldest_age_seconds": q.oldest_age as u64,
        },
        "plugins": plugins,
        "store": store_status(m),
        "last_errors": log.map(|l| l.recent_problems()).unwrap_or_default(),
    })
}

/// Serve the control socket.
pub async fn serve(
    path: &Path,
    spool: Spool,
    log: Arc<MainLog>,
    queue: Option<QueueHandle>,
    reload: Option<Arc<Reload>>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let spool = spool.clone();
            let log = Arc::clone(&log);
            let queue = queue.clone();
            let reload = reload.clone();
            tokio::spawn(async move {
                let _ = one(stream, &spool, &log, queue.as_ref(), reload.as_deref()).await;
            });
        }
    });
    Ok(())
}

async fn one(
    stream: UnixStream,
    spool: &Spool,
    log: &MainLog,
    queue: Option<&QueueHandle>,
    reload: Option<&Reload>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).take_line(&mut line).await?;
    let mut answer =
        serde_json::to_vec(&answer(spool, Some(log), queue, reload, line.trim()).await)?;
    answer.push(b'\n');
    w.write_all(&answer).await?;
    w.shutdown().await
}

trait TakeLine {
    async fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize>;
}

impl<R: tokio::io::AsyncRead + Unpin> TakeLine for BufReader<R> {
    async fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize> {
        let mut limited = tokio::io::AsyncReadExt::take(self, 4096);
        limited.read_line(buf).await
    }
}

/// Send one request to a running server; `None` when none listens.
pub async fn request(path: &Path, req: &str) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(path).await.ok()?;
    s.write_all(format!("{req}\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
        .await
        .ok()?;
    serde_json::from_slice(&buf).ok()
}
