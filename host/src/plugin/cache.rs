//! The compile cache: native code wasmtime made from a component, kept so a
//! restart or reload does not compile again. Loading it runs that code in
//! the gateway, so nothing is loaded that this gateway did not write:
//! * the cache directory must belong to us and be writable by nobody else
//!   (otherwise the cache is not used at all);
//! * an entry must be a regular file (not a symlink) of ours that nobody
//!   else may write;
//! * an entry ends with an HMAC-SHA256 over the component's digest and the
//!   code, keyed by a secret kept in the data directory (mode 0600), and is
//!   checked on the bytes in memory before wasmtime sees them.
//!
//! Anything else is recompiled (and the entry rewritten), with a warning.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const TAG_LEN: usize = 32;
const CONTEXT: &[u8] = b"mailgate compiled plugin v1 wasmtime48\0";

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Why the cache cannot be used, or an entry was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Owned by someone else, or writable (or for the key, readable) by
    /// others.
    #[error("{path}: {why}")]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// Owner or mode, in words.
        why: String,
    },
    /// The entry's digest does not match its content.
    #[error("{0}: digest does not match (not written by this gateway, or damaged)")]
    BadDigest(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Check that `meta` is ours and that no one else may write it (`strict`:
/// nor read it).
fn trusted(path: &Path, meta: &std::fs::Metadata, strict: bool) -> Result<(), CacheError> {
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let untrusted = |why: String| CacheError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    if meta.uid() != me {
        return Err(untrusted(format!(
            "owned by uid {}, not by us ({me})",
            meta.uid()
        )));
    }
    let forbidden = if strict { 0o077 } else { 0o022 };
    if meta.mode() & forbidden != 0 {
        return Err(untrusted(format!(
            "mode {:o} lets others {}",
            meta.mode() & 0o777,
            if strict { "in" } else { "write" }
        )));
    }
    Ok(())
}

/// Read a file through a descriptor opened without following symlinks,
/// checking the descriptor's owner and mode.
fn read_trusted(path: &Path, strict: bool) -> Result<Vec<u8>, CacheError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(CacheError::Untrusted {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    trusted(path, &meta, strict)?;
    let mut v = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut v).map_err(io(path))?;
    Ok(v)
}

/// The verified compile cache.
pub struct CompileCache {
    dir: PathBuf,
    key: ring::hmac::Key,
}

impl CompileCache {
    /// Open the cache in `dir` (created, mode 0700, if missing) with the key
    /// in `key_file` (created with 32 random bytes, mode 0600, if missing).
    /// `Err` when either cannot be trusted: then run without a cache.
    pub fn open(dir: &Path, key_file: &Path) -> Result<CompileCache, CacheError> {
        let key = match read_trusted(key_file, true) {
            Ok(k) if k.len() >= 32 => k,
            Ok(_) => {
                return Err(CacheError::Untrusted {
                    path: key_file.to_path_buf(),
                    why: "shorter than 32 bytes".into(),
                });
            }
            Err(CacheError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                create_key(key_file)?
            }
            Err(e) => return Err(e),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        if !meta.is_dir() {
            return Err(CacheError::Untrusted {
                path: dir.to_path_buf(),
                why: "not a directory".into(),
            });
        }
        trusted(dir, &meta, false)?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        })
    }

    /// The entry for the component with SHA-256 `hash` (hex).
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-wasmtime48.cwasm"))
    }

    fn tag(&self, hash: &str, code: &[u8]) -> ring::hmac::Tag {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(hash.as_bytes());
        ctx.update(code);
        ctx.sign()
    }

    /// The code stored for `hash`, verified; `Ok(None)` when there is no
    /// entry.
    pub fn load(&self, hash: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.path(hash);
        let mut bytes = match read_trusted(&path, false) {
            Ok(b) => b,
            Err(CacheError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if bytes.len() < TAG_LEN {
            return Err(CacheError::BadDigest(path));
        }
        let tag = bytes.split_off(bytes.len() - TAG_LEN);
        let want = self.tag(hash, &bytes);
        // Compared in constant time.
        let diff = want
            .as_ref()
            .iter()
            .zip(&tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(CacheError::BadDigest(path));
        }
        Ok(Some(bytes))
    }

    /// Store `code` for `hash`: written to a private temporary file (mode
    /// 0600; another process may compile the same component at the same
    /// time) and renamed over the entry.
    pub fn store(&self, hash: &str, code: &[u8]) -> Result<(), CacheError> {
        let path = self.path(hash);
        let tmp = path.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(code)?;
            f.write_all(self.tag(hash, code).as_ref())?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CacheError::Io {
                path: path.clone(),
                source: e,
            }
        })
    }
}

fn create_key(path: &Path) -> Result<Vec<u8>, CacheError> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| CacheError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("no random numbers"),
        })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut f: File = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(&key).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    // Make sure of the mode whatever the umask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, CompileCache) {
        let d = tempfile::tempdir().unwrap();
        let c = CompileCache::open(&d.path().join("cache"), &d.path().join("data/key")).unwrap();
        (d, c)
    }

    #[test]
    fn what_we_stored_loads_and_nothing_else() {
        let (d, c) = setup();
        assert!(c.load("abc").unwrap().is_none());
        c.store("abc", b"native code").unwrap();
        assert_eq!(c.load("abc").unwrap().unwrap(), b"native code");
        let key = d.path().join("data/key");
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        // The same bytes under another component's name do not verify.
        std::fs::copy(c.path("abc"), c.path("def")).unwrap();
        assert!(matches!(c.load("def"), Err(CacheError::BadDigest(_))));
        // A flipped byte does not verify.
        let mut b = std::fs::read(c.path("abc")).unwrap();
        b[0] ^= 1;
        std::fs::write(c.path("abc"), &b).unwrap();
        assert!(matches!(c.load("abc"), Err(CacheError::BadDigest(_))));
    }

    #[test]
    fn another_key_rejects_the_entry() {
        let (d, c) = setup();
        c.store("abc", b"code").unwrap();
        let other =
            CompileCache::open(&d.path().join("cache"), &d.path().join("other-key")).unwrap();
        assert!(matches!(other.load("abc"), Err(CacheError::BadDigest(_))));
        // The key is reused across opens.
        let again =
            CompileCache::open(&d.path().join("cache"), &d.path().join("data/key")).unwrap();
        assert_eq!(again.load("abc").unwrap().unwrap(), b"code");
    }

    #[test]
    fn writable_by_others_is_not_trusted() {
        let (d, c) = setup();
        c.store("abc", b"code").unwrap();
        std::fs::set_permissions(c.path("abc"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(c.load("abc"), Err(CacheError::Untrusted { .. })));
        // A symlink is not followed.
        std::fs::set_permissions(c.path("abc"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(c.path("abc"), c.path("lnk")).unwrap();
        assert!(c.load("lnk").is_err());
        let dir = d.path().join("cache");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            CompileCache::open(&dir, &d.path().join("data/key")),
            Err(CacheError::Untrusted { .. })
        ));
        let key = d.path().join("data/key");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            CompileCache::open(&dir, &key),
            Err(CacheError::Untrusted { .. })
        ));
    }
}
