//! The routing tables: local domains to maildirs (with alias expansion),
//! everything else to the outbound queue.

use crate::config::{Config, ConfigError, NameList};
use crate::table::{TableError, Tables, search};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

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

/// The routing tables built from the configuration, with the lookup
/// tables it names.
#[derive(Debug, Clone)]
pub struct Router {
    local_domains: NameList,
    relay_domains: NameList,
    users: NameList,
    aliases: BTreeMap<String, Vec<String>>,
    alias_table: Option<String>,
    maildir: String,
    data_dir: String,
    tables: Arc<Tables>,
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
    /// A lookup table could not answer: the address waits (it is not
    /// failed) until it can.
    #[error("{0}")]
    Lookup(#[from] TableError),
}

impl Unrouteable {
    /// True when trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Unrouteable::Lookup(_))
    }
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
            local_domains: cfg.server.local_domains.clone(),
            relay_domains: cfg.server.relay_domains.clone(),
            users: cfg.local.users.clone(),
            aliases,
            alias_table: cfg.local.alias_table.clone(),
            maildir: cfg.local.maildir.clone(),
            data_dir: cfg.server.data_dir.to_string_lossy().into_owned(),
            tables: Arc::new(Tables::new(cfg.tables_dir())),
        })
    }

    /// The lookup tables of this configuration.
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// True when the domain is local.
    pub fn is_local(&self, domain: &str) -> Result<bool, TableError> {
        self.tables.in_domains(&self.local_domains, domain)
    }

    /// True when the domain is relayed for any client (`relay_domains`).
    pub fn is_relay_domain(&self, domain: &str) -> Result<bool, TableError> {
        self.tables.in_domains(&self.relay_domains, domain)
    }

    /// The targets of an alias: `local@domain` before `local`, the
    /// configuration's aliases before the alias table's.
    fn alias(&self, local: &str, domain: &str) -> Result<Option<Vec<String>>, TableError> {
        let full = format!("{local}@{domain}");
        if let Some(t) = self.aliases.get(&full).or_else(|| self.aliases.get(local)) {
            return Ok(Some(t.clone()));
        }
        let Some(table) = &self.alias_table else {
            return Ok(None);
        };
        let found = self.tables.get(table)?.first(&[full, local.to_string()])?;
        Ok(found
            .map(|(_, v)| {
                v.split(',')
                    .map(|s| s.trim().trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty()))
    }

    fn is_user(&self, local: &str, domain: &str) -> Result<bool, TableError> {
        self.tables
            .in_names(&self.users, local, |l| search::user_keys(l, domain))
    }

    /// True when a local address exists (a user or an alias).
    pub fn local_exists(&self, local: &str, domain: &str) -> Result<bool, TableError> {
        let (l, d) = (local.to_lowercase(), domain.to_lowercase());
        // RFC 5321 §4.5.1: postmaster always exists.
        Ok(self.users.is_empty()
            || l == "postmaster"
            || self.is_user(&l, &d)?
            || self.alias(&l, &d)?.is_some())
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
        if !self.is_local(&d)? {
            out.push(Route::Remote(address.to_string()));
            return Ok(());
        }
        let key = format!("{l}@{d}");
        if depth > MAX_DEPTH {
            return Err(Unrouteable::TooDeep(address.to_string()));
        }
        if !seen.contains(&key)
            && let Some(targets) = self.alias(&l, &d)?
        {
            seen.push(key.clone());
            for t in &targets {
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
            && !seen.contains(&key)
            && l != "postmaster"
            && !self.is_user(&l, &d)?
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
        assert!(r.local_exists("postmaster", "other.test").unwrap());
        assert!(!r.local_exists("nobody", "local.test").unwrap());
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
    fn domains_users_and_aliases_from_tables() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[server]\nhostname=\"h\"\ndata_dir=\"{}\"\nlocal_domains=[\"local.test\",\"table:domains\"]\nrelay_domains=[\"table:relayed\"]\n[[listener]]\naddress=\"127.0.0.1:1\"\nmode=\"plain\"\n[local]\nusers=[\"alice\",\"table:users\"]\nalias_table=\"aliases\"\n",
            dir.path().display()
        );
        let cfg = Config::parse(&text, "t").unwrap();
        let r = Router::from_config(&cfg).unwrap();
        // Before the tables exist, their lookups fail: nothing is taken
        // for "not found".
        assert!(matches!(r.is_local("x.test"), Err(TableError::Missing(_))));
        assert!(r.is_local("local.test").unwrap());
        assert!(r.route("bob@local.test").unwrap_err().is_temporary());
        let t = r.tables();
        t.build(
            "domains",
            crate::table::Kind::Keys,
            b"*.corp.test\n.sub.test\n",
            "s",
        )
        .unwrap();
        t.build("relayed", crate::table::Kind::Keys, b"backup.test\n", "s")
            .unwrap();
        t.build(
            "users",
            crate::table::Kind::Keys,
            b"bob@local.test\ncarol\n@catchall.corp.test\n",
            "s",
        )
        .unwrap();
        t.build(
            "aliases",
            crate::table::Kind::Keys,
            b"team: alice, bob@local.test,\n  far@remote.test\n",
            "s",
        )
        .unwrap();
        assert!(r.is_local("corp.test").unwrap());
        assert!(r.is_local("MX.Corp.Test").unwrap());
        assert!(!r.is_local("sub.test").unwrap());
        assert!(r.is_local("a.sub.test").unwrap());
        assert!(r.is_relay_domain("backup.test").unwrap());
        assert!(!r.is_relay_domain("local.test").unwrap());
        assert!(r.local_exists("Bob", "local.test").unwrap());
        assert!(!r.local_exists("bob", "corp.test").unwrap());
        assert!(r.local_exists("carol", "corp.test").unwrap());
        assert!(r.local_exists("anyone", "catchall.corp.test").unwrap());
        assert!(!r.local_exists("dave", "local.test").unwrap());
        assert!(r.local_exists("team", "corp.test").unwrap());
        let routes = r.route("team@local.test").unwrap();
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(routes[2], Route::Remote("far@remote.test".into()));
        assert_eq!(
            r.route("dave@local.test").unwrap_err(),
            Unrouteable::UnknownUser("dave@local.test".into())
        );
    }

    #[test]
    fn alias_file() {
        let a = parse_alias_file("# c\nroot: alice, bob\n  carol\nabuse: root\n", "f").unwrap();
        assert_eq!(a["root"], vec!["alice", "bob", "carol"]);
        let e = parse_alias_file("root alice\n", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:1:1: expected \"name: target, ...\"");
    }
}
