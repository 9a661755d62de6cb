//! `[[plugin]]` tables of the configuration.

use super::{ByteSize, ConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What happens to the SMTP conversation when a plugin fails (trap,
/// timeout, memory exhaustion, malformed answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Fail open: as if the plugin had said continue.
    Continue,
    /// Fail closed: a temporary failure (451 4.3.0).
    Tempfail,
}

impl std::fmt::Display for OnFailure {
    /// As the log names the policy: `continue` or `tempfail`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnFailure::Continue => "continue",
            OnFailure::Tempfail => "tempfail",
        })
    }
}

/// A capability a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Write to the host's log.
    Log,
    /// Read the clock.
    Clock,
    /// Random bytes.
    Random,
    /// Its own key-value namespace.
    Kv,
    /// DNS lookups.
    Dns,
    /// Connections to the endpoints in `services`.
    Services,
    /// The directories in `directories` (WASI preopens).
    Directories,
    /// Native signature verification and hashing, and signing with the
    /// keys in `keys`.
    Crypto,
    /// Reading the lookup tables named in `tables`.
    Lookup,
}

/// One `[[plugin]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used in logs and `plugin list`.
    pub name: String,
    /// The component file (`.wasm`).
    pub path: PathBuf,
    /// Failure policy.
    #[serde(default = "default_on_failure")]
    pub on_failure: OnFailure,
    /// Wall time per hook call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Memory per instance.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Fuel per call (deterministic CPU budget); 0 disables.
    #[serde(default)]
    pub fuel: u64,
    /// Keep instances between transactions: the plugin keeps nothing in
    /// its memory from one transaction to the next (true of every bundled
    /// plugin), so an instance that finished a transaction serves the
    /// next one of any session, without a new store and without a new
    /// `init`. Off: a fresh instance (and `init`) per transaction. Unset:
    /// what the plugin declares (contract 0.2's `manifest.reusable`; a
    /// 0.1 plugin cannot declare it and gets fresh instances).
    #[serde(default)]
    pub reuse: Option<bool>,
    /// Granted capabilities.
    #[serde(default = "default_caps")]
    pub capabilities: Vec<Capability>,
    /// Named endpoints the plugin may connect to (`unix:/path` or
    /// `tcp:HOST:PORT`), with the `services` capability.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// Named directories the plugin sees as WASI preopens (guest path =
    /// name), with the `directories` capability.
    #[serde(default)]
    pub directories: BTreeMap<String, PathBuf>,
    /// Named private keys (PEM files, as `[[dkim]]` keys) the plugin may
    /// sign with through the `crypto` capability; the key material stays
    /// in the host.
    #[serde(default)]
    pub keys: BTreeMap<String, PathBuf>,
    /// The lookup tables the plugin may read through the `lookup`
    /// capability (`mailgate table build NAME SOURCE`).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Run as the shadow of the plugin of this name: called after it at
    /// every hook with the same context and data, under this entry's own
    /// budgets; its answers are compared with that plugin's, differences
    /// logged and counted, and dropped: it never changes what happens to
    /// mail. `mailgate plugin promote` swaps it in.
    #[serde(default)]
    pub shadow_of: Option<String>,
    /// The plugin's own settings, handed to its `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
}

fn default_on_failure() -> OnFailure {
    OnFailure::Continue
}
fn default_timeout() -> u64 {
    500
}
fn default_memory() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_caps() -> Vec<Capability> {
    vec![Capability::Log]
}
fn empty_table() -> toml::Table {
    toml::Table::new()
}

impl PluginConfig {
    /// The config table as JSON for the plugin's `init`.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }
}

/// Check names are unique.
/// Why `p`'s `shadow_of` cannot work, if it cannot.
pub fn shadow_problem(plugins: &[PluginConfig], p: &PluginConfig) -> Option<String> {
    let of = p.shadow_of.as_deref()?;
    let Some(active) = plugins.iter().find(|q| q.name == of) else {
        return Some(format!("no plugin is named {of}"));
    };
    if active.shadow_of.is_some() {
        return Some(format!("{of} is itself a shadow"));
    }
    if plugins
        .iter()
        .filter(|q| q.shadow_of.as_deref() == Some(of))
        .count()
        > 1
    {
        return Some(format!("{of} has more than one shadow"));
    }
    None
}

pub fn validate(plugins: &[PluginConfig], file: &str) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for p in plugins {
        if !seen.insert(&p.name) {
            return Err(ConfigError {
                file: file.into(),
                position: None,
                reason: format!("plugin name {} is used twice", p.name),
            });
        }
        if p.name.is_empty()
            || p.name.len() > 64
            || !p
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            // The name keys its kv entries, metrics and log lines.
            return Err(ConfigError {
                file: file.into(),
                position: None,
                reason: format!(
                    "plugin name {:?}: 1 to 64 letters, digits, '.', '_' or '-'",
                    p.name
                ),
            });
        }
        if let Some(why) = shadow_problem(plugins, p) {
            return Err(ConfigError {
                file: file.into(),
                position: None,
                reason: format!("plugin {}: shadow_of: {why}", p.name),
            });
        }
        for (name, addr) in &p.services {
            if let Err(e) = ServiceAddr::parse(addr) {
                return Err(ConfigError {
                    file: file.into(),
                    position: None,
                    reason: format!("plugin {}: service {name}: {e}", p.name),
                });
            }
        }
        for (name, dir) in &p.directories {
            if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
                return Err(ConfigError {
                    file: file.into(),
                    position: None,
                    reason: format!(
                        "plugin {}: directory name {name:?} must be a plain name",
                        p.name
                    ),
                });
            }
            if !dir.is_absolute() {
                return Err(ConfigError {
                    file: file.into(),
                    position: None,
                    reason: format!(
                        "plugin {}: directory {name} = {}: must be an absolute path",
                        p.name,
                        dir.display()
                    ),
                });
            }
        }
        for (name, path) in &p.keys {
            if let Err(e) = super::auth::read_signing_key(path) {
                return Err(ConfigError {
                    file: file.into(),
                    position: None,
                    reason: format!("plugin {}: key {name}: {e}", p.name),
                });
            }
        }
        for t in &p.tables {
            if !super::table_name_ok(t) {
                return Err(ConfigError {
                    file: file.into(),
                    position: None,
                    reason: format!(
                        "plugin {}: tables: {t:?} is not a table name (letters, digits, '-', '_' and '.', not first)",
                        p.name
                    ),
                });
            }
        }
        if !p.tables.is_empty() && !p.capabilities.contains(&Capability::Lookup) {
            return Err(ConfigError {
                file: file.into(),
                position: None,
                reason: format!(
                    "plugin {}: tables are named but the lookup capability is not granted",
                    p.name
                ),
            });
        }
        if p.timeout_ms == 0 {
            return Err(ConfigError {
                file: file.into(),
                position: None,
                reason: format!("plugin {}: timeout_ms must be at least 1", p.name),
            });
        }
    }
    Ok(())
}
/// Where a named service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAddr {
    /// A unix socket path.
    Unix(std::path::PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl ServiceAddr {
    /// Parse `unix:/path` or `tcp:host:port`.
    pub fn parse(s: &str) -> Result<ServiceAddr, super::InvalidValue> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("{s:?}: empty socket path").into());
            }
            return Ok(ServiceAddr::Unix(p.into()));
        }
        if let Some(hp) = s.strip_prefix("tcp:") {
            let ok = hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("{s:?}: expected tcp:HOST:PORT").into());
            }
            return Ok(ServiceAddr::Tcp(hp.to_string()));
        }
        Err(format!("{s:?}: expected unix:/path or tcp:HOST:PORT").into())
    }
}
