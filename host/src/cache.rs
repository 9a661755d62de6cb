//! The cache database (redb): TLS ticket keys now; EHLO/pipe-connect,
//! DNS and retry hints will live here too.

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
}
