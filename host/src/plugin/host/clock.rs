//! The `clock` interface: wall-clock time (grant `clock`).

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;

impl bindings::mailgate::plugin::clock::Host for State {
    async fn now(&mut self) -> Result<u64, CapError> {
        self.granted(Capability::Clock)?;
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()))
    }
}
