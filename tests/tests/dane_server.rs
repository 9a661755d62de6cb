//! Exim 4.96 as a DANE client of mailgate's own certificate: nsd serves a
//! signed zone with the MX, address and a `3 1 1` TLSA record for
//! mailgate's certificate; Debian's unbound on 127.0.0.2:53 validates it;
//! Exim runs in a private mount namespace whose /etc/resolv.conf names
//! unbound with `options trust-ad` (without it glibc drops the AD bit and
//! Exim refuses DANE), with `hosts_require_dane = *`. Exim's log shows
//! `CV=dane` and mailgate's maildir has the message; a TLSA record with
//! another digest makes Exim defer and deliver nothing (so the first
//! result is DANE's doing).

use mailgate_tests::dnssec::{Unbound, self_signed, sha256_hex, sign_zone};
use mailgate_tests::{Nsd, Server, require};
use std::process::{Command, Stdio};

/// Send one message with Exim, in foreground, resolving through unbound.
fn exim_send(dir: &std::path::Path, to: &str) -> std::process::Output {
    let conf = dir.join("exim.conf");
    let script = format!(
        "mount --bind {resolv} /etc/resolv.conf && exec {exim} -C {conf} -odf -f a@exim-client.test {to}",
        resolv = dir.join("resolv.conf").display(),
        exim = require("exim4").display(),
        conf = conf.display(),
    );
    let mut child = Command::new(require("unshare"))
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(
                format!("From: a@exim-client.test\nTo: {to}\nSubject: dane from exim\n\nhello over DANE\n")
                    .as_bytes(),
            )
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn exim_verifies_mailgate_by_dane() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = self_signed(&["mx.local.test"]);
    std::fs::write(d.join("cert.pem"), &cert.chain_pem).unwrap();
    std::fs::write(d.join("key.pem"), &cert.key_pem).unwrap();
    let s = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            d.join("cert.pem").display(),
            d.join("key.pem").display()
        ),
    );
    let port = s.port;
    let zone = format!(
        "$ORIGIN local.test.
$TTL 300
@ IN SOA ns.local.test. admin.local.test. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
@ IN MX 10 mx
mx IN A 127.0.0.1
_{port}._tcp.mx IN TLSA 3 1 1 {good}
wrong IN MX 10 mx-wrong
mx-wrong IN A 127.0.0.1
_{port}._tcp.mx-wrong IN TLSA 3 1 1 {bad}
",
        good = sha256_hex(&cert.spki),
        bad = sha256_hex(b"some other key"),
    );
    let (signed, anchor) = sign_zone(d, "local.test.", &zone);
    let nsd = Nsd::start_zones(&[("local.test", &signed)]);
    let unbound = Unbound::start("local.test", nsd.port, &anchor);

    // Exim, a pure client: MX by DNSSEC, DANE required.
    let ed = d.join("exim");
    for sub in ["", "spool", "log"] {
        std::fs::create_dir_all(ed.join(sub)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ed.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::write(
        ed.join("resolv.conf"),
        "nameserver 127.0.0.2\noptions trust-ad\n",
    )
    .unwrap();
    std::fs::write(
        ed.join("exim.conf"),
        format!(
            "primary_hostname = exim-client.test
spool_directory = {e}/spool
log_file_path = {e}/log/%slog
keep_environment =
host_lookup =
rfc1413_hosts =
dns_dnssec_ok = 1
begin routers
dnslookup:
  driver = dnslookup
  domains = *
  dnssec_request_domains = *
  self = send
  transport = remote_smtp
  no_more
begin transports
remote_smtp:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_require_dane = *
begin retry
* * F,1h,1h
",
            e = ed.display()
        ),
    )
    .unwrap();

    let out = exim_send(&ed, "user@local.test");
    let log = std::fs::read_to_string(ed.join("log/mainlog")).unwrap_or_default();
    assert!(out.status.success(), "{out:?}\n{log}\n{}", unbound.log());
    let line = log
        .lines()
        .find(|l| l.contains("=> user@local.test"))
        .unwrap_or_else(|| panic!("not delivered:\n{log}\n{}", unbound.log()));
    assert!(line.contains("H=mx.local.test [127.0.0.1]"), "{line}");
    assert!(
        line.contains(" X=TLS") && line.contains(" CV=dane"),
        "{line}"
    );
    let got = s.wait_log("<= a@exim-client.test", 1);
    assert!(got.contains(" X=TLS"), "{got}");
    // Accepted is not yet delivered: wait for the maildir delivery.
    s.wait_log(" => user@local.test", 1);
    let mail = s.maildir("local.test", "user");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("hello over DANE"), "{}", mail[0]);

    // Another digest: Exim defers, nothing arrives.
    let _ = exim_send(&ed, "user@wrong.local.test");
    let log = std::fs::read_to_string(ed.join("log/mainlog")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("user@wrong.local.test") && l.contains("==")),
        "{log}"
    );
    assert!(!log.contains("=> user@wrong.local.test"), "{log}");
    assert_eq!(
        s.mainlog().matches("<= a@exim-client.test").count(),
        1,
        "{}",
        s.mainlog()
    );
}
