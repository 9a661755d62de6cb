//! Keyed lookup tables (Exim's lsearch and LMDB lookups, Postfix's
//! postmap): `mailgate table build NAME SOURCE` turns a text source
//! ([`source`]) into a redb file under `{data_dir}/tables/` ([`store`]),
//! swapped in by rename. The configuration names tables as `table:NAME`
//! wherever it takes a list of domains, users or networks, and plugins
//! read them through the `lookup` capability.
//!
//! [`Tables`] is the running server's view: each lookup checks whether the
//! file was replaced (one `stat`) and opens the new version then, so a
//! rebuild is seen at the next lookup, without a restart and without any
//! lookup ever waiting for a build or seeing half of one.

pub mod cidr;
pub mod search;
pub mod source;
pub mod store;

pub use source::Kind;
pub use store::{Info, Table};

use crate::config::{Config, HostList, NameList};
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A lookup that cannot be answered. Whoever asked must not take it for
/// "no such key": mail waits (4xx, deferral) until the table is back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No such table file.
    #[error("lookup table {0} does not exist (mailgate table build {0} SOURCE)")]
    Missing(String),
    /// The file cannot be read as a table.
    #[error("lookup table {name} cannot be read: {reason}")]
    Unreadable {
        /// The table.
        name: String,
        /// Why.
        reason: String,
    },
    /// Not a usable table name.
    #[error("{0:?} is not a table name (letters, digits, '-', '_' and '.', not first)")]
    BadName(String),
}

/// The identity of a table file version: a rebuild renames a new file in,
/// which changes the inode; a file changed in place (not by `table
/// build`) changes its size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

/// The tables of one data directory, opened on first use.
#[derive(Debug)]
pub struct Tables {
    dir: PathBuf,
    open: RwLock<HashMap<String, (FileId, Arc<Table>)>>,
}

/// Check that `name` is a plain file name.
pub fn check_name(name: &str) -> Result<(), TableError> {
    if crate::config::table_name_ok(name) {
        Ok(())
    } else {
        Err(TableError::BadName(name.to_string()))
    }
}

impl Tables {
    /// The tables in `dir` (`{data_dir}/tables`).
    pub fn new(dir: impl Into<PathBuf>) -> Tables {
        Tables {
            dir: dir.into(),
            open: RwLock::new(HashMap::new()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of table `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, TableError> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.table")))
    }

    /// The current version of table `name`: the one already open unless
    /// its file was replaced since.
    pub fn get(&self, name: &str) -> Result<Arc<Table>, TableError> {
        let path = self.path(name)?;
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TableError::Missing(name.to_string()),
            _ => TableError::Unreadable {
                name: name.to_string(),
                reason: e.to_string(),
            },
        })?;
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        };
        if let Some((seen, t)) = self
            .open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            && *seen == id
        {
            return Ok(Arc::clone(t));
        }
        // Opened outside the lock: other lookups go on with the version
        // they have meanwhile.
        let t = Arc::new(Table::open(&path, name)?);
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (id, Arc::clone(&t)));
        Ok(t)
    }

    /// The value for `key` exactly (lower-cased).
    pub fn lookup(&self, name: &str, key: &str) -> Result<Option<String>, TableError> {
        self.get(name)?.get(key)
    }

    /// The value of the most specific key for a domain
    /// ([`search::domain_keys`]).
    pub fn domain(&self, name: &str, domain: &str) -> Result<Option<String>, TableError> {
        Ok(self
            .get(name)?
            .first(&search::domain_keys(domain))?
            .map(|(_, v)| v))
    }

    /// The value of the most specific key for an address
    /// ([`search::address_keys`]).
    pub fn address(&self, name: &str, address: &str) -> Result<Option<String>, TableError> {
        Ok(self
            .get(name)?
            .first(&search::address_keys(address))?
            .map(|(_, v)| v))
    }

    /// The value for an IP address: the first network holding it (CIDR
    /// table) or the address as a key.
    pub fn ip(&self, name: &str, ip: IpAddr) -> Result<Option<String>, TableError> {
        self.get(name)?.get_ip(ip)
    }

    /// True when `name` is written in `list` or found in one of its
    /// tables under one of `keys` (the search order for what it is: see
    /// [`search`]).
    pub fn in_names(
        &self,
        list: &NameList,
        name: &str,
        keys: impl Fn(&str) -> Vec<String>,
    ) -> Result<bool, TableError> {
        if list.contains_listed(name) {
            return Ok(true);
        }
        if list.tables().is_empty() {
            return Ok(false);
        }
        let keys = keys(name);
        for t in list.tables() {
            if self.get(t)?.first(&keys)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// True when `domain` is in `list` (its tables searched with
    /// [`search::domain_keys`]).
    pub fn in_domains(&self, list: &NameList, domain: &str) -> Result<bool, TableError> {
        self.in_names(list, domain, search::domain_keys)
    }

    /// True when `ip` is in `list`: one of its networks, or found in one of
    /// its tables (a CIDR table's networks, or the address as a key).
    pub fn in_hosts(&self, list: &HostList, ip: IpAddr) -> Result<bool, TableError> {
        if list.contains_listed(ip) {
            return Ok(true);
        }
        for t in list.tables() {
            if self.ip(t, ip)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Open every table of `cfg`: a missing or unreadable one is named with
    /// the key that refers to it.
    pub fn check_config(&self, cfg: &Config) -> Result<(), (String, TableError)> {
        for (key, name) in cfg.tables() {
            self.get(&name).map_err(|e| (key.to_string(), e))?;
        }
        Ok(())
    }

    /// Build table `name` from the text `source` (named `source_name` in
    /// errors and in `table list`) and swap it in; the keys given more than
    /// once after the first, with their lines.
    pub fn build(
        &self,
        name: &str,
        kind: Kind,
        text: &[u8],
        source_name: &str,
    ) -> Result<(Info, Vec<(usize, String)>), BuildError> {
        let path = self.path(name)?;
        let src = source::parse(text, kind).map_err(|e| BuildError::Source {
            file: source_name.to_string(),
            error: e,
        })?;
        let info = store::build(&path, name, kind, src.entries, source_name)?;
        Ok((info, src.duplicates))
    }

    /// The tables present, by name, each with what its file says or why
    /// it cannot be read.
    pub fn list(&self) -> Result<Vec<Listed>, TableError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(TableError::Unreadable {
                    name: self.dir.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        let mut out = vec![];
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = f.strip_suffix(".table")
                && check_name(name).is_ok()
            {
                out.push((name.to_string(), self.get(name).map(|t| t.info().clone())));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// One entry of [`Tables::list`]: a table's name and its info.
pub type Listed = (String, Result<Info, TableError>);

/// A build that did not happen (the old version stays in place).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A source line is broken.
    #[error("{file}:{}: {}", error.line, error.reason)]
    Source {
        /// The source's name.
        file: String,
        /// The line and reason.
        error: source::SourceError,
    },
    /// Writing the table failed.
    #[error(transparent)]
    Table(#[from] TableError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_is_seen_at_the_next_lookup_and_a_broken_source_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::new(dir.path().join("tables"));
        assert_eq!(
            t.lookup("users", "alice").unwrap_err(),
            TableError::Missing("users".into())
        );
        t.build(
            "users",
            Kind::Keys,
            b"alice: 1\n*.example.com: wide\n",
            "src",
        )
        .unwrap();
        assert_eq!(t.lookup("users", "ALICE").unwrap().as_deref(), Some("1"));
        assert_eq!(
            t.domain("users", "mx.example.com").unwrap().as_deref(),
            Some("wide")
        );
        let old = t.get("users").unwrap();
        t.build("users", Kind::Keys, b"alice: 2\n", "src").unwrap();
        assert_eq!(t.lookup("users", "alice").unwrap().as_deref(), Some("2"));
        // A lookup that still holds the old version reads it whole.
        assert_eq!(old.get("alice").unwrap().as_deref(), Some("1"));
        let e = t
            .build(
                "users",
                Kind::Keys,
                b"alice: 3\n  \n\"bad: x\n",
                "users.txt",
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "users.txt:3: a quoted key without its closing quote"
        );
        assert_eq!(t.lookup("users", "alice").unwrap().as_deref(), Some("2"));
        let names: Vec<_> = t.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["users"]);
        // Nothing of the failed build is left behind.
        assert_eq!(std::fs::read_dir(t.dir()).unwrap().count(), 1);
    }

    #[test]
    fn cidr_tables_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::new(dir.path());
        t.build(
            "nets",
            Kind::Cidr,
            b"10.0.0.0/8 OK\n0.0.0.0/0 REJECT\n",
            "s",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.ip("nets", ip("10.9.9.9")).unwrap().as_deref(), Some("OK"));
        assert_eq!(
            t.ip("nets", ip("192.0.2.1")).unwrap().as_deref(),
            Some("REJECT")
        );
        let info = t.get("nets").unwrap().info().clone();
        assert_eq!((info.kind, info.entries), (Kind::Cidr, 2));
        assert!(matches!(t.get("../etc"), Err(TableError::BadName(_))));
        assert!(matches!(t.get(".hidden"), Err(TableError::BadName(_))));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::new(dir.path());
        std::fs::write(dir.path().join("x.table"), b"not a database").unwrap();
        assert!(matches!(
            t.lookup("x", "k"),
            Err(TableError::Unreadable { .. })
        ));
    }
}
