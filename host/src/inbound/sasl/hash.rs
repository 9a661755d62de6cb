//! Password hashes as Dovecot and Postfix admins keep them: a scheme
//! prefix (`{SHA512-CRYPT}`) or none, then a crypt(3) or PHC string.

use sha_crypt::password_hash::{self, PasswordVerifier};

/// Why a stored hash cannot be used (the client is told to try later: the
/// table is wrong, not the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// A scheme this gateway does not verify (`{PLAIN}`, MD5-crypt, ...).
    #[error("unsupported password scheme {0}")]
    Unsupported(String),
    /// The string after the scheme is not a hash of that scheme.
    #[error("malformed {0} hash")]
    Malformed(&'static str),
}

/// The kinds of hash understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Sha512,
    Sha256,
    Bcrypt,
    Argon2,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Sha512 => "SHA512-CRYPT",
            Scheme::Sha256 => "SHA256-CRYPT",
            Scheme::Bcrypt => "BLF-CRYPT",
            Scheme::Argon2 => "ARGON2",
        }
    }

    /// The scheme of a bare crypt or PHC string, by its `$id$`.
    fn of_crypt(h: &str) -> Option<Scheme> {
        if h.starts_with("$6$") {
            Some(Scheme::Sha512)
        } else if h.starts_with("$5$") {
            Some(Scheme::Sha256)
        } else if ["$2y$", "$2b$", "$2a$", "$2x$"]
            .iter()
            .any(|p| h.starts_with(p))
        {
            Some(Scheme::Bcrypt)
        } else if h.starts_with("$argon2id$") || h.starts_with("$argon2i$") {
            Some(Scheme::Argon2)
        } else {
            None
        }
    }
}

/// Split `{SCHEME}rest` into the scheme and the hash string.
fn parse(stored: &str) -> Result<(Scheme, &str), HashError> {
    let stored = stored.trim();
    let (prefix, hash) = match stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        Some((p, h)) => (Some(p.to_ascii_uppercase()), h),
        None => (None, stored),
    };
    let by_prefix = match prefix.as_deref() {
        None | Some("CRYPT") => None,
        Some("SHA512-CRYPT") => Some(Scheme::Sha512),
        Some("SHA256-CRYPT") => Some(Scheme::Sha256),
        Some("BLF-CRYPT") => Some(Scheme::Bcrypt),
        Some("ARGON2ID" | "ARGON2I") => Some(Scheme::Argon2),
        Some(other) => return Err(HashError::Unsupported(format!("{{{other}}}"))),
    };
    let by_string = Scheme::of_crypt(hash);
    match (by_prefix, by_string) {
        (Some(p), Some(s)) if p == s => Ok((p, hash)),
        (Some(p), _) => Err(HashError::Malformed(p.name())),
        (None, Some(s)) => Ok((s, hash)),
        (None, None) => Err(HashError::Unsupported(hash.split('$').nth(1).map_or_else(
            || "without a scheme".to_string(),
            |id| format!("crypt ${id}$"),
        ))),
    }
}

/// Check `password` against a stored hash. `Ok(false)` is a wrong
/// password; an error is a hash that cannot be checked. This costs what the
/// hash was made to cost (milliseconds): call it off the async threads.
pub fn verify(stored: &str, password: &str) -> Result<bool, HashError> {
    let (scheme, hash) = parse(stored)?;
    let pw = password.as_bytes();
    match scheme {
        Scheme::Sha512 | Scheme::Sha256 => {
            let ref_ = sha_crypt::PasswordHashRef::new(hash)
                .map_err(|_| HashError::Malformed(scheme.name()))?;
            let alg = if scheme == Scheme::Sha512 {
                sha_crypt::ShaCrypt::SHA512
            } else {
                sha_crypt::ShaCrypt::SHA256
            };
            match alg.verify_password(pw, ref_) {
                Ok(()) => Ok(true),
                Err(password_hash::Error::PasswordInvalid) => Ok(false),
                Err(_) => Err(HashError::Malformed(scheme.name())),
            }
        }
        Scheme::Bcrypt => bcrypt::verify(pw, hash).map_err(|_| HashError::Malformed(scheme.name())),
        Scheme::Argon2 => {
            let parsed = argon2::password_hash::phc::PasswordHash::new(hash)
                .map_err(|_| HashError::Malformed(scheme.name()))?;
            match argon2::Argon2::default().verify_password(pw, &parsed) {
                Ok(()) => Ok(true),
                Err(password_hash::Error::PasswordInvalid) => Ok(false),
                Err(_) => Err(HashError::Malformed(scheme.name())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian 12's Dovecot 2.3 (`doveadm pw -s SCHEME -p secret`).
    const DOVEADM: [&str; 5] = [
        "{SHA512-CRYPT}$6$.gsaQcpexyXnzF2l$jagJefVKOaZT4ZPh0DbR8WRnlczXmIjUOsSudUe9WPlRvEH5y81Nhrg0VizGmlDDj2rF9Ame5WdP6tlAAeFAs.",
        "{SHA256-CRYPT}$5$utH.P2sERurKuDwE$UzpJyCmRSj76N/Cqe375w5auX4jgFmfHQxxD8TAufu5",
        "{BLF-CRYPT}$2y$05$.CTVH/6lUB3M1b3RSkI4qOwE7ZUqLnJrYNZ5tFcrg03/av8OZZd3i",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$MNjhZitLBwSJhe+mLw47bw$QrZnB/HJZ5/MO5BHNlhTVO3DiAx4jL4hyqGPKccRueE",
        "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$Cz5yPKeCTM9lJBq1BcuBUA$HU1/Fk3RKUkF7zHbZ9NJVJYtfcJADsWOGRTk8dJ+3Es",
    ];

    #[test]
    fn dovecot_hashes_verify() {
        for h in DOVEADM {
            assert_eq!(verify(h, "secret"), Ok(true), "{h}");
            assert_eq!(verify(h, "secreT"), Ok(false), "{h}");
            // Without the scheme prefix, as Postfix admins keep crypt strings.
            let bare = h.split_once('}').unwrap().1;
            assert_eq!(verify(bare, "secret"), Ok(true), "{bare}");
        }
    }

    #[test]
    fn schemes_are_told_apart() {
        assert_eq!(
            parse("{PLAIN}secret"),
            Err(HashError::Unsupported("{PLAIN}".into()))
        );
        assert_eq!(
            parse("$1$abc$def"),
            Err(HashError::Unsupported("crypt $1$".into()))
        );
        assert_eq!(
            parse("secret"),
            Err(HashError::Unsupported("without a scheme".into()))
        );
        assert_eq!(
            parse("{SHA512-CRYPT}$2y$05$abc"),
            Err(HashError::Malformed("SHA512-CRYPT"))
        );
        assert_eq!(parse("{sha512-crypt}$6$x$y").unwrap().0, Scheme::Sha512);
        assert_eq!(parse("{CRYPT}$2b$05$x").unwrap().0, Scheme::Bcrypt);
    }

    #[test]
    fn bcrypt_made_here_and_broken_hashes() {
        let b = bcrypt::hash("secret", 4).unwrap();
        assert_eq!(verify(&format!("{{BLF-CRYPT}}{b}"), "secret"), Ok(true));
        assert_eq!(verify(&b, "Secret"), Ok(false));
        assert_eq!(
            verify("{SHA512-CRYPT}$6$broken", "x"),
            Err(HashError::Malformed("SHA512-CRYPT"))
        );
    }
}
