//! Routing: what becomes of each recipient (local mailbox, alias
//! expansion, remote delivery), decided without I/O and used both at
//! acceptance and by the queue.

pub mod expand;
pub mod router;

pub use expand::expand;
pub use expand::{preroute, preroute_from};
pub use router::{Route, Router, Unrouteable, parse_alias_file};
