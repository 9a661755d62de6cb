//! Credentials for smarthosts that want a login (Postfix's
//! `smtp_sasl_password_maps`, Exim's client authenticators): a lookup
//! table or a text file only the gateway's user can read, both keyed by
//! `[host]:port`, `[host]` or `host` with `user:password` values.
//!
//! The file is read once at start; an error in it (unreadable, readable by
//! others, a line without `user:password`) stops the start with the file,
//! line and reason, so no mail is sent under half a configuration.

use crate::config::{ClientAuthSecurity, Outbound as OutboundConfig};
use crate::smtp::client::conversation::{Login, TlsMode};
use crate::table::source::{self, Kind};
use crate::table::{TableError, Tables};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why the credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoginFileError {
    /// It cannot be read.
    #[error("outbound.auth_file {path}: cannot read: {error}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Its mode lets other users read the passwords.
    #[error(
        "outbound.auth_file {path}: readable by group or others (mode {mode:04o}); \
         chmod 600 it and make the gateway's user its owner"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not an entry.
    #[error("outbound.auth_file {path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A user name and password for one server; Debug output hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <hidden>)", self.user)
    }
}

impl Credential {
    /// The conversation's login with these credentials.
    pub fn login(&self, needs_tls: bool) -> Login {
        Login {
            user: self.user.clone(),
            password: self.password.clone(),
            needs_tls,
        }
    }
}

/// A `user:password` value (the password may hold colons).
fn credential(value: &str) -> Result<Credential, String> {
    let (user, password) = value
        .split_once(':')
        .ok_or("the value is not user:password")?;
    if user.is_empty() || password.is_empty() {
        return Err("an empty user name or password".into());
    }
    Ok(Credential {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Where credentials come from.
#[derive(Debug, Default)]
pub enum Logins {
    /// None configured: no server is logged in to.
    #[default]
    None,
    /// A lookup table, read at each connection (a rebuild applies at once).
    Table(String),
    /// The entries of `auth_file`, by lower-case key.
    File(HashMap<String, Credential>),
}

/// The keys a server's credentials are looked up under, most specific
/// first.
pub fn keys(host: &str, port: u16) -> Vec<String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    vec![format!("[{h}]:{port}"), format!("[{h}]"), h]
}

impl Logins {
    /// From `[outbound]`; reads and checks `auth_file`.
    pub fn load(cfg: &OutboundConfig) -> Result<Logins, LoginFileError> {
        if let Some(t) = &cfg.auth_table {
            return Ok(Logins::Table(t.clone()));
        }
        match &cfg.auth_file {
            Some(p) => read_file(p).map(Logins::File),
            None => Ok(Logins::None),
        }
    }

    /// Whether any credentials are configured.
    pub fn configured(&self) -> bool {
        !matches!(self, Logins::None)
    }

    /// The credentials for `host` at `port`, if any. A table that cannot
    /// be read is an error (the mail waits rather than go without a
    /// login); a malformed table value is too, with the key.
    pub fn find(
        &self,
        tables: &Tables,
        host: &str,
        port: u16,
    ) -> Result<Option<Credential>, String> {
        let keys = keys(host, port);
        match self {
            Logins::None => Ok(None),
            Logins::File(m) => Ok(keys.iter().find_map(|k| m.get(k)).cloned()),
            Logins::Table(name) => {
                let hit = tables
                    .get(name)
                    .and_then(|t| t.first(&keys))
                    .map_err(|e: TableError| e.to_string())?;
                match hit {
                    None => Ok(None),
                    Some((k, v)) => credential(&v)
                        .map(Some)
                        .map_err(|e| format!("lookup table {name}, key {k}: {e}")),
                }
            }
        }
    }
}

/// Whether `cred` may go to a host connected with TLS `mode` and the
/// certificate check `cv` (`dane`, `yes` or `no`, as in the log's `CV=`)
/// under `security`: the login to use, or why the host is not used (the
/// mail waits, the password stays here).
pub fn decide(
    cred: Credential,
    security: ClientAuthSecurity,
    mode: TlsMode,
    cv: &str,
    host: &str,
) -> Result<Login, String> {
    let refused = |what: &str| {
        Err(format!(
            "not logging in to {host} as {}: {what} (outbound.auth_security = {})",
            cred.user,
            security.name()
        ))
    };
    match security {
        ClientAuthSecurity::Verified if cv == "no" => refused(
            "its TLS certificate would not be verified; give it a verify or secure TLS policy",
        ),
        ClientAuthSecurity::Encrypted if mode == TlsMode::Off => {
            refused("the connection would not be encrypted")
        }
        _ => Ok(cred.login(security != ClientAuthSecurity::Any)),
    }
}

fn read_file(path: &Path) -> Result<HashMap<String, Credential>, LoginFileError> {
    let unreadable = |error| LoginFileError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(LoginFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read(path).map_err(unreadable)?;
    let malformed = |line, reason| LoginFileError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let src = source::parse(&text, Kind::Keys).map_err(|e| malformed(e.line, e.reason))?;
    let mut out = HashMap::new();
    for e in src.entries {
        let c = credential(&e.value).map_err(|r| malformed(e.line, r))?;
        out.insert(e.key, c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (d, p)
    }

    #[test]
    fn file_entries_by_host_and_port() {
        let (_d, p) = file(
            "# relays\n[relay.test]:587 alice:pa:ss word\n[Other.test] bob:x\nplain.test carol:y\n",
            0o600,
        );
        let m = read_file(&p).unwrap();
        let get = |h: &str, port: u16| keys(h, port).iter().find_map(|k| m.get(k)).cloned();
        let c = get("relay.test", 587).unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "pa:ss word")
        );
        assert!(
            get("relay.test", 25).is_none(),
            "the port is part of the key"
        );
        assert_eq!(get("OTHER.test.", 2525).unwrap().user, "bob");
        assert_eq!(get("plain.test", 25).unwrap().user, "carol");
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "Debug hides the password"
        );
    }

    #[test]
    fn credentials_go_only_where_the_security_setting_allows() {
        use ClientAuthSecurity::*;
        let c = Credential {
            user: "u".into(),
            password: "p".into(),
        };
        let d = |s, m, cv| decide(c.clone(), s, m, cv, "relay.test");
        assert!(d(Verified, TlsMode::Required, "yes").unwrap().needs_tls);
        assert!(d(Verified, TlsMode::Required, "dane").is_ok());
        let e = d(Verified, TlsMode::Required, "no").unwrap_err();
        assert!(e.contains("would not be verified"), "{e}");
        assert!(d(Verified, TlsMode::Opportunistic, "no").is_err());
        assert!(
            d(Encrypted, TlsMode::Opportunistic, "no")
                .unwrap()
                .needs_tls
        );
        assert!(d(Encrypted, TlsMode::Off, "no").is_err());
        assert!(!d(Any, TlsMode::Off, "no").unwrap().needs_tls);
    }

    #[test]
    fn file_errors_name_file_line_and_reason() {
        let (_d, p) = file("[relay.test]:587 alice:x\n", 0o640);
        let e = read_file(&p).unwrap_err().to_string();
        assert!(e.contains("readable by group or others (mode 0640)"), "{e}");
        let (_d, p) = file("# c\n[relay.test]:587 alice:x\nbad.test nocolon\n", 0o600);
        let e = read_file(&p).unwrap_err().to_string();
        assert!(e.ends_with("auth:3: the value is not user:password"), "{e}");
        let (_d, p) = file("x.test user:\n", 0o400);
        let e = read_file(&p).unwrap_err().to_string();
        assert!(e.ends_with(":1: an empty user name or password"), "{e}");
        let e = read_file(Path::new("/nonexistent/auth"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
