//! The host interfaces a plugin imports, one file each; every call checks
//! the plugin's grant first.

pub mod clock;
pub mod crypto;
pub mod dns;
pub mod kv;
pub mod log;
pub mod lookup;
pub mod message;
pub mod random;
pub mod services;
