//! Exim 4.96 (Debian's exim4-daemon-heavy, private config) as a sending
//! client of mailgate, with `hosts_pipe_connect = *` and
//! `tls_resumption_hosts = *`: what a test needs to see early pipelining
//! and TLS resumption from the client's side.

use crate::require;
use std::path::Path;
use std::process::{Command, Stdio};

/// A private Exim (spool, log, config) in `dir` that sends everything to
/// 127.0.0.1:`port` over STARTTLS, certificates unverified.
pub fn setup(dir: &Path, port: u16) {
    for sub in ["spool", "log"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for sub in ["", "spool", "log"] {
        std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::write(dir.join("exim.conf"), config(dir, port)).unwrap();
}

fn config(dir: &Path, port: u16) -> String {
    format!(
        "primary_hostname = exim-client.test
qualify_domain = exim-client.test
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
log_selector = +pipelining +tls_resumption +tls_cipher +smtp_confirmation
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
keep_environment =
begin routers
to_mailgate:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = to_mailgate
begin transports
to_mailgate:
  driver = smtp
  port = {port}
  hosts_pipe_connect = *
  tls_resumption_hosts = *
  hosts_require_tls = *
  tls_verify_hosts =
  tls_try_verify_hosts =
  allow_localhost
begin retry
* * F,1m,1m
",
        d = dir.display()
    )
}

/// Send message `n` to alice@local.test and wait for Exim to finish.
pub fn send(dir: &Path, n: usize) {
    let mut child = Command::new(require("exim4"))
        .arg("-C")
        .arg(dir.join("exim.conf"))
        .args(["-odf", "-f", "sender@exim-client.test", "alice@local.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run exim4");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: exim delivery {n}\n\nhello {n}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exim failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exim's delivery lines (`=>`), in order.
pub fn deliveries(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log/mainlog"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" => alice@local.test"))
        .map(str::to_string)
        .collect()
}
