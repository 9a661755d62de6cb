//! The routing tables: local domains to maildirs (with alias expansion),
//! everything else to the outbound queue.

use crate::config::{Config, ConfigError};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Where one address ends up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// A local mailbox.
    Local {
        /// The mailbox address (lower case).
        address: String,
        /// Its maildir.
        maildir: PathBuf,
    },
    /// A remote address for the outbound queue.
    Remote(String),
}

/// The routing tables built from the configuration.
#[derive(Debug, Clone)]
pub struct Router {
    local_domains: Vec<String>,
    users: HashSet<String>,
    aliases: BTreeMap<String, Vec<String>>,
    maildir: String,
    data_dir: String,
}

const MAX_DEPTH: usize = 10;

/// Why an address cannot be routed at all (it fails, with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrouteable {
    /// Aliases nest deeper than ten levels.
    #[error("alias expansion of {0} is too deep")]
    TooDeep(String),
    /// A local domain without such a user (when `local.users` is set).
    #[error("Unrouteable address {0}: unknown user")]
    UnknownUser(String),
}

fn split(addr: &str) -> (&str, &str) {
    match addr.rfind('@') {
        Some(i) => (&addr[..i], &addr[i + 1..]),
        None => (addr, ""),
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Parse an /etc/aliases-style file: `name: target, target`, `#` comments,
/// continuation lines start with white space.
pub fn parse_alias_file(
    text: &str,
    file: &str,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String, usize)> = None;
    let finish = |cur: Option<(String, String, usize)>,
                  out: &mut BTreeMap<String, Vec<String>>|
     -> Result<(), ConfigError> {
        if let Some((name, targets, line)) = cur {
            let t: Vec<String> = targets
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if t.is_empty() {
                return Err(ConfigError {
                    file: file.to_string(),
                    position: Some((line, 1)),
                    reason: format!("alias {name} has no targets"),
                });
            }
            out.insert(name.to_lowercase(), t);
        }
        Ok(())
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some(c) => {
                    c.1.push(',');
                    c.1.push_str(line.trim());
                }
                None => {
                    return Err(ConfigError {
                        file: file.to_string(),
                        position: Some((n + 1, 1)),
                        reason: "continuation line without an alias".into(),
                    });
                }
            }
            continue;
        }
        finish(current.take(), &mut out)?;
        let Some((name, targets)) = line.split_once(':') else {
            return Err(ConfigError {
                file: file.to_string(),
                position: Some((n + 1, 1)),
                reason: "expected \"name: target, ...\"".into(),
            });
        };
        current = Some((name.trim().to_string(), targets.to_string(), n + 1));
    }
    finish(current.take(), &mut out)?;
    Ok(out)
}

impl Router {
    /// Build from the configuration (reads the alias file if one is named).
    pub fn from_config(cfg: &Config) -> Result<Router, ConfigError> {
        let mut aliases: BTreeMap<String, Vec<String>> = cfg
            .aliases
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.clone()))
            .collect();
        if let Some(path) = &cfg.local.alias_file {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: name.clone(),
                position: None,
                reason: format!("cannot read alias file: {e}"),
            })?;
            for (k, v) in parse_alias_file(&text, &name)? {
                aliases.entry(k).or_insert(v);
            }
        }
        Ok(Router {
            local_domains: cfg
                .server
                .local_domains
                .iter()
                .map(|d| d.to_lowercase())
                .collect(),
            users: cfg.local.users.iter().map(|u| u.to_lowercase()).collect(),
            aliases,
            maildir: cfg.local.maildir.clone(),
            data_dir: cfg.server.data_dir.to_string_lossy().into_owned(),
        })
    }

    /// True when the domain is local.
    pub fn is_local(&self, domain: &str) -> bool {
        let d = domain.to_lowercase();
        self.local_domains.contains(&d)
    }

    fn alias(&self, local: &str, domain: &str) -> Option<&Vec<String>> {
        self.aliases
            .get(&format!("{local}@{domain}"))
            .or_else(|| self.aliases.get(local))
    }

    /// True when a local address exists (a user or an alias).
    pub fn local_exists(&self, local: &str, domain: &str) -> bool {
        let (l, d) = (local.to_lowercase(), domain.to_lowercase());
        // RFC 5321 §4.5.1: postmaster always exists.
        self.users.is_empty()
            || self.users.contains(&l)
            || l == "postmaster"
            || self.alias(&l, &d).is_some()
    }

    fn maildir_for(&self, local: &str, domain: &str) -> PathBuf {
        PathBuf::from(
            self.maildir
                .replace("{data_dir}", &self.data_dir)
                .replace("{domain}", &safe(domain))
                .replace("{local_part}", &safe(local)),
        )
    }

    /// Route an address: local mailboxes (after alias expansion) and remote
    /// addresses. An error means the address cannot be routed at all.
    pub fn route(&self, address: &str) -> Result<Vec<Route>, Unrouteable> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        self.route_into(address, 0, &mut seen, &mut out)?;
        let mut uniq = HashSet::new();
        out.retain(|r| uniq.insert(r.clone()));
        Ok(out)
    }

    fn route_into(
        &self,
        address: &str,
        depth: usize,
        seen: &mut Vec<String>,
        out: &mut Vec<Route>,
    ) -> Result<(), Unrouteable> {
        let (local, domain) = split(address);
        let (l, d) = (local.to_lowercase(), domain.to_lowercase());
        if !self.is_local(&d) {
            out.push(Route::Remote(address.to_string()));
            return Ok(());
        }
        let key = format!("{l}@{d}");
        if depth > MAX_DEPTH {
            return Err(Unrouteable::TooDeep(address.to_string()));
        }
        if !seen.contains(&key)
            && let Some(targets) = self.alias(&l, &d)
        {
            seen.push(key.clone());
            for t in targets {
                let full = if t.contains('@') {
                    t.clone()
                } else {
                    format!("{t}@{d}")
                };
                self.route_into(&full, depth + 1, seen, out)?;
            }
            seen.pop();
            return Ok(());
        }
        if !self.users.is_empty()
            && !self.users.contains(&l)
            && !seen.contains(&key)
            && l != "postmaster"
        {
            return Err(Unrouteable::UnknownUser(address.to_string()));
        }
        out.push(Route::Local {
            maildir: self.maildir_for(&l, &d),
            address: key,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(extra: &str) -> Router {
        let text = format!(
            "[server]\nhostname=\"h\"\ndata_dir=\"/d\"\nlocal_domains=[\"local.test\",\"other.test\"]\n[[listener]]\naddress=\"127.0.0.1:1\"\nmode=\"plain\"\n{extra}"
        );
        Router::from_config(&Config::parse(&text, "t").unwrap()).unwrap()
    }

    #[test]
    fn local_remote_and_aliases() {
        let r = router(
            "[local]\nusers=[\"alice\",\"bob\"]\n[aliases]\npostmaster=[\"alice\"]\nteam=[\"alice\",\"bob@other.test\",\"carol@remote.test\"]\n\"loop@local.test\"=[\"loop2\"]\nloop2=[\"loop@local.test\"]\n",
        );
        assert_eq!(
            r.route("x@remote.test").unwrap(),
            vec![Route::Remote("x@remote.test".into())]
        );
        assert_eq!(
            r.route("Alice@Local.Test").unwrap(),
            vec![Route::Local {
                address: "alice@local.test".into(),
                maildir: "/d/maildir/local.test/alice".into()
            }]
        );
        let t = r.route("team@local.test").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], Route::Remote("carol@remote.test".into()));
        assert!(r.route("nobody@local.test").is_err());
        assert!(r.local_exists("postmaster", "other.test"));
        assert!(!r.local_exists("nobody", "local.test"));
        // A loop ends in delivery to the address that closes it.
        let l = r.route("loop@local.test").unwrap();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn unsafe_characters_stay_inside_the_maildir_root() {
        let r = router("");
        match &r.route("../../etc@local.test").unwrap()[0] {
            Route::Local { maildir, .. } => {
                assert_eq!(maildir, &PathBuf::from("/d/maildir/local.test/_.._etc"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_file() {
        let a = parse_alias_file("# c\nroot: alice, bob\n  carol\nabuse: root\n", "f").unwrap();
        assert_eq!(a["root"], vec!["alice", "bob", "carol"]);
        let e = parse_alias_file("root alice\n", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:1:1: expected \"name: target, ...\"");
    }
}
