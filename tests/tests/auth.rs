//! Message authentication at acceptance: SPF for HELO and MAIL FROM from
//! records nsd serves, recorded in our Authentication-Results header; an
//! incoming header that claims our authserv-id is removed (RFC 8601 §5),
//! another's stays; `spf_fail = "reject"` refuses MAIL with 550 5.7.23.
//! Every SPF result (include, redirect, macros, the 10-lookup limit, void
//! lookups, DNS failure with `spf_temperror = "defer"`), and iprev for
//! loopback clients. (hickory answers every 127.0.0.0/8 reverse name
//! with `localhost` itself, RFC 6761, so 127.0.0.1 passes and 127.0.0.5,
//! whose name `localhost` does not lead back to it, fails; a served
//! reverse zone is tested with `mailgate auth check`.)

use mailgate_tests::{Client, Nsd, Server, auth_results, plugin_wasm};

const ZONE: &str = "$ORIGIN authtest.
$TTL 300
@ IN SOA ns.authtest. admin.authtest. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
pass IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"
fail IN TXT \"v=spf1 ip4:192.0.2.1 -all\"
client IN A 127.0.0.1
client IN TXT \"v=spf1 a -all\"
soft IN TXT \"v=spf1 ~all\"
neutral IN TXT \"v=spf1 ?all\"
nospf IN A 192.0.2.1
inc IN TXT \"v=spf1 include:pass.authtest -all\"
redir IN TXT \"v=spf1 redirect=pass.authtest\"
mac IN TXT \"v=spf1 exists:%{i}.ip.authtest -all\"
127.0.0.1.ip IN A 127.0.0.2
users IN TXT \"v=spf1 exists:%{l}.u.authtest -all\"
alice.u IN A 127.0.0.2
limit IN TXT \"v=spf1 a:n1.authtest a:n2.authtest a:n3.authtest a:n4.authtest a:n5.authtest a:n6.authtest a:n7.authtest a:n8.authtest a:n9.authtest a:n10.authtest a:n11.authtest ip4:127.0.0.1 -all\"
n1 IN A 192.0.2.1
n2 IN A 192.0.2.1
n3 IN A 192.0.2.1
n4 IN A 192.0.2.1
n5 IN A 192.0.2.1
n6 IN A 192.0.2.1
n7 IN A 192.0.2.1
n8 IN A 192.0.2.1
n9 IN A 192.0.2.1
n10 IN A 192.0.2.1
n11 IN A 192.0.2.1
ten IN TXT \"v=spf1 a:n1.authtest a:n2.authtest a:n3.authtest a:n4.authtest a:n5.authtest a:n6.authtest a:n7.authtest a:n8.authtest a:n9.authtest ip4:127.0.0.1 -all\"
void IN TXT \"v=spf1 a:v1.authtest a:v2.authtest a:v3.authtest ip4:127.0.0.1 -all\"
twovoid IN TXT \"v=spf1 a:v1.authtest a:v2.authtest ip4:127.0.0.1 -all\"
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

    // Loopback is a relay network by default; relay clients are not
    // refused by SPF actions.
    let strict = Server::start_with(
        "relay_networks = [\"192.0.2.0/24\"]",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        "[auth]\nspf_fail = \"reject\"\n",
    );
    let r = send(&strict, "b@fail.authtest", "Subject: x\r\n\r\nx\r\n");
    assert!(r[0].starts_with("550 5.7.23"), "{r:?}");
    let r = send(&strict, "a@pass.authtest", "Subject: y\r\n\r\ny\r\n");
    assert!(r[0].starts_with("250"), "{r:?}");
    // The same setting for a relay client: recorded, not refused.
    let relay = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        "[auth]\nspf_fail = \"reject\"\n",
    );
    let r = send(&relay, "b@fail.authtest", "Subject: relay\r\n\r\nx\r\n");
    assert!(r[0].starts_with("250"), "{r:?}");
    let ar = mailgate_tests::auth_results(&relay.delivered("relay"));
    assert!(
        ar.contains("spf=fail smtp.mailfrom=b@fail.authtest"),
        "{ar}"
    );
}

fn results_of(s: &Server, subject: &str) -> String {
    auth_results(&s.delivered(subject))
}

fn send_from(s: &Server, source: &str, helo: &str, from: &str, subject: &str) -> String {
    let mut c = Client::connect_from(source, s.port);
    assert!(c.cmd(&format!("EHLO {helo}")).starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with("250") {
        return r;
    }
    assert!(c.cmd("RCPT TO:<user@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("From: {from}\r\nSubject: {subject}\r\n\r\nx\r\n").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT");
    r
}

#[test]
fn every_spf_result_and_iprev() {
    let nsd = Nsd::start("authtest", ZONE);
    let s = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &format!(
            "[auth]\nreceived_spf = true\n\n[[plugin]]\nname = \"probe\"\npath = \"{}\"\ncapabilities = [\"log\"]\n",
            plugin_wasm("hooks_probe.wasm").display()
        ),
    );
    let cases = [
        ("a@pass.authtest", "spf=pass"),
        ("a@fail.authtest", "spf=fail"),
        ("a@soft.authtest", "spf=softfail"),
        ("a@neutral.authtest", "spf=neutral"),
        ("a@nospf.authtest", "spf=none"),
        ("a@inc.authtest", "spf=pass"),
        ("a@redir.authtest", "spf=pass"),
        ("a@mac.authtest", "spf=pass"),
        ("alice@users.authtest", "spf=pass"),
        ("bob@users.authtest", "spf=fail"),
        // 11 DNS-querying terms: over the limit of 10 (RFC 7208 §4.6.4).
        ("a@limit.authtest", "spf=permerror"),
        ("a@ten.authtest", "spf=pass"),
        // 3 lookups without an answer: over the limit of 2.
        ("a@void.authtest", "spf=permerror"),
        ("a@twovoid.authtest", "spf=pass"),
        // Not served by our nameserver: it refuses, a DNS failure.
        ("a@elsewhere.example", "spf=temperror"),
    ];
    for (from, _) in &cases {
        send_from(&s, "127.0.0.1", "client.authtest", from, from);
    }
    let mut wrong = vec![];
    for (from, want) in &cases {
        let ar = results_of(&s, from);
        if !ar.contains(&format!("{want} smtp.mailfrom={from}")) {
            wrong.push(format!("{from}: {ar}"));
        }
        // HELO client.authtest: its own record allows it.
        assert!(ar.contains("spf=pass smtp.helo=client.authtest"), "{ar}");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let m = s.delivered("a@soft.authtest");
    assert!(m.contains("Received-SPF: softfail"), "{m}");

    // iprev: 127.0.0.1 is localhost and back; 127.0.0.5 is localhost,
    // which is not 127.0.0.5.
    let ar = results_of(&s, "a@pass.authtest");
    assert!(ar.contains("iprev=pass ("), "{ar}");
    // Plugins get the verified name (what the header's comment names; it
    // comes from this machine's hosts file) as the context's client-name,
    // and nothing for a client whose name does not point back.
    let verified = ar
        .split("iprev=pass (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    for (source, name) in [("127.0.0.1", verified.as_str()), ("127.0.0.5", "none")] {
        let mut c = Client::connect_from(source, s.port);
        c.cmd("EHLO client.authtest");
        assert!(c.cmd("MAIL FROM:<a@pass.authtest>").starts_with("250"));
        let r = c.cmd("RCPT TO:<whoami@local.test>");
        assert!(
            r.contains(&format!("; client-name: {name}")),
            "{source}: {r}"
        );
    }
    assert!(ar.contains(") policy.iprev=127.0.0.1;"), "{ar}");
    send_from(
        &s,
        "127.0.0.5",
        "client.authtest",
        "a@pass.authtest",
        "iprev 5",
    );
    let ar = results_of(&s, "iprev 5");
    assert!(ar.contains("iprev=fail (localhost)"), "{ar}");
    assert!(ar.contains("policy.iprev=127.0.0.5"), "{ar}");
    // SPF sees that client's own address: pass.authtest allows 127/8.
    assert!(
        ar.contains("spf=pass smtp.mailfrom=a@pass.authtest"),
        "{ar}"
    );
    assert!(ar.contains("spf=fail smtp.helo=client.authtest"), "{ar}");

    // DNS failure deferred when so configured.
    // Loopback is a relay network by default; relay clients are not
    // refused by SPF actions.
    let strict = Server::start_with(
        "relay_networks = [\"192.0.2.0/24\"]",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        "[auth]\nspf_temperror = \"defer\"\n",
    );
    let r = send_from(
        &strict,
        "127.0.0.1",
        "client.authtest",
        "a@elsewhere.example",
        "t",
    );
    assert!(r.starts_with("451 4.7.24"), "{r}");
    let r = send_from(
        &strict,
        "127.0.0.1",
        "client.authtest",
        "a@pass.authtest",
        "ok",
    );
    assert!(r.starts_with("250"), "{r}");
}
