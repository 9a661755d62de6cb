//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms:
//! the exchange of challenges and responses, without I/O. The driver
//! verifies the [`Credentials`] a [`Check::Auth`] carries and answers it
//! like any other check.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A SASL mechanism the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: `authzid NUL authcid NUL password` in one response.
    Plain,
    /// The de-facto LOGIN mechanism: user name, then password, each
    /// prompted for.
    Login,
}

impl Mechanism {
    /// The name in EHLO and AUTH.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The mechanism of an AUTH argument, case-insensitively.
    pub fn parse(s: &str) -> Option<Mechanism> {
        if s.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if s.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// What the listener offers of SMTP AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOffer {
    /// Mechanisms in the order advertised.
    pub mechanisms: Vec<Mechanism>,
    /// Offer the mechanisms without TLS too (they send the password in
    /// clear; off unless a listener says otherwise).
    pub plaintext: bool,
    /// A submission listener: MAIL needs a successful AUTH first.
    pub required: bool,
}

/// What the client sent, for the driver to verify.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism used.
    pub mechanism: Mechanism,
    /// The identity to act as (PLAIN's authzid), when given and different
    /// from the user.
    pub authzid: Option<String>,
    /// The authentication identity (the login).
    pub user: String,
    /// The password, in clear.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Where an exchange of challenges stands.
#[derive(Debug)]
pub(super) enum Sasl {
    /// PLAIN without an initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
}

/// A client response that cannot be used: the exchange ends with this.
fn garbled() -> Reply {
    Reply::new(
        501,
        "5.5.2",
        "Cannot decode the response (bad base64 or format)",
    )
}

fn decode(s: &str) -> Result<Vec<u8>, Reply> {
    let s = s.trim();
    if s == "=" {
        return Ok(Vec::new());
    }
    B64.decode(s).map_err(|_| garbled())
}

fn utf8(b: Vec<u8>) -> Result<String, Reply> {
    let s = String::from_utf8(b).map_err(|_| garbled())?;
    if s.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(garbled());
    }
    Ok(s)
}

/// PLAIN's message: `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
fn plain_credentials(response: &str) -> Result<Credentials, Reply> {
    let raw = decode(response)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(garbled());
    };
    let authzid = utf8(authzid.to_vec())?;
    let user = utf8(user.to_vec())?;
    let password = String::from_utf8(password.to_vec()).map_err(|_| garbled())?;
    if user.is_empty() || password.is_empty() || user.len() > 255 || password.len() > 1024 {
        return Err(garbled());
    }
    Ok(Credentials {
        mechanism: Mechanism::Plain,
        authzid: (!authzid.is_empty() && authzid != user).then_some(authzid),
        user,
        password,
    })
}

const USERNAME: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD: &str = "UGFzc3dvcmQ6"; // "Password:"

impl Session {
    /// True when AUTH is advertised and accepted now.
    pub(super) fn auth_offered(&self) -> bool {
        self.cfg
            .auth
            .as_ref()
            .is_some_and(|a| !a.mechanisms.is_empty() && (self.tls || a.plaintext))
    }

    /// The user of a successful AUTH in this session.
    pub fn authenticated(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The AUTH command: `AUTH mechanism [initial-response]`.
    pub(super) fn auth_command(&mut self, arg: &str) -> Option<Step> {
        let Some(offer) = self.cfg.auth.clone() else {
            self.error(Reply::new(503, "5.5.1", "AUTH not available"));
            return None;
        };
        if self.helo.is_none() || !self.esmtp() {
            self.error(Reply::new(503, "5.5.1", "EHLO first"));
            return None;
        }
        if self.auth.is_some() {
            self.error(Reply::new(503, "5.5.1", "Already authenticated"));
            return None;
        }
        if self.tx.is_some() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH not permitted during a mail transaction",
            ));
            return None;
        }
        if !self.auth_offered() {
            // RFC 4954 §6: the mechanism needs an encrypted session.
            self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism (use STARTTLS first)",
            ));
            return None;
        }
        let mut words = arg.split_ascii_whitespace();
        let mech = words.next().unwrap_or("");
        let initial = words.next();
        if words.next().is_some() || mech.is_empty() {
            self.error(Reply::new(
                501,
                "5.5.4",
                "Syntax: AUTH mechanism [initial-response]",
            ));
            return None;
        }
        let Some(mech) = Mechanism::parse(mech).filter(|m| offer.mechanisms.contains(m)) else {
            self.error(Reply::new(504, "5.5.4", "Unrecognized authentication type"));
            return None;
        };
        match (mech, initial) {
            (Mechanism::Plain, Some(r)) => self.sasl_result(plain_credentials(r)),
            (Mechanism::Plain, None) => {
                self.reply(Reply::new(334, "", ""));
                self.phase = Phase::Sasl(Sasl::Plain);
                None
            }
            (Mechanism::Login, None) => {
                self.reply(Reply::new(334, "", USERNAME));
                self.phase = Phase::Sasl(Sasl::LoginUser);
                None
            }
            (Mechanism::Login, Some(r)) => match decode(r).and_then(utf8) {
                Ok(user) if !user.is_empty() => {
                    self.reply(Reply::new(334, "", PASSWORD));
                    self.phase = Phase::Sasl(Sasl::LoginPassword(user));
                    None
                }
                Ok(_) => self.sasl_result(Err(garbled())),
                Err(r) => self.sasl_result(Err(r)),
            },
        }
    }

    /// One response line during the exchange.
    pub(super) fn sasl_line(&mut self, line: &str) -> Option<Step> {
        let Phase::Sasl(state) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        if line.trim() == "*" {
            // RFC 4954 §4: the client cancelled; not a protocol error.
            self.reply(Reply::new(501, "5.0.0", "Authentication cancelled"));
            return None;
        }
        match state {
            Sasl::Plain => self.sasl_result(plain_credentials(line)),
            Sasl::LoginUser => match decode(line).and_then(utf8) {
                Ok(user) if !user.is_empty() && user.len() <= 255 => {
                    self.reply(Reply::new(334, "", PASSWORD));
                    self.phase = Phase::Sasl(Sasl::LoginPassword(user));
                    None
                }
                Ok(_) => self.sasl_result(Err(garbled())),
                Err(r) => self.sasl_result(Err(r)),
            },
            Sasl::LoginPassword(user) => {
                let password = decode(line)
                    .and_then(|b| String::from_utf8(b).map_err(|_| garbled()))
                    .and_then(|p| {
                        if p.is_empty() || p.len() > 1024 {
                            Err(garbled())
                        } else {
                            Ok(p)
                        }
                    });
                self.sasl_result(password.map(|password| Credentials {
                    mechanism: Mechanism::Login,
                    authzid: None,
                    user,
                    password,
                }))
            }
        }
    }

    fn sasl_result(&mut self, r: Result<Credentials, Reply>) -> Option<Step> {
        match r {
            Ok(c) => {
                self.pending = Some(Pending::Auth(c.user.clone()));
                Some(Step::Check(Check::Auth(c)))
            }
            Err(r) => {
                self.error(r);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_parts() {
        let c = plain_credentials(&B64.encode(b"\0alice\0secret")).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "secret"));
        assert_eq!(c.authzid, None);
        let c = plain_credentials(&B64.encode(b"bob\0alice\0pw")).unwrap();
        assert_eq!(c.authzid.as_deref(), Some("bob"));
        let c = plain_credentials(&B64.encode(b"alice\0alice\0pw")).unwrap();
        assert_eq!(c.authzid, None);
        for bad in [
            B64.encode(b"alice\0secret"),
            B64.encode(b"\0alice\0"),
            B64.encode(b"\0\0pw"),
            B64.encode(b"\0a\0b\0c"),
            B64.encode(b"\0a\x01\0pw"),
            "not base64!".to_string(),
            "=".to_string(),
        ] {
            assert_eq!(plain_credentials(&bad).unwrap_err().code, 501, "{bad}");
        }
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = plain_credentials(&B64.encode(b"\0alice\0hunter2")).unwrap();
        let s = format!("{c:?}");
        assert!(s.contains("alice") && !s.contains("hunter2"), "{s}");
    }
}
