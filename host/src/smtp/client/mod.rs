//! The client side of SMTP, free of I/O: reply parsing, the server's
//! capabilities, one message as commands and the mapping of replies to
//! outcomes. The outbound delivery driver (`outbound::client`) runs them
//! over a socket.

pub mod caps;
pub mod conversation;
pub mod outcome;
pub mod reply;
pub mod transaction;

pub use caps::Caps;
pub use outcome::{Failure, RcptOutcome, Stage};
pub use transaction::{Job, JobRcpt};
