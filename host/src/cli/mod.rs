//! The subcommands of the `mailgate` binary other than `serve` and
//! `config`, one file per command group.

pub mod auth;
pub mod plugin;
pub mod queue;
pub mod report;
pub mod status;
pub mod table;

use mailgate::config::Config;
use std::path::Path;

/// The config file, or the embedded default.
pub fn load(config: Option<&Path>) -> Result<Config, String> {
    match config {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default_config()),
    }
}

/// A zone file for `--dns`: parsed, or an error naming the file (and the
/// line when the parser says).
pub fn read_zone(path: &Path) -> Result<mailgate::dns::zone::Zone, String> {
    let t = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    mailgate::dns::zone::Zone::parse(&t, &path.display().to_string()).map_err(|e| e.to_string())
}
