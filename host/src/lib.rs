//! mailgate: a mail gateway whose extensions are sandboxed WebAssembly
//! components.
//!
//! Data flow, one module per stage: [`listener`] accepts connections,
//! [`session`] drives the I/O-free protocol machine in [`smtp`] for each,
//! [`spool`] makes accepted messages durable, [`queue`] routes and delivers
//! them. [`config`] reads the TOML configuration, [`log`] writes the
//! Exim-style main log, [`tls`] builds the rustls configuration.

pub mod cache;
pub mod config;
pub mod control;
pub mod delivery;
pub mod fast_open;
pub mod listener;
pub mod log;
pub mod plugin;
pub mod queue;
pub mod server;
pub mod session;
pub mod smtp;
pub mod spool;
pub mod tls;
