//! REQUIRETLS (RFC 8689) end to end, and the `TLS-Required: No` header:
//! a REQUIRETLS message reaches a second mailgate whose certificate the
//! policy verifies, with REQUIRETLS on its MAIL FROM; to Exim 4.96 (which
//! does not offer REQUIRETLS) and to a server whose TLS would not be
//! verified it bounces with 5.7.10, the bounce carrying the headers only;
//! `TLS-Required: No` lets a message through to a server without STARTTLS
//! that the policy would refuse.

use mailgate_tests::dnssec::TestCa;
use mailgate_tests::{Client, EximServer, Server, free_port};
use std::time::{Duration, Instant};

fn submit(s: &Server, to: &str, requiretls: bool, headers: &str) -> String {
    let mut c = Client::starttls(s.port);
    let tail = if requiretls { " REQUIRETLS" } else { "" };
    let r = c.cmd(&format!("MAIL FROM:<sender@local.test>{tail}"));
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: to {to}\r\n{headers}\r\nsecret body\r\n.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
    c.cmd("QUIT");
    r.trim().rsplit("id=").next().unwrap().to_string()
}

#[test]
fn requiretls_and_tls_required_no() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mailgate REQUIRETLS test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert.chain_pem).unwrap();
    // B: a mailgate with a certificate from the CA.
    let b_cert = ca.issue(&["b-mx.test"]);
    std::fs::write(dir.path().join("b.pem"), &b_cert.chain_pem).unwrap();
    std::fs::write(dir.path().join("b.key"), &b_cert.key_pem).unwrap();
    let b = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            dir.path().join("b.pem").display(),
            dir.path().join("b.key").display()
        ),
    );
    // Exim with a certificate from the same CA (verified, but no
    // REQUIRETLS), and one without STARTTLS.
    let e_cert = ca.issue(&["exim-mx.test"]);
    let ex = EximServer::start_at(
        &["127.0.0.1"],
        free_port(),
        "",
        &e_cert.chain_pem,
        &e_cert.key_pem,
    );
    let plain = EximServer::start(free_port(), "", "tls_advertise_hosts =");
    let verify = |name: &str| {
        format!(
            "{{ level = \"verify\", match = [\"{name}\"], ca_file = \"{}\" }}",
            ca_file.display()
        )
    };
    let a = Server::start_with(
        "",
        &format!(
            "retry_min = \"1h\"\n[outbound.domains.\"b.test\"]\nsmarthost = \"127.0.0.1:{bp}\"\n[outbound.domains.\"exim.test\"]\nsmarthost = \"127.0.0.1:{ep}\"\n[outbound.domains.\"unverified.test\"]\nsmarthost = \"127.0.0.1:{ep}\"\n[outbound.domains.\"plain.test\"]\nsmarthost = \"127.0.0.1:{pp}\"\n",
            bp = b.port,
            ep = ex.port,
            pp = plain.port,
        ),
        &format!(
            "[outbound.tls_policy]\n\"b.test\" = {}\n\"exim.test\" = {}\n\"plain.test\" = \"encrypt\"\n",
            verify("b-mx.test"),
            verify("exim-mx.test")
        ),
    );

    // Verified and offered: delivered, and B saw REQUIRETLS.
    let id = submit(&a, "user@b.test", true, "");
    assert!(a.wait_line(&id, "<=").contains(" REQUIRETLS"));
    let l = a.wait_line(&id, " => ");
    assert!(l.contains(" CV=yes "), "{l}");
    let bl = b.wait_log(" <= sender@local.test", 1);
    let bl = bl
        .lines()
        .find(|l| l.contains(" <= sender@local.test"))
        .unwrap();
    assert!(
        bl.contains(" P=esmtps ") && bl.contains(" REQUIRETLS"),
        "{bl}"
    );

    // Verified but REQUIRETLS not offered (Exim 4.96), and not verified
    // at all: both fail with 5.7.10, nothing reaches Exim.
    let id_exim = submit(&a, "user@exim.test", true, "");
    let id_unverified = submit(&a, "user@unverified.test", true, "");
    let l = a.wait_line(&id_exim, " ** ");
    assert!(l.contains("does not offer REQUIRETLS"), "{l}");
    let l = a.wait_line(&id_unverified, " ** ");
    assert!(l.contains("would not be verified"), "{l}");
    assert!(
        ex.lines(" <= sender@local.test").is_empty(),
        "{}",
        ex.mainlog()
    );
    // The bounces name 5.7.10 and carry the headers only.
    let start = Instant::now();
    while a.maildir("local.test", "sender").len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", a.mainlog());
        std::thread::sleep(Duration::from_millis(100));
    }
    for dsn in a.maildir("local.test", "sender") {
        assert!(dsn.contains("Status: 5.7.10"), "{dsn}");
        assert!(dsn.contains("Subject: to user@"), "{dsn}");
        assert!(!dsn.contains("secret body"), "{dsn}");
    }

    // `TLS-Required: No` lets a message through in clear to a server
    // without STARTTLS; without the header `encrypt` defers.
    let id_relaxed = submit(&a, "relaxed@plain.test", false, "TLS-Required: No\r\n");
    let l = a.wait_line(&id_relaxed, " => ");
    assert!(!l.contains(" X="), "{l}");
    assert_eq!(
        plain.lines(" <= sender@local.test").len(),
        1,
        "{}",
        plain.mainlog()
    );
    let id_strict = submit(&a, "strict@plain.test", false, "");
    let l = a.wait_line(&id_strict, " == ");
    assert!(l.contains("did not offer STARTTLS"), "{l}");
    // REQUIRETLS wins over the header.
    let id_both = submit(&a, "both@plain.test", true, "TLS-Required: No\r\n");
    let l = a.wait_line(&id_both, " ** ");
    assert!(l.contains("REQUIRETLS"), "{l}");
}
