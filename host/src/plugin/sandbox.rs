//! What a plugin gets of WASI, by its grants. All of WASI p2 is linked (a
//! component built by a normal toolchain imports it), so the grants are
//! enforced in what the imports answer:
//! * no `clock`: the wall clock reads the Unix epoch and the monotonic clock
//!   stands still, so no time leaks and nothing can be timed;
//! * no `random`: `wasi:random` answers from generators with fixed seeds, the
//!   same sequence in every instance (language runtimes that seed hash
//!   tables at start still run; nothing secret can be made from it);
//! * preopened directories only with `directories`;
//! * always: no network, no environment, no arguments, no stdio.
//!
//! The `clock` and `random` host interfaces of the WIT contract check the
//! same grants (see `plugin::host`).

use crate::config::plugin::Capability;
use rand::SeedableRng;
use std::collections::HashSet;
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// A wall clock stopped at 1970-01-01T00:00:00Z.
struct Epoch;

impl HostWallClock for Epoch {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never advances.
struct Still;

impl HostMonotonicClock for Still {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Apply the clock and random grants to a WASI context being built.
pub fn restrict(wasi: &mut WasiCtxBuilder, caps: &HashSet<Capability>) {
    if !caps.contains(&Capability::Clock) {
        wasi.wall_clock(Epoch).monotonic_clock(Still);
    }
    if !caps.contains(&Capability::Random) {
        wasi.secure_random(rand::rngs::StdRng::seed_from_u64(0))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(1))
            .insecure_random_seed(0);
    }
}
