//! Local delivery (Postfix's local(8)): recipients routed to a mailbox on
//! this machine are written to maildirs.

pub mod maildir;
