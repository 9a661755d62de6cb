//! The `log` interface: plugin messages into the host's log (grant `log`).

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::state::State;

impl bindings::mailgate::plugin::log::Host for State {
    async fn write(&mut self, level: bindings::mailgate::plugin::log::Level, message: String) {
        if self.granted(Capability::Log).is_err() {
            return;
        }
        use bindings::mailgate::plugin::log::Level;
        let name = &self.plugin.cfg.name;
        let message: String = message.chars().take(2000).collect();
        match level {
            Level::Error => tracing::error!(plugin = %name, "{message}"),
            Level::Warn => tracing::warn!(plugin = %name, "{message}"),
            Level::Info => tracing::info!(plugin = %name, "{message}"),
            Level::Debug => tracing::debug!(plugin = %name, "{message}"),
        }
    }
}
