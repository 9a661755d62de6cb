//! The cache database (redb): TLS ticket keys, the EHLO cache for early
//! pipelining, per-host retry hints, MTA-STS policies and the plugins'
//! key-value store.
//! Writes commit with an fsync, so they run off the async workers
//! ([`Cache::write`]).

pub mod daily;

use redb::{Database, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// Ticket keys: key id -> created (u64 LE, unix seconds) ‖ 32 key octets.
pub const TICKET_KEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("tls_ticket_keys");

/// Shared handle to the cache database.
#[derive(Clone)]
pub struct Cache {
    db: Arc<Database>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

impl Cache {
    /// Open or create the database file.
    pub fn open(path: &Path) -> Result<Cache, redb::Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(redb::Error::from)?;
        }
        let db = Database::create(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Cache { db: Arc::new(db) })
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Run `f` (a write transaction: it commits with an fsync) on tokio's
    /// blocking pool and wait for it, so an async worker never blocks on
    /// the disk. Writes awaited in turn land in turn.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, redb::Error> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .unwrap_or_else(|e| Err(redb::Error::Io(std::io::Error::other(e))))
    }

    /// Insert (`Some`) or remove (`None`) `key` in a string-keyed table,
    /// as one committed write on the blocking pool.
    pub async fn put(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<(), redb::Error> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(table)?;
                match &value {
                    Some(v) => {
                        t.insert(key.as_str(), v.as_slice())?;
                    }
                    None => {
                        t.remove(key.as_str())?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
