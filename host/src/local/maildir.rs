//! Maildir delivery: write to `tmp/`, fsync, rename into `new/`, fsync the
//! directory. Line endings become LF, as maildir readers expect.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Create the maildir's directories (and missing parents) 0700, as
/// Dovecot and other mail stores expect.
fn ensure_dirs(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for sub in ["tmp", "new", "cur"] {
        let d = root.join(sub);
        if !d.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)?;
        }
    }
    Ok(())
}

/// Deliver one message; returns the path of the new file.
pub fn deliver(
    root: &Path,
    hostname: &str,
    return_path: &str,
    delivered_to: &str,
    data: &[u8],
) -> io::Result<PathBuf> {
    ensure_dirs(root)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let host: String = hostname
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    let name = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        host
    );
    let tmp = root.join("tmp").join(&name);
    let new = root.join("new").join(&name);
    let mut out = Vec::with_capacity(data.len() + 128);
    out.extend_from_slice(
        format!("Return-Path: <{return_path}>\nDelivered-To: {delivered_to}\n").as_bytes(),
    );
    let mut i = 0;
    while i < data.len() {
        match memchr::memchr(b'\r', &data[i..]) {
            None => {
                out.extend_from_slice(&data[i..]);
                break;
            }
            Some(off) => {
                out.extend_from_slice(&data[i..i + off]);
                i += off;
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                } else {
                    out.push(b'\r');
                    i += 1;
                }
            }
        }
    }
    // Readable by the gateway's user only (Dovecot's mail_location owner).
    let mut f = OpenOptions::new()
        .mode(0o600)
        .create_new(true)
        .write(true)
        .open(&tmp)?;
    let r = f.write_all(&out).and_then(|_| f.sync_all());
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &new)?;
    File::open(root.join("new"))?.sync_all()?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivers_with_lf_endings() {
        let d = tempfile::tempdir().unwrap();
        let p =
            super::deliver(d.path(), "mx", "a@b", "u@l", b"Subject: x\r\n\r\nbody\r\n").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            s,
            "Return-Path: <a@b>\nDelivered-To: u@l\nSubject: x\n\nbody\n"
        );
        assert!(p.parent().unwrap().ends_with("new"));
        assert!(d.path().join("tmp").read_dir().unwrap().next().is_none());
    }
}
