//! Sockets shared by the inbound and outbound sides: a stream that is
//! plain TCP or TLS and can be upgraded, TCP Fast Open options, and the
//! readiness datagram to systemd.

pub mod fast_open;
pub mod notify;
pub mod stream;
