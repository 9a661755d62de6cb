//! The main log in Exim's line grammar, so that `eximstats` and Exim-minded
//! admins can read it: `YYYY-MM-DD HH:MM:SS <id> <= sender H=... P=... S=...`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// An append-only main log file.
pub struct MainLog {
    file: Mutex<File>,
    millisec: bool,
}

impl MainLog {
    /// Open (create) the log file, creating its directory; `millisec`
    /// adds milliseconds to the timestamps (Exim's `+millisec`).
    pub fn open(path: &Path, millisec: bool) -> std::io::Result<MainLog> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MainLog {
            file: Mutex::new(file),
            millisec,
        })
    }

    /// Write one line, prefixed with the local time. Each line is a single
    /// write, so lines from concurrent sessions never interleave.
    pub fn write(&self, line: &str) {
        let ts = chrono::Local::now().format(if self.millisec {
            "%Y-%m-%d %H:%M:%S%.3f"
        } else {
            "%Y-%m-%d %H:%M:%S"
        });
        let mut s = format!("{ts} {line}");
        s.retain(|c| c != '\n' && c != '\r');
        s.push('\n');
        if let Err(e) = self.file.lock().unwrap().write_all(s.as_bytes()) {
            tracing::error!(error = %e, "cannot write the main log");
        }
    }
}

/// Exim's host field: `H=(helo) [ip]:port`.
pub fn host_field(helo: Option<&str>, ip: &str, port: u16) -> String {
    let ipf = format!("[{ip}]:{port}");
    match helo {
        Some(h) if !h.is_empty() => format!("H=({}) {ipf}", printable(h)),
        _ => format!("H={ipf}"),
    }
}

/// Replace non-printing characters as Exim's string_printing does.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields() {
        assert_eq!(
            super::host_field(Some("c.test"), "127.0.0.1", 25),
            "H=(c.test) [127.0.0.1]:25"
        );
        assert_eq!(super::host_field(None, "::1", 25), "H=[::1]:25");
        assert_eq!(super::printable("a\tb"), "a\\x09b");
    }
}
