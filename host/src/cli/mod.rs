//! The subcommands of the `mailgate` binary other than `serve` and
//! `config`, one file per command group.

pub mod auth;
pub mod plugin;
pub mod queue;
pub mod report;

use mailgate::config::Config;
use std::path::Path;

/// The config file, or the embedded default.
pub fn load(config: Option<&Path>) -> Result<Config, String> {
    match config {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default_config()),
    }
}
