//! The SMTP protocol, free of I/O: addresses, commands, replies, the content
//! readers and the server session state machine.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;
pub mod server;
