//! Message authentication at acceptance: SPF for HELO and MAIL FROM from
//! records nsd serves, recorded in our Authentication-Results header; an
//! incoming header that claims our authserv-id is removed (RFC 8601 §5),
//! another's stays; `spf_fail = "reject"` refuses MAIL with 550 5.7.23.

use mailgate_tests::{Client, Nsd, Server};

const ZONE: &str = "$ORIGIN authtest.
$TTL 300
@ IN SOA ns.authtest. admin.authtest. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
pass IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"
fail IN TXT \"v=spf1 ip4:192.0.2.1 -all\"
client IN A 127.0.0.1
client IN TXT \"v=spf1 a -all\"
";

/// The maildir of user@local.test once it holds `n` messages.
fn mail(s: &Server, n: usize) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let m = s.maildir("local.test", "user");
        if m.len() >= n {
            return m;
        }
        assert!(start.elapsed().as_secs() < 30, "{}", s.mainlog());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn send(s: &Server, from: &str, body: &str) -> Vec<String> {
    let mut c = Client::connect(s.port);
    assert!(c.cmd("EHLO client.authtest").starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with("250") {
        return vec![r];
    }
    assert!(c.cmd("RCPT TO:<user@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(body.as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    vec![r]
}

#[test]
fn spf_results_and_forged_headers() {
    let nsd = Nsd::start("authtest", ZONE);
    let s = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        "",
    );
    send(
        &s,
        "a@pass.authtest",
        "Authentication-Results: mx.local.test; spf=pass smtp.mailfrom=forged\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
From: a@pass.authtest\r\nSubject: spf\r\n\r\nhello\r\n",
    );
    let first = mail(&s, 1);
    let m = &first[0];
    assert_eq!(
        m.matches("Authentication-Results: mx.local.test").count(),
        1,
        "{m}"
    );
    assert!(!m.contains("smtp.mailfrom=forged"), "{m}");
    assert!(
        m.contains("Authentication-Results: other.example; dkim=pass"),
        "{m}"
    );
    assert!(
        m.contains("spf=pass") && m.contains("smtp.mailfrom=a@pass.authtest"),
        "{m}"
    );
    assert!(m.contains("smtp.helo=client.authtest"), "{m}");
    // A failing sender is recorded, not refused, by default.
    send(&s, "b@fail.authtest", "Subject: fail\r\n\r\nx\r\n");
    let mail = mail(&s, 2);
    assert!(
        mail.iter()
            .any(|m| m.contains("spf=fail") && m.contains("b@fail.authtest")),
        "{mail:?}"
    );

    let strict = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        "[auth]\nspf_fail = \"reject\"\n",
    );
    let r = send(&strict, "b@fail.authtest", "Subject: x\r\n\r\nx\r\n");
    assert!(r[0].starts_with("550 5.7.23"), "{r:?}");
    let r = send(&strict, "a@pass.authtest", "Subject: y\r\n\r\ny\r\n");
    assert!(r[0].starts_with("250"), "{r:?}");
}
