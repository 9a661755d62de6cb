//! Verifying SMTP AUTH credentials: against a table of password hashes or
//! through a running Dovecot, with failed attempts counted per client IP.

pub mod dovecot;
pub mod hash;

use crate::config::smtp_auth::SmtpAuth;
use crate::smtp::server::Credentials;
use crate::table::Tables;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The password is right; the user as the session knows it.
    Success(String),
    /// A wrong password or an unknown user (the client is not told which).
    Failed(String),
    /// The check could not be made (table unreadable, a hash that cannot
    /// be used, Dovecot down): the client is told to try later (454).
    Unavailable(String),
}

/// Where credentials are checked.
#[derive(Debug, Clone)]
enum Backend {
    Table(String),
    Dovecot(PathBuf),
}

/// Checks credentials and keeps the per-IP failure counts.
#[derive(Debug)]
pub struct Verifier {
    backend: Backend,
    tables: Arc<Tables>,
    max_failures: u32,
    window: Duration,
    /// Failures per client IP: when each happened, oldest first.
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Verifier {
    /// The verifier of `[smtp_auth]`, when it names a backend.
    pub fn new(cfg: &SmtpAuth, tables: Arc<Tables>) -> Option<Verifier> {
        let backend = match (&cfg.passwords, &cfg.dovecot) {
            (Some(t), _) => Backend::Table(t.clone()),
            (None, Some(p)) => Backend::Dovecot(p.clone()),
            (None, None) => return None,
        };
        Some(Verifier {
            backend,
            tables,
            max_failures: cfg.max_failures,
            window: cfg.failure_window.duration(),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// True when `ip` has used up its failed attempts within the window.
    pub fn locked_out(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Some(v) = map.get_mut(&ip) else {
            return false;
        };
        v.retain(|t| now.duration_since(*t) < self.window);
        if v.is_empty() {
            map.remove(&ip);
            return false;
        }
        v.len() as u32 >= self.max_failures
    }

    /// Count one failure of `ip`; true when that was its last allowed one.
    pub fn record_failure(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Keep the map from growing without bound under a spray of IPs.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        let v = map.entry(ip).or_default();
        v.retain(|t| now.duration_since(*t) < self.window);
        v.push(now);
        v.len() as u32 >= self.max_failures
    }

    /// Check one set of credentials from `client` (TLS tells Dovecot the
    /// session is secured).
    pub async fn verify(
        &self,
        c: &Credentials,
        client: IpAddr,
        local: IpAddr,
        tls: bool,
    ) -> Outcome {
        if c.authzid.is_some() {
            // Acting as another user needs a proxy-authorisation policy we
            // do not have; refuse rather than ignore it.
            return Outcome::Failed("authorization identity differs from the login".into());
        }
        match &self.backend {
            Backend::Table(name) => {
                let stored = match self.tables.lookup(name, &c.user) {
                    Ok(Some(v)) => v,
                    Ok(None) => return Outcome::Failed("unknown user".into()),
                    Err(e) => return Outcome::Unavailable(e.to_string()),
                };
                let password = c.password.clone();
                let user = c.user.clone();
                let r = tokio::task::spawn_blocking(move || hash::verify(&stored, &password)).await;
                match r {
                    Ok(Ok(true)) => Outcome::Success(user),
                    Ok(Ok(false)) => Outcome::Failed("wrong password".into()),
                    Ok(Err(e)) => Outcome::Unavailable(format!("table {name}, user {user}: {e}")),
                    Err(e) => Outcome::Unavailable(e.to_string()),
                }
            }
            Backend::Dovecot(path) => {
                let req = dovecot::Request {
                    mechanism: c.mechanism,
                    user: &c.user,
                    password: &c.password,
                    client,
                    local,
                    secured: tls,
                };
                dovecot::authenticate(path, &req).await
            }
        }
    }
}
