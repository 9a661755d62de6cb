//! Quarantine: a message a plugin asked to quarantine is accepted into
//! `data_dir/quarantine/ID.eml`, durably (file and directory synced) before
//! the 250, on the blocking pool so no async worker waits on the disk.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `data` as `dir/ID.eml` and sync it; `Err` means nothing may be
/// acknowledged.
pub async fn save(dir: &Path, id: &str, data: Vec<u8>) -> std::io::Result<PathBuf> {
    let dir = dir.to_path_buf();
    let path = dir.join(format!("{id}.eml"));
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut f = std::fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(true)
            .write(true)
            .open(&p)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn saved_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = super::save(
            &d.path().join("q"),
            "ID1",
            b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        // A directory that cannot be made is an error, not a lost message.
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(super::save(&file.join("q"), "ID2", vec![]).await.is_err());
    }
}
