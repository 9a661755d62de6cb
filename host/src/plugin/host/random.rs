//! The `random` interface: random bytes (grant `random`).

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;

impl bindings::mailgate::plugin::random::Host for State {
    async fn bytes(&mut self, len: u32) -> Result<Vec<u8>, CapError> {
        self.granted(Capability::Random)?;
        let mut v = vec![0u8; len.min(1 << 16) as usize];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v)
            .map_err(|_| CapError::Failed("no randomness".into()))?;
        Ok(v)
    }
}
