//! Inbound SMTP: the listeners accept connections; each session drives
//! the I/O-free [`crate::smtp::server`] machine over tokio, applies the
//! relay policy, runs the plugins' SMTP-stage hooks, adds the Received
//! header and spools accepted messages, then hands them to the queue.

pub mod access;
pub mod auth;
pub mod listener;
pub mod policy;
pub mod quarantine;
pub mod ratelimit;
pub mod receive;
pub mod sasl;
pub mod session;
