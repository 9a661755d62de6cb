//! `[auth]`: message authentication checks at acceptance (SPF, iprev, DKIM
//! verification) and the Authentication-Results header they produce.

use serde::Deserialize;

/// What to do with a message whose SPF MAIL FROM result is `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfFail {
    /// Record it only.
    Accept,
    /// Refuse MAIL FROM with 550 5.7.23.
    Reject,
}

/// What to do on an SPF `temperror` (DNS trouble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfTempError {
    /// Record it only.
    Accept,
    /// Answer MAIL FROM with 451 4.7.24.
    Defer,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Run the checks and write Authentication-Results.
    pub enabled: bool,
    /// Our authserv-id (default: the host name). Incoming
    /// Authentication-Results headers with it are removed.
    pub authserv_id: Option<String>,
    /// SPF `fail` for MAIL FROM.
    pub spf_fail: SpfFail,
    /// SPF `temperror`.
    pub spf_temperror: SpfTempError,
    /// Also add a Received-SPF header.
    pub received_spf: bool,
    /// DKIM signatures checked per message (the first ones).
    pub dkim_max_signatures: usize,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            enabled: true,
            authserv_id: None,
            spf_fail: SpfFail::Accept,
            spf_temperror: SpfTempError::Accept,
            received_spf: false,
            dkim_max_signatures: 10,
        }
    }
}
