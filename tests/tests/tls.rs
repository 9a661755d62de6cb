//! TLS: resumption with TLS 1.2 tickets and TLS 1.3 across a restart, a
//! configured certificate, an IPv6 listener, and eximstats on our log.

use mailgate_tests::{Client, Server, free_port, require, self_signed_cert, tls_config};
use std::process::Command;

fn deliver_over_tls(c: &mut Client, n: usize) {
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    c.cmd("MAIL FROM:<a@example.test>");
    c.cmd("RCPT TO:<alice@local.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: tls {n}\r\n\r\nx\r\n.\r\n").as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 OK"));
    c.cmd("QUIT");
}

fn resumption_across_restart(tls12: bool, version: &str) {
    let mut s = Server::start("", "");
    let cfg = tls_config(tls12);
    for n in 0..2 {
        let mut c = Client::connect_tls_with(s.tls_port, cfg.clone());
        deliver_over_tls(&mut c, n);
    }
    s.restart();
    let mut c = Client::connect_tls_with(s.tls_port, cfg.clone());
    deliver_over_tls(&mut c, 2);
    let log = s.wait_log(" <= a@example.test", 3);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" <= a@example.test"))
        .collect();
    assert!(lines[0].contains(&format!("X={version}:")), "{}", lines[0]);
    assert!(
        !lines[0].contains(":256* ") && !lines[0].contains(":128* "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("* CV=no"),
        "second connection not resumed: {}",
        lines[1]
    );
    assert!(
        lines[2].contains("* CV=no"),
        "not resumed after restart: {}",
        lines[2]
    );
}

#[test]
fn tls12_ticket_resumption_survives_restart() {
    resumption_across_restart(true, "TLS1.2");
}

#[test]
fn tls13_resumption_survives_restart() {
    resumption_across_restart(false, "TLS1.3");
}

#[test]
fn configured_certificate_is_served() {
    require("openssl");
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    self_signed_cert(&c, &k, "mx.local.test");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&c)
        .output()
        .unwrap()
        .stdout;
    let s = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            c.display(),
            k.display()
        ),
    );
    let cl = Client::connect_tls(s.tls_port);
    assert_eq!(cl.peer_certificate().unwrap(), der);
    assert!(!s.data().join("tls/selfsigned-cert.pem").exists());
}

#[test]
fn self_signed_certificate_is_generated_once_and_kept() {
    let mut s = Server::start("", "");
    let first = Client::connect_tls(s.tls_port).peer_certificate().unwrap();
    s.restart();
    let second = Client::connect_tls(s.tls_port).peer_certificate().unwrap();
    assert_eq!(first, second);
}

#[test]
fn ipv6_listener() {
    let p6 = free_port();
    let s = Server::start(
        "",
        &format!("[[listener]]\naddress = \"[::1]:{p6}\"\nmode = \"starttls\"\n"),
    );
    let mut c = Client::connect_addr(format!("[::1]:{p6}").parse().unwrap());
    deliver_plain(&mut c);
    let log = s.wait_log(" <= a@example.test", 1);
    assert!(log.contains("H=(client.test) [::1]:"), "{log}");
}

fn deliver_plain(c: &mut Client) {
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: v6\r\n\r\nx\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 OK"));
}

#[test]
fn eximstats_reads_the_main_log() {
    let eximstats = require("eximstats");
    let s = Server::start("", "");
    for _ in 0..3 {
        let mut c = Client::connect(s.port);
        deliver_plain(&mut c);
    }
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    c.cmd("RCPT TO:<x@remote.test>");
    s.wait_log(" Completed", 3);
    let out = Command::new(eximstats)
        .arg("-nr")
        .arg(s.data().join("log/mainlog"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .lines()
        .find(|l| l.trim_start().starts_with("Received"))
        .unwrap_or_default()
        .to_string();
    let delivered = text
        .lines()
        .find(|l| l.trim_start().starts_with("Delivered"))
        .unwrap_or_default()
        .to_string();
    let nums = |l: &str| {
        l.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nums(&received).get(1).map(String::as_str),
        Some("3"),
        "{text}"
    );
    assert_eq!(
        nums(&delivered).get(1).map(String::as_str),
        Some("3"),
        "{text}"
    );
    assert!(text.contains("maildir"), "{text}");
}
