//! `[metrics]`: the Prometheus endpoint.

use serde::Deserialize;
use std::net::SocketAddr;

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Where `/metrics` is served over HTTP ("127.0.0.1:9325"); unset (the
    /// default): nowhere. No authentication: loopback or a management
    /// network only.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}
