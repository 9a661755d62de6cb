//! The SMTP protocol, free of I/O: addresses, commands, replies, the content
//! readers, the server session state machine and the client conversation.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod header;
pub mod reply;
pub mod report_mail;
pub mod server;
