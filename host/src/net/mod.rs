//! Sockets shared by the inbound and outbound sides: a stream that is
//! plain TCP or TLS and can be upgraded, and TCP Fast Open options.

pub mod fast_open;
pub mod stream;
