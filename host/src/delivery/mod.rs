//! Outbound delivery: next-hop lookup, the SMTP client, the EHLO cache for
//! early pipelining, client TLS with resumption, and DSN bounces.

pub mod client;
pub mod dsn;
pub mod ehlo_cache;
pub mod hop;
pub mod reply;
pub mod retry;
pub mod tls;
