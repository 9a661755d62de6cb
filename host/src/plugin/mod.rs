//! The plugin runtime: WebAssembly components loaded through the WIT
//! contract in `wit/`, run by wasmtime 48 with the pooling allocator, an
//! `InstancePre` per plugin and a fresh `Store` per transaction.
//!
//! Budgets per plugin: wall time per call (epoch interruption), memory
//! (`StoreLimits`) and optional fuel. A trap, timeout, memory exhaustion or
//! malformed answer applies the plugin's failure policy (continue or
//! tempfail), is logged and counted, and never touches other sessions. The
//! loaded set is swapped atomically on reload; sessions in flight keep the
//! set they started with.

pub mod bindings;
pub mod bindings_v2;
pub mod cache;
pub mod calls;
pub mod contract;
pub mod convert_v2;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod host;
pub mod instance;
pub mod offline;
pub mod pool;
pub mod sandbox;
pub mod shadow;
pub mod state;

pub use bindings::hook_name;
pub use calls::{Call, Outcome, Routed, SessionPlugins};
pub use engine::{Loaded, Runtime};
pub use error::PluginError;
pub use host::message::MessageData;
pub use instance::Instance;
pub use offline::test_offline;
pub use state::{Resolver, State};
