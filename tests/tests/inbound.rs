//! Inbound SMTP against the real binary: swaks over each transport, BDAT,
//! SMTP smuggling variants, STARTTLS injection, relay control and limits.

use mailgate_tests::{Client, Server, swaks};
use std::time::Duration;

fn count(log: &str, pat: &str) -> usize {
    log.lines().filter(|l| l.contains(pat)).count()
}

#[test]
fn swaks_plain_pipelining_several_recipients() {
    let s = Server::start("", "");
    let port = s.port.to_string();
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--pipeline",
        "--from",
        "sender@example.test",
        "--to",
        "alice@local.test,bob@local.test,carol@localhost",
        "--header",
        "Subject: plain pipelined",
    ]);
    assert!(ok, "{out}");
    let log = s.wait_log(" Completed", 1);
    assert_eq!(count(&log, " <= sender@example.test H=("), 1, "{log}");
    assert!(log.contains(" P=esmtp L. S="), "{log}");
    assert_eq!(count(&log, " => "), 3, "{log}");
    let m = s.maildir("local.test", "alice");
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("Subject: plain pipelined"));
    assert!(m[0].starts_with(
        "Return-Path: <sender@example.test>\nDelivered-To: alice@local.test\nReceived: from "
    ));
    assert!(m[0].contains("with ESMTP\n"));
    assert_eq!(s.maildir("localhost", "carol").len(), 1);
}

#[test]
fn swaks_starttls_and_implicit_tls() {
    let s = Server::start("", "");
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &s.port.to_string(),
        "-tls",
        "--from",
        "a@example.test",
        "--to",
        "alice@local.test",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("STARTTLS"));
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &s.tls_port.to_string(),
        "--tlsc",
        "--from",
        "b@example.test",
        "--to",
        "alice@local.test",
    ]);
    assert!(ok, "{out}");
    let log = s.wait_log(" Completed", 2);
    assert_eq!(count(&log, " P=esmtps "), 2, "{log}");
    assert_eq!(count(&log, " X=TLS1.3:TLS_"), 2, "{log}");
    let m = s.maildir("local.test", "alice");
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|m| m.contains("with ESMTPS (TLS1.3:TLS_")));
}

#[test]
fn bdat_chunks_and_dsn_parameters_are_kept() {
    let s = Server::start("", "");
    let mut c = Client::connect(s.port);
    assert!(c.cmd("EHLO client.test").contains("250-CHUNKING"));
    c.send(b"MAIL FROM:<s@example.test> RET=HDRS ENVID=QQ314159\r\nRCPT TO:<alice@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@local.test\r\nRCPT TO:<x@remote.test> NOTIFY=NEVER\r\nBDAT 20\r\nSubject: chunked\r\n\r\nBDAT 7 LAST\r\nbody.\r\n");
    for expect in [
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "250 2.0.0 Chunk",
        "250 2.0.0 OK id=",
    ] {
        let r = c.reply();
        assert!(r.starts_with(expect), "{expect}: {r}");
    }
    assert!(c.cmd("QUIT").starts_with("221"));
    let log = s.wait_log(" => alice@local.test", 1);
    assert!(log.contains(" K S="), "{log}");
    let m = s.maildir("local.test", "alice");
    assert!(m[0].ends_with("Subject: chunked\n\nbody.\n"), "{}", m[0]);
    // The remote recipient stays queued with its DSN parameters.
    let (ok, list) = s.cli(&["queue", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains("queued    x@remote.test"), "{list}");
    let id = list.split_whitespace().nth(2).unwrap().to_string();
    let (ok, show) = s.cli(&["queue", "show", &id]);
    assert!(ok, "{show}");
    assert!(show.contains("\"envid\": \"QQ314159\""), "{show}");
    assert!(show.contains("\"ret\": \"Hdrs\""), "{show}");
    assert!(
        show.contains("\"orcpt\": \"rfc822;alice@local.test\""),
        "{show}"
    );
    assert!(show.contains("\"never\": true"), "{show}");
}

/// The smuggling payloads: each hides a second transaction behind a
/// non-standard end-of-data. A vulnerable server would accept two messages.
const SMUGGLE: [&[u8]; 6] = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n",
];

fn smuggle(c: &mut Client, variant: &[u8]) {
    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("354"));
    let mut msg = b"Subject: smuggle\r\n\r\nfirst".to_vec();
    msg.extend_from_slice(variant);
    msg.extend_from_slice(b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<bob@local.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n");
    c.send(&msg);
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
}

fn check_smuggling(s: &Server, transport: &str) {
    let log = s.wait_log(" => alice@local.test", SMUGGLE.len());
    assert_eq!(count(&log, " <= "), SMUGGLE.len(), "{transport}: {log}");
    assert!(!log.contains("evil@example.test H="), "{transport}: {log}");
    assert!(s.maildir("local.test", "bob").is_empty(), "{transport}");
    for m in s.maildir("local.test", "alice") {
        assert!(
            m.contains("MAIL FROM:<evil@example.test>\n"),
            "{transport}: {m}"
        );
        assert!(!m.contains('\r'), "{transport}: bare CR survived: {m:?}");
    }
}

#[test]
fn smuggling_is_impossible_over_plain_smtp() {
    let s = Server::start("", "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    for v in SMUGGLE {
        smuggle(&mut c, v);
    }
    check_smuggling(&s, "plain");
}

#[test]
fn smuggling_is_impossible_over_starttls() {
    let s = Server::start("", "");
    let mut c = Client::starttls(s.port);
    for v in SMUGGLE {
        smuggle(&mut c, v);
    }
    check_smuggling(&s, "starttls");
}

#[test]
fn smuggling_is_impossible_over_implicit_tls() {
    let s = Server::start("", "");
    let mut c = Client::connect_tls(s.tls_port);
    c.cmd("EHLO client.test");
    for v in SMUGGLE {
        smuggle(&mut c, v);
    }
    check_smuggling(&s, "implicit TLS");
}

#[test]
fn message_with_bare_lf_line_endings_is_accepted() {
    let s = Server::start("", "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    c.send(b"Subject: lf\n\nline one\nline two\n.\n");
    // "\n.\n" is not the end; the real end follows.
    c.send(b"\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 OK"));
    s.wait_log(" => alice@local.test", 1);
    let m = s.maildir("local.test", "alice");
    assert!(
        m[0].ends_with("Subject: lf\n\nline one\nline two\n.\n\n"),
        "{:?}",
        m[0]
    );
}

#[test]
fn plaintext_injected_after_starttls_is_discarded() {
    let s = Server::start("", "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
    assert!(c.reply().starts_with("220 2.0.0"));
    c.upgrade();
    // The injected MAIL was dropped: without EHLO, MAIL is out of sequence.
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("503 5.5.1"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    let log = s.wait_log("discarded", 1);
    assert!(
        log.contains("discarded 32 octets of plaintext pipelined after STARTTLS"),
        "{log}"
    );
}

#[test]
fn not_an_open_relay() {
    let s = Server::start("relay_networks = []", "[local]\nusers = [\"alice\"]\n");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    for (rcpt, code) in [
        ("<x@remote.test>", "550 5.7.1"),
        ("<x%remote.test@local.test>", "550 5.7.1"),
        ("<remote.test!x@local.test>", "550 5.7.1"),
        ("<\"x@remote.test\"@local.test>", "550 5.7.1"),
        ("<@local.test:x@remote.test>", "550 5.7.1"),
        ("<nobody@local.test>", "550 5.1.1"),
        ("<alice@local.test>", "250 2.1.5"),
        ("<postmaster@local.test>", "250 2.1.5"),
    ] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert!(r.starts_with(code), "{rcpt}: {r}");
    }
    let log = s.wait_log("rejected RCPT", 6);
    assert!(
        log.contains("F=<a@example.test> rejected RCPT <x@remote.test>: Relaying denied"),
        "{log}"
    );
}

#[test]
fn limits_get_the_right_replies() {
    let s = Server::start(
        "pipe_connect_hosts = []",
        "[limits]\nmax_recipients = 2\nmax_message_size = \"1K\"\nmax_line_length = 600\ncommand_timeout = \"2s\"\nmax_connections_per_ip = 3\n",
    );
    let mut c = Client::connect(s.port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("250-SIZE 1024"), "{ehlo}");
    assert!(!ehlo.contains("PIPECONNECT"), "{ehlo}");
    assert!(c.cmd(&"X".repeat(700)).starts_with("500 5.5.2"));
    assert!(
        c.cmd("MAIL FROM:<a@example.test> SIZE=5000")
            .starts_with("552 5.3.4")
    );
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@local.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@local.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<c@local.test>").starts_with("452 4.5.3"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(&vec![b'x'; 3000]);
    c.send(b"\r\n.\r\n");
    assert!(c.reply().starts_with("552 5.3.4"));
    // Connections per IP: 3 allowed (c is one), the fourth is refused.
    let _c2 = Client::connect(s.port);
    let _c3 = Client::connect(s.port);
    let mut c4 = Client::connect_raw(s.port);
    let r = c4.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    // Command timeout: the idle session gets 421 4.4.2 and is closed.
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.closed());
    let log = s.wait_log("SMTP command timeout", 1);
    assert!(
        log.contains("refused: too many connections from that IP address"),
        "{log}"
    );
}

#[test]
fn early_talker_without_pipe_connect_is_a_sync_error() {
    let s = Server::start("pipe_connect_hosts = [\"192.0.2.0/24\"]", "");
    let mut c = Client::connect_raw(s.port);
    c.send(b"EHLO early.test\r\n");
    let r = c.reply();
    assert!(r.starts_with("554 5.5.0 SMTP synchronization error"), "{r}");
    assert!(c.closed());
    let log = s.wait_log("synchronization error", 1);
    assert!(log.contains("input=\"EHLO early.test\""), "{log}");
}

#[test]
fn early_pipelined_transaction_from_allowed_host() {
    let s = Server::start("", "");
    let mut c = Client::connect_raw(s.port);
    c.send(b"EHLO early.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<alice@local.test>\r\nBDAT 14 LAST\r\nSubject: e\r\n\r\nQUIT\r\n");
    assert!(c.reply().starts_with("220 "));
    assert!(c.reply().contains("250-PIPECONNECT"));
    for expect in ["250 2.1.0", "250 2.1.5", "250 2.0.0 OK", "221 "] {
        let r = c.reply();
        assert!(r.starts_with(expect), "{expect}: {r}");
    }
    let log = s.wait_log(" <= a@example.test", 1);
    assert!(log.contains(" L* K S="), "{log}");
}

#[test]
fn sigterm_lets_a_transaction_in_flight_finish() {
    let mut s = Server::start("shutdown_timeout = \"20s\"", "");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    c.cmd("RCPT TO:<alice@local.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    let mut idle = Client::connect(s.port);
    idle.cmd("EHLO idle.test");
    let pid_log = s.mainlog();
    assert!(pid_log.contains("daemon started"));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.send(b"Subject: late\r\n\r\nfinished after SIGTERM\r\n.\r\n");
        let r = c.reply();
        (r, c.cmd("QUIT"))
    });
    assert!(s.sigterm(Duration::from_secs(15)), "server did not exit");
    let (r, quit) = t.join().unwrap();
    assert!(r.starts_with("250 2.0.0 OK"), "{r}");
    assert!(
        quit.starts_with("421 4.3.2") || quit.starts_with("221"),
        "{quit}"
    );
    // The idle session was told we are going away.
    assert!(idle.reply().starts_with("421 4.3.2"));
    // The accepted message is in the spool or delivered.
    let log = s.mainlog();
    assert!(log.contains(" <= a@example.test"), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    s.restart();
    s.wait_log(" => alice@local.test", 1);
    assert_eq!(s.maildir("local.test", "alice").len(), 1);
}

#[test]
fn a_client_dribbling_bytes_still_hits_the_command_timeout() {
    let s = Server::start("", "[limits]\ncommand_timeout = \"2s\"\n");
    let mut c = Client::connect(s.port);
    let start = std::time::Instant::now();
    // One byte every 300 ms: each read is quick, the command never ends.
    for b in b"EHLO slowloris.test" {
        if !c.try_send(&[*b]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let r = c.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(start.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_client_that_never_reads_is_cut_and_others_are_served() {
    let s = Server::start("", "[limits]\ncommand_timeout = \"2s\"\n");
    let mut greedy = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    greedy.set_nonblocking(true).unwrap();
    // Pipeline EHLOs (each answered with a dozen lines) and read nothing,
    // until our sends block: the server has stopped reading us.
    let chunk = b"EHLO greedy.test\r\n".repeat(256);
    let start = std::time::Instant::now();
    let mut blocked_since: Option<std::time::Instant> = None;
    let cut = loop {
        use std::io::Write;
        match greedy.write(&chunk) {
            Ok(_) => blocked_since = None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(std::time::Instant::now);
                // Meanwhile another client is served normally.
                if since.elapsed() < Duration::from_millis(20) {
                    let mut c = Client::connect(s.port);
                    c.send(b"EHLO polite.test\r\n");
                    assert!(c.reply().starts_with("250"));
                    c.send(b"QUIT\r\n");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => break true,
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(cut, "the server kept a client that never reads");
    let log = s.wait_log("lost while writing: write timed out", 1);
    assert!(log.contains("SMTP connection from"), "{log}");
}
