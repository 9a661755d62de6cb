//! The Redis connection of a pool: one multiplexed connection (redis-rs's
//! connection manager, which reconnects by itself), every command bounded
//! by `store.timeout_ms`, and a health state: after a failure, commands
//! fail at once for `store.retry_interval` instead of each waiting for the
//! timeout, and the changes between available and unavailable are
//! reported once each (to the main log).

use crate::config::store::{OnOutage, Store as StoreConfig};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Redis could not answer: down, too slow, or refusing us.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis at {endpoint} failed: {reason}")]
pub struct Unavailable {
    /// Where (host:port, no credentials).
    pub endpoint: String,
    /// Why.
    pub reason: String,
}

/// A problem with `[store]` found at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL does not parse.
    #[error("store.redis: {0}")]
    Url(String),
    /// The password file is unreadable or exposed.
    #[error("store.password_file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The CA file is unreadable.
    #[error("store.ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

#[derive(Debug)]
struct Health {
    /// Since when commands fail (`None`: available).
    down_since: Option<Instant>,
    /// While down: when the next command may try Redis again.
    next_try: Instant,
}

/// The shared Redis of a pool.
pub struct Redis {
    conn: ConnectionManager,
    endpoint: String,
    prefix: String,
    timeout: Duration,
    retry: Duration,
    policy: OnOutage,
    health: Mutex<Health>,
    /// Told about changes of availability (the main log).
    report: OnceLock<Box<dyn Fn(String) + Send + Sync>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Read the password: the first line of a file only its owner can read.
fn password(path: &std::path::Path) -> Result<String, SetupError> {
    use std::os::unix::fs::PermissionsExt;
    let e = |reason: String| SetupError::PasswordFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|x| e(format!("cannot read: {x}")))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(e(format!(
            "readable by group or others (mode {mode:04o}); make it 0600"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|x| e(format!("cannot read: {x}")))?;
    let pw = text.lines().next().unwrap_or("").trim_end().to_string();
    if pw.is_empty() {
        return Err(e("empty".into()));
    }
    Ok(pw)
}

/// Check `[store]` as `mailgate config check` does: the URL parses, the
/// password file is private and readable, the CA file reads. Nothing is
/// sent to Redis.
pub fn check(cfg: &StoreConfig) -> Result<(), SetupError> {
    match cfg.redis {
        Some(_) => client(cfg).map(drop),
        None => Ok(()),
    }
}

/// The client for `[store]` and where it connects (no credentials).
fn client(cfg: &StoreConfig) -> Result<(redis::Client, String), SetupError> {
    use redis::IntoConnectionInfo;
    let url = cfg.redis.as_deref().unwrap_or_default();
    let mut info = url
        .into_connection_info()
        .map_err(|e| SetupError::Url(e.to_string()))?;
    let mut settings = info.redis_settings().clone();
    if let Some(f) = &cfg.password_file {
        settings = settings.set_password(password(f)?);
    }
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    // No CLIENT SETINFO: Redis before 7.2 does not know it, and an ACL
    // user need not be allowed it.
    info = info.set_redis_settings(settings.set_skip_set_lib_name());
    let endpoint = info.addr().to_string();
    let client = match &cfg.ca_file {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| SetupError::CaFile {
                path: ca.display().to_string(),
                reason: e.to_string(),
            })?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| SetupError::Url(e.to_string()))?;
    Ok((client, endpoint))
}

impl Redis {
    /// Set up the connection from `[store]` (`redis` must be set). Nothing
    /// is sent yet: the first command connects, so a gateway starts while
    /// Redis is down and the outage policy applies meanwhile. Must run
    /// inside the tokio runtime.
    pub fn new(cfg: &StoreConfig) -> Result<Redis, SetupError> {
        let (client, endpoint) = client(cfg)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = client
            .get_connection_manager_lazy(manager)
            .map_err(|e| SetupError::Url(e.to_string()))?;
        Ok(Redis {
            conn,
            endpoint,
            prefix: cfg.prefix.clone(),
            timeout,
            retry: cfg.retry_interval.duration(),
            policy: cfg.on_outage,
            health: Mutex::new(Health {
                down_since: None,
                next_try: Instant::now(),
            }),
            report: OnceLock::new(),
        })
    }

    /// Where Redis is (host:port or socket path; no credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The configured outage policy.
    pub fn policy(&self) -> OnOutage {
        self.policy
    }

    /// `name` under the pool's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Where changes of availability are reported (set once, at start).
    pub fn on_change(&self, f: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.report.set(Box::new(f));
    }

    /// Whether Redis was reachable at the last command.
    pub fn available(&self) -> bool {
        self.health.lock().unwrap().down_since.is_none()
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }

    /// Whether a command may go to Redis now (always while available;
    /// once per retry interval while not).
    fn may_try(&self) -> bool {
        let mut h = self.health.lock().unwrap();
        if h.down_since.is_none() {
            return true;
        }
        let now = Instant::now();
        if now >= h.next_try {
            h.next_try = now + self.retry;
            return true;
        }
        false
    }

    fn failed(&self, e: &Unavailable) {
        let first = {
            let mut h = self.health.lock().unwrap();
            let first = h.down_since.is_none();
            if first {
                h.down_since = Some(Instant::now());
            }
            h.next_try = Instant::now() + self.retry;
            first
        };
        crate::metrics::get().store_failures.inc(&[]);
        if first {
            crate::metrics::get().store_up.set(&[], 0.0);
            let what = match self.policy {
                OnOutage::Defer => "checks that need it defer (store.on_outage = defer)",
                OnOutage::Local => "each node uses its own state (store.on_outage = local)",
            };
            self.tell(format!("store: {e}; {what}"));
        }
    }

    fn succeeded(&self) {
        let since = self.health.lock().unwrap().down_since.take();
        if let Some(t) = since {
            crate::metrics::get().store_up.set(&[], 1.0);
            self.tell(format!(
                "store: redis at {} available again after {}s",
                self.endpoint,
                t.elapsed().as_secs()
            ));
        }
    }

    fn tell(&self, text: String) {
        match self.report.get() {
            Some(f) => f(text),
            None => tracing::warn!("{text}"),
        }
    }

    /// Send `cmd` (bounded by the timeout) and read its answer.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        if !self.may_try() {
            return Err(self.unavailable("not retried yet after a failure"));
        }
        let mut conn = self.conn.clone();
        let r = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        self.settle(r)
    }

    /// Run `script` with `keys` and `args` (EVALSHA, loading it when Redis
    /// does not know it), bounded by the timeout.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, Unavailable> {
        if !self.may_try() {
            return Err(self.unavailable("not retried yet after a failure"));
        }
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        let r = tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await;
        self.settle(r)
    }

    fn settle<T>(
        &self,
        r: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Unavailable> {
        match r {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                let e = self.unavailable(e.to_string());
                self.failed(&e);
                Err(e)
            }
            Err(_) => {
                let e = self.unavailable(format!("no answer within {:?}", self.timeout));
                self.failed(&e);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposed_password_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = password(&p).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password(&p).unwrap(), "secret");
    }

    #[tokio::test]
    async fn a_dead_server_is_reported_once_and_not_waited_for() {
        // A socket nothing listens on (refused at once).
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("none.sock");
        let cfg = StoreConfig {
            redis: Some(format!("unix://{}", path.display())),
            retry_interval: crate::config::Seconds(3600),
            ..StoreConfig::default()
        };
        let r = Redis::new(&cfg).unwrap();
        let told = std::sync::Arc::new(Mutex::new(Vec::new()));
        let t = std::sync::Arc::clone(&told);
        r.on_change(move |s| t.lock().unwrap().push(s));
        let e = r
            .query::<Option<Vec<u8>>>(redis::cmd("GET").arg("k"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("none.sock"), "{e}");
        assert!(!r.available());
        // Within the retry interval nothing is sent.
        let e = r
            .query::<Option<Vec<u8>>>(redis::cmd("GET").arg("k"))
            .await
            .unwrap_err();
        assert!(e.reason.contains("not retried"), "{e}");
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("failed") && told[0].contains("defer"));
    }
}
