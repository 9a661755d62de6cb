//! mailgate: a mail gateway whose extensions are sandboxed WebAssembly
//! components.
//!
//! The modules follow the mail flow: [`inbound`] accepts connections and
//! drives the I/O-free server machine in [`smtp`] for each; [`routing`]
//! decides what becomes of every recipient; [`spool`] makes accepted
//! messages durable; [`queue`] schedules what is due; [`local`] writes
//! maildirs and [`outbound`] delivers to other servers, driving the
//! I/O-free client in [`smtp`]. [`plugin`] runs the Wasm components at each
//! stage. Below them: [`config`] (types and parsing only), [`log`] (the
//! Exim-style main log), [`tls`] (server TLS), [`dns`], [`net`] (streams,
//! TCP Fast Open), [`cache`] (redb), [`dmarcrpt`] (the DMARC aggregate
//! report rows inbound counts and the queue mails). [`server`] wires it all together and
//! [`control`] answers the CLI. See `docs/architecture.md`.

pub mod cache;
pub mod config;
pub mod control;
pub mod dmarcrpt;
pub mod dns;
pub mod inbound;
pub mod local;
pub mod log;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod plugin;
pub mod privileges;
pub mod queue;
pub mod routing;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod table;
pub mod tls;
