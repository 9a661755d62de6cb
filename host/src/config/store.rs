//! `[store]`: where state shared by the gateways of a pool lives: the
//! plugins' `kv` entries, the TLS session-ticket keys and the rate-limit
//! counters. Without `redis`, each gateway keeps them to itself (redb and
//! memory).

use super::Seconds;
use serde::Deserialize;
use std::path::PathBuf;

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The Redis server: `redis://host:port/db`, or `rediss://` for TLS.
    /// A password may be in the URL (`redis://:secret@host`), but
    /// `password_file` keeps it out of the config.
    #[serde(default)]
    pub redis: Option<String>,
    /// A file (mode 0600 or 0400) whose first line is the Redis password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The Redis ACL user (Redis 6 and later), when not `default`.
    #[serde(default)]
    pub username: Option<String>,
    /// PEM certificates that verify a `rediss://` server (default: the
    /// system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// What every key starts with; the gateways of one pool share it, and
    /// pools sharing one Redis use different ones.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long one Redis command may take before the store counts as
    /// unavailable.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// After a failure, how long commands are not tried (they fail at
    /// once) before Redis is tried again.
    #[serde(default = "default_retry")]
    pub retry_interval: Seconds,
    /// What happens while Redis is unavailable.
    #[serde(default)]
    pub on_outage: OnOutage,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            redis: None,
            password_file: None,
            username: None,
            ca_file: None,
            prefix: default_prefix(),
            timeout_ms: default_timeout_ms(),
            retry_interval: default_retry(),
            on_outage: OnOutage::default(),
        }
    }
}

/// The policy while the shared store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOutage {
    /// The checks that need the store answer 4xx: a plugin hook that used
    /// `kv` defers the command (451 4.3.0), a rate limit defers MAIL and
    /// RCPT (451 4.3.0) and refuses connections (421 4.3.0). Nothing is
    /// accepted unchecked; senders retry.
    #[default]
    Defer,
    /// Each gateway uses its own state until Redis is back: redb for `kv`,
    /// memory for rate limits. Greylisting and limits then count per node.
    Local,
}

impl OnOutage {
    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            OnOutage::Defer => "defer",
            OnOutage::Local => "local",
        }
    }
}

fn default_prefix() -> String {
    "mailgate:".into()
}

fn default_timeout_ms() -> u64 {
    500
}

fn default_retry() -> Seconds {
    Seconds(1)
}

impl Store {
    /// What is wrong with the section, if anything: the key and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let url = self.redis.as_deref()?;
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Some((
                "redis",
                format!("store.redis {url:?}: not a redis://, rediss:// or unix:// URL"),
            ));
        }
        if self.ca_file.is_some() && !url.starts_with("rediss://") {
            return Some((
                "ca_file",
                "store.ca_file is for a rediss:// (TLS) server".into(),
            ));
        }
        if let Some(f) = &self.ca_file
            && !f.is_file()
        {
            return Some((
                "ca_file",
                format!("store.ca_file {} does not exist", f.display()),
            ));
        }
        if self.timeout_ms == 0 {
            return Some(("timeout_ms", "store.timeout_ms must be above 0".into()));
        }
        if self.prefix.contains(char::is_whitespace) {
            return Some(("prefix", "store.prefix cannot contain white space".into()));
        }
        None
    }
}
