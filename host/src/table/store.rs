//! A table's file: a redb database written once by [`build`] under a
//! temporary name, synced, then renamed over the old version, so a reader
//! opens either the old file or the new one, never half of either. Keyed
//! tables are read from the file per lookup; CIDR tables are loaded into a
//! [`CidrIndex`] when opened.

use super::TableError;
use super::cidr::CidrIndex;
use super::source::{Entry, Kind};
use crate::config::Network;
use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};
use std::net::IpAddr;
use std::path::Path;

/// Keyed tables: key (lower case) -> value.
const ENTRIES: TableDefinition<&str, &str> = TableDefinition::new("entries");
/// CIDR tables: source position -> (network, value).
const NETWORKS: TableDefinition<u64, (&str, &str)> = TableDefinition::new("networks");
/// What the file holds: `kind`, `entries`, `source`, `built` (unix
/// seconds), `format`.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The file layout this code writes and reads.
const FORMAT: &str = "1";

/// What `table list` shows of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Keys or networks.
    pub kind: Kind,
    /// Number of entries.
    pub entries: u64,
    /// The source it was built from (as named to `table build`).
    pub source: String,
    /// When it was built (unix seconds).
    pub built: u64,
}

/// An open table version.
pub struct Table {
    name: String,
    info: Info,
    db: ReadOnlyDatabase,
    cidr: Option<CidrIndex>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish()
    }
}

fn corrupt(name: &str, e: impl std::fmt::Display) -> TableError {
    TableError::Unreadable {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// Write `source` as table `name` at `path`: a temporary file beside it,
/// synced, renamed over `path`, and the directory synced.
pub fn build(
    path: &Path,
    name: &str,
    kind: Kind,
    entries: Vec<Entry>,
    source_name: &str,
) -> Result<Info, TableError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| corrupt(name, e))?;
    let tmp = dir.join(format!(".{name}.build-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let built = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let info = Info {
        kind,
        entries: entries.len() as u64,
        source: source_name.to_string(),
        built,
    };
    let result = (|| -> Result<(), redb::Error> {
        // A small cache: the file is written once, in key order.
        let db = redb::Database::builder()
            .set_cache_size(16 << 20)
            .create(&tmp)?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            meta.insert("format", FORMAT)?;
            meta.insert("kind", kind.name())?;
            meta.insert("entries", info.entries.to_string().as_str())?;
            meta.insert("source", source_name)?;
            meta.insert("built", built.to_string().as_str())?;
            match kind {
                Kind::Keys => {
                    let mut t = tx.open_table(ENTRIES)?;
                    // Sorted by key (source::parse): the B-tree is filled
                    // by appends.
                    // Each entry is freed once written, so the source and
                    // the transaction's pages are not both held whole.
                    for e in entries {
                        t.insert(e.key.as_str(), e.value.as_str())?;
                    }
                }
                Kind::Cidr => {
                    let mut t = tx.open_table(NETWORKS)?;
                    for (i, e) in entries.into_iter().enumerate() {
                        t.insert(i as u64, (e.key.as_str(), e.value.as_str()))?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(corrupt(name, e));
    }
    let sync = || -> std::io::Result<()> {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    sync().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        corrupt(name, e)
    })?;
    Ok(info)
}

impl Table {
    /// Open the table file at `path`.
    pub fn open(path: &Path, name: &str) -> Result<Table, TableError> {
        let db = ReadOnlyDatabase::open(path).map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::NotFound =>
            {
                TableError::Missing(name.to_string())
            }
            e => corrupt(name, e),
        })?;
        let (info, cidr) = {
            let tx = db.begin_read().map_err(|e| corrupt(name, e))?;
            let meta = tx.open_table(META).map_err(|e| corrupt(name, e))?;
            let get = |k: &str| -> Result<String, TableError> {
                meta.get(k)
                    .map_err(|e| corrupt(name, e))?
                    .map(|v| v.value().to_string())
                    .ok_or_else(|| corrupt(name, format!("no {k} in the table's metadata")))
            };
            let format = get("format")?;
            if format != FORMAT {
                return Err(corrupt(
                    name,
                    format!("table format {format}, this version reads {FORMAT}: build it again"),
                ));
            }
            let kind =
                Kind::parse(&get("kind")?).ok_or_else(|| corrupt(name, "unknown table kind"))?;
            let info = Info {
                kind,
                entries: get("entries")?.parse().unwrap_or(0),
                source: get("source")?,
                built: get("built")?.parse().unwrap_or(0),
            };
            let cidr = match kind {
                Kind::Keys => None,
                Kind::Cidr => {
                    let t = tx.open_table(NETWORKS).map_err(|e| corrupt(name, e))?;
                    let mut index = CidrIndex::default();
                    for row in t.iter().map_err(|e| corrupt(name, e))? {
                        let (_, v) = row.map_err(|e| corrupt(name, e))?;
                        let (net, value) = v.value();
                        let net = Network::parse(net).map_err(|e| corrupt(name, e))?;
                        index.push(net, value.to_string());
                    }
                    Some(index)
                }
            };
            (info, cidr)
        };
        Ok(Table {
            name: name.to_string(),
            info,
            db,
            cidr,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the file says of itself.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The value of the first of `keys` present (each lower-cased), with
    /// that key, from one read transaction (one consistent version). A
    /// CIDR table looks up keys that are IP addresses.
    pub fn first(&self, keys: &[String]) -> Result<Option<(String, String)>, TableError> {
        if let Some(index) = &self.cidr {
            for k in keys {
                if let Ok(ip) = k.parse::<IpAddr>()
                    && let Some(v) = index.get(ip)
                {
                    return Ok(Some((k.clone(), v.to_string())));
                }
            }
            return Ok(None);
        }
        let name = self.name.as_str();
        let tx = self.db.begin_read().map_err(|e| corrupt(name, e))?;
        let t = tx.open_table(ENTRIES).map_err(|e| corrupt(name, e))?;
        for k in keys {
            let k = k.to_lowercase();
            if let Some(v) = t.get(k.as_str()).map_err(|e| corrupt(name, e))? {
                return Ok(Some((k, v.value().to_string())));
            }
        }
        Ok(None)
    }

    /// The value for `key` exactly (lower-cased; an IP address in a CIDR
    /// table).
    pub fn get(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.first(&[key.to_string()])?.map(|(_, v)| v))
    }

    /// The value of the first network holding `ip` (a CIDR table), or of
    /// the key that is the address as text (a keyed table).
    pub fn get_ip(&self, ip: IpAddr) -> Result<Option<String>, TableError> {
        match &self.cidr {
            Some(index) => Ok(index.get(ip).map(str::to_string)),
            None => self.get(&ip.to_string()),
        }
    }

    /// Every entry in key order (keyed tables) or source order (CIDR).
    pub fn entries(&self) -> Result<Vec<(String, String)>, TableError> {
        let name = self.name.as_str();
        let tx = self.db.begin_read().map_err(|e| corrupt(name, e))?;
        let mut out = vec![];
        match self.info.kind {
            Kind::Keys => {
                let t = tx.open_table(ENTRIES).map_err(|e| corrupt(name, e))?;
                for row in t.iter().map_err(|e| corrupt(name, e))? {
                    let (k, v) = row.map_err(|e| corrupt(name, e))?;
                    out.push((k.value().to_string(), v.value().to_string()));
                }
            }
            Kind::Cidr => {
                let t = tx.open_table(NETWORKS).map_err(|e| corrupt(name, e))?;
                for row in t.iter().map_err(|e| corrupt(name, e))? {
                    let (_, v) = row.map_err(|e| corrupt(name, e))?;
                    let (n, val) = v.value();
                    out.push((n.to_string(), val.to_string()));
                }
            }
        }
        Ok(out)
    }
}
