//! Exim 4.96 (Debian's exim4-daemon-heavy, private config) as the sending
//! client with `hosts_pipe_connect = *` and `tls_resumption_hosts = *`.
//! Its second delivery must use early pipelining and TLS resumption, seen
//! in both Exim's log and ours; resumption must survive a mailgate restart
//! because the ticket keys are kept in the cache database.

use mailgate_tests::{Server, require};
use std::path::Path;
use std::process::{Command, Stdio};

fn exim_config(dir: &Path, port: u16) -> String {
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

fn send_with_exim(dir: &Path, n: usize) {
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

fn exim_deliveries(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log/mainlog"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" => alice@local.test"))
        .map(str::to_string)
        .collect()
}

#[test]
fn exim_second_delivery_uses_early_pipelining_and_resumption() {
    let mut s = Server::start("", "");
    let ex = tempfile::tempdir().unwrap();
    for sub in ["spool", "log"] {
        std::fs::create_dir_all(ex.path().join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for sub in ["", "spool", "log"] {
        std::fs::set_permissions(ex.path().join(sub), std::fs::Permissions::from_mode(0o777))
            .unwrap();
    }
    std::fs::write(ex.path().join("exim.conf"), exim_config(ex.path(), s.port)).unwrap();

    // First delivery: fills Exim's EHLO cache and TLS session store.
    send_with_exim(ex.path(), 1);
    let log = s.wait_log(" <= sender@exim-client.test", 1);
    let first: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .collect();
    assert!(first[0].contains(" P=esmtps L. X=TLS1.3:"), "{}", first[0]);
    assert!(
        !first[0].contains(":256* "),
        "first delivery cannot be resumed: {}",
        first[0]
    );
    let d = exim_deliveries(ex.path());
    assert!(!d[0].contains(" L*"), "{}", d[0]);

    // Later deliveries: early pipelining and resumption, both sides. Our
    // server (like Exim) notices early input by looking for it when the
    // banner is due, which can race on a loaded machine; so make several
    // deliveries and require it at least once. Resumption is checked on all.
    for n in 2..=4 {
        send_with_exim(ex.path(), n);
    }
    let log = s.wait_log(" <= sender@exim-client.test", 4);
    let later: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .skip(1)
        .collect();
    assert!(
        later.iter().all(|l| l.contains(":256* ")),
        "mailgate did not resume: {later:?}"
    );
    assert!(
        later.iter().any(|l| l.contains(" L* ")),
        "mailgate never saw early pipelining: {later:?}"
    );
    assert!(later.iter().all(|l| l.contains(" K S=")), "{later:?}");
    let d = exim_deliveries(ex.path());
    assert!(
        d[1..].iter().all(|l| l.contains(" L* ")),
        "Exim did not use early pipelining: {d:?}"
    );
    assert!(
        d[1..].iter().all(|l| l.contains("* CV=")),
        "Exim did not resume: {d:?}"
    );

    // After a restart the ticket keys come back from redb: still resumed.
    s.restart();
    send_with_exim(ex.path(), 5);
    let log = s.wait_log(" <= sender@exim-client.test", 5);
    let fifth = log
        .lines()
        .filter(|l| l.contains(" <= sender@exim"))
        .nth(4)
        .unwrap()
        .to_string();
    assert!(
        fifth.contains(":256* "),
        "no resumption after restart: {fifth}"
    );
    let d = exim_deliveries(ex.path());
    assert!(d[4].contains(" L* ") && d[4].contains("* CV="), "{}", d[4]);

    s.wait_log(" => alice@local.test", 5);
    let m = s.maildir("local.test", "alice");
    assert_eq!(m.len(), 5);
    assert!(m.iter().any(|m| m.contains("Subject: exim delivery 5")));
}
