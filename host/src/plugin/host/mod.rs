//! The host interfaces a plugin imports, one file each; every call checks
//! the plugin's grant first (`routing`, which only touches the recipient
//! being routed, needs none).

pub mod clock;
pub mod crypto;
pub mod dns;
pub mod kv;
pub mod log;
pub mod lookup;
pub mod message;
pub mod random;
pub mod routing;
pub mod services;
pub mod v2;
