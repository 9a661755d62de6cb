//! The main log: typed [`Event`]s, written in Exim's line grammar so that
//! `eximstats` and Exim-minded admins can read it (`YYYY-MM-DD HH:MM:SS
//! <id> <= sender H=... P=... S=...`), or as JSON lines with the same
//! fields (`log.format = "json"`).

mod count;
pub mod event;
pub mod exim;

pub use event::{Early, Event, Peer, RejectStage, SessionNote};

pub use crate::config::LogFormat as Format;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// How many problem lines [`MainLog::recent_problems`] keeps.
const PROBLEMS_KEPT: usize = 20;

/// An append-only main log file.
pub struct MainLog {
    file: Mutex<File>,
    path: std::path::PathBuf,
    /// The latest lines about problems, newest last (`mailgate status`).
    problems: Mutex<std::collections::VecDeque<String>>,
    millisec: bool,
    format: Format,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

impl MainLog {
    /// Open (create) the log file, creating its directory; `millisec`
    /// adds milliseconds to the timestamps (Exim's `+millisec`).
    pub fn open(path: &Path, millisec: bool, format: Format) -> std::io::Result<MainLog> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        Ok(MainLog {
            file: Mutex::new(open_file(path)?),
            path: path.to_path_buf(),
            problems: Mutex::default(),
            millisec,
            format,
        })
    }

    /// Write one event as one line, stamped with the local time. Each line
    /// is a single write, so lines from concurrent sessions never
    /// interleave.
    pub fn event(&self, e: &Event) {
        count::count(crate::metrics::get(), e);
        let now = chrono::Local::now();
        let mut s = match self.format {
            Format::Exim => {
                let ts = now.format(if self.millisec {
                    "%Y-%m-%d %H:%M:%S%.3f"
                } else {
                    "%Y-%m-%d %H:%M:%S"
                });
                let mut s = format!("{ts} {}", exim::render(e));
                s.retain(|c| c != '\n' && c != '\r');
                s
            }
            Format::Json => {
                let line = JsonLine {
                    time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                    event: e,
                };
                // Strings are escaped: no line break survives.
                serde_json::to_string(&line).expect("events serialise")
            }
        };
        if count::is_problem(e) {
            let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() == PROBLEMS_KEPT {
                p.pop_front();
            }
            p.push_back(s.clone());
        }
        s.push('\n');
        if let Err(e) = self.file.lock().unwrap().write_all(s.as_bytes()) {
            tracing::error!(error = %e, "cannot write the main log");
        }
    }
}

/// The log file for appending; created 0640 (the gateway's user and
/// group read it, as Exim's).
fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl MainLog {
    /// Open the log file again by its name (after logrotate renamed it:
    /// SIGUSR1). Lines written meanwhile went to the old file; none is
    /// lost, none is split. On an error the old file stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = open_file(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = f;
        Ok(())
    }

    /// The latest lines about problems (deferrals, failures, failed hosts,
    /// plugin failures, TLS errors, refused reloads), oldest first.
    pub fn recent_problems(&self) -> Vec<String> {
        let p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        p.iter().cloned().collect()
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
    use super::*;

    #[test]
    fn printing() {
        assert_eq!(printable("a\tb"), "a\\x09b");
    }

    #[test]
    fn json_lines_carry_the_same_fields() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("mainlog");
        let log = MainLog::open(&path, false, Format::Json).unwrap();
        log.event(&Event::Completed { id: "ID1".into() });
        log.event(&Event::Rejected {
            peer: Peer::client(Some("c\nx"), "192.0.2.1".parse().unwrap(), 25),
            sender: None,
            stage: RejectStage::Helo,
            by_plugin: true,
            temporary: false,
            reason: "550 no".into(),
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["event"], "completed");
        assert_eq!(lines[0]["id"], "ID1");
        assert!(lines[0]["time"].as_str().unwrap().contains('T'));
        assert_eq!(lines[1]["event"], "rejected");
        assert_eq!(lines[1]["stage"], "helo");
        assert_eq!(lines[1]["peer"]["ip"], "192.0.2.1");
        assert_eq!(lines[1]["peer"]["helo"], "c\nx");
        assert_eq!(lines[1]["by_plugin"], true);
    }
}
