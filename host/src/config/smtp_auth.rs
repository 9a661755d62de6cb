//! `[smtp_auth]`: how SMTP AUTH clients are verified (a table of password
//! hashes or a running Dovecot), how failures are limited, and which
//! envelope senders a login may use. Listeners choose with `auth = ...`
//! whether they offer it.

use super::Seconds;
use serde::Deserialize;
use std::path::PathBuf;

/// A listener's use of SMTP AUTH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerAuth {
    /// Not offered (the default: port 25 serves other MTAs).
    #[default]
    Off,
    /// Offered (under TLS unless `smtp_auth.plaintext`); clients that do
    /// not authenticate are treated as on any other listener.
    Offered,
    /// A submission listener (RFC 6409): AUTH is required before MAIL.
    Required,
}

/// A SASL mechanism name in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MechanismName {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN.
    Login,
}

/// `[smtp_auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpAuth {
    /// A lookup table `user -> password hash` in Dovecot's and Postfix's
    /// formats: `{SHA512-CRYPT}$6$...`, `{SHA256-CRYPT}$5$...`,
    /// `{BLF-CRYPT}$2y$...` (bcrypt), `{ARGON2ID}$argon2id$...`,
    /// `{ARGON2I}...`, or a bare crypt string (`$6$`, `$5$`, `$2y$`,
    /// `$argon2id$`). `doveadm pw -s SHA512-CRYPT` writes the first.
    pub passwords: Option<String>,
    /// Delegate verification to a running Dovecot through its
    /// authentication protocol on this unix socket (its `auth-client`
    /// listener), as Postfix's `smtpd_sasl_type = dovecot`. Used instead of
    /// `passwords`.
    pub dovecot: Option<PathBuf>,
    /// Mechanisms offered, in order.
    pub mechanisms: Vec<MechanismName>,
    /// Offer AUTH without TLS too (the password travels in clear).
    pub plaintext: bool,
    /// A lookup table `sender address -> logins allowed to use it`
    /// (comma or space separated; searched as an address: `user@domain`,
    /// `@domain`, `user@`). When set, an authenticated client may only
    /// use senders listed for its login (553 5.7.1 otherwise), and the null
    /// sender.
    pub sender_logins: Option<String>,
    /// Failed attempts allowed per client IP within `failure_window`;
    /// the next one is answered 421 and the connection closed.
    pub max_failures: u32,
    /// The window over which failures are counted.
    pub failure_window: Seconds,
    /// How long each failed attempt waits before its reply.
    pub failure_delay: Seconds,
}

impl Default for SmtpAuth {
    fn default() -> Self {
        SmtpAuth {
            passwords: None,
            dovecot: None,
            mechanisms: vec![MechanismName::Plain, MechanismName::Login],
            plaintext: false,
            sender_logins: None,
            max_failures: 5,
            failure_window: Seconds(600),
            failure_delay: Seconds(1),
        }
    }
}

impl SmtpAuth {
    /// What is wrong with the section, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.passwords.is_some() && self.dovecot.is_some() {
            return Some("smtp_auth: give either passwords or dovecot, not both".into());
        }
        if self.mechanisms.is_empty() {
            return Some("smtp_auth.mechanisms must name at least one mechanism".into());
        }
        if self.max_failures == 0 {
            return Some("smtp_auth.max_failures must be at least 1".into());
        }
        None
    }

    /// True when clients can be verified at all.
    pub fn configured(&self) -> bool {
        self.passwords.is_some() || self.dovecot.is_some()
    }
}
