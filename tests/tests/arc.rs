//! The ARC plugin against dkimpy (Debian's python3-dkim), the reference
//! ARC implementation, with keys nsd serves.
//! - Chains dkimpy seals (one hop, two hops) pass the plugin's
//!   validation; one whose body changed after sealing fails; a message
//!   without a chain is `arc=none`.
//! - mailgate seals every outgoing copy with a host-held key: dkimpy
//!   validates the chain Exim 4.96 received after one mailgate hop and
//!   after two.
//! - A DMARC failure under `p=reject` is delivered when a trusted
//!   forwarder's passing chain vouches for it (`policy.override`), and
//!   refused without one.

use mailgate_tests::dkimpy::{Key, dkimpy_arc_seal, dkimpy_arc_verify, key_records, keygen};
use mailgate_tests::{
    Client, EximServer, Nsd, Server, auth_results, auth_results_of, free_port, plugin_wasm,
    refused_at_load,
};
use std::path::Path;

fn send(port: u16, from: &str, to: &str, data: &str) -> String {
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.arct").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(data.replace("\r\n.", "\r\n..").as_bytes());
    let r = c.cmd(".");
    c.cmd("QUIT");
    r
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nA forwarded body.\r\n.a leading dot\r\n"
    )
}

struct Keys {
    fwd1: Key,
    fwd2: Key,
    a: Key,
    b: Key,
}

fn zone(d: &Path) -> (Keys, String) {
    let keys = Keys {
        fwd1: keygen(d, "fwd1.arct", "s1", false),
        fwd2: keygen(d, "fwd2.arct", "s2", false),
        a: keygen(d, "a.arct", "arc", false),
        b: keygen(d, "b.arct", "arc", false),
    };
    let text = format!(
        "$ORIGIN arct.
$TTL 300
@ IN SOA ns.arct. admin.arct. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
origin IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"
strict IN TXT \"v=spf1 -all\"
_dmarc.strict IN TXT \"v=DMARC1; p=reject\"
{}",
        key_records(&[
            ("s1._domainkey.fwd1", &keys.fwd1),
            ("s2._domainkey.fwd2", &keys.fwd2),
            ("arc._domainkey.a", &keys.a),
            ("arc._domainkey.b", &keys.b),
        ])
    );
    (keys, text)
}

fn arc_plugin(extra: &str) -> String {
    format!(
        "[[plugin]]\nname = \"arc\"\npath = \"{}\"\ncapabilities = [\"log\", \"dns\", \"crypto\", \"clock\"]\ntimeout_ms = 5000\non_failure = \"tempfail\"\n{extra}",
        plugin_wasm("arc.wasm").display()
    )
}

#[test]
fn the_plugin_validates_chains_dkimpy_seals() {
    let dir = tempfile::tempdir().unwrap();
    let (k, zone) = zone(dir.path());
    let nsd = Nsd::start("arct", &zone);
    let s = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &arc_plugin(""),
    );
    let base = |subject: &str| {
        format!(
            "Authentication-Results: fwd1.arct; spf=pass smtp.mailfrom=a@origin.arct\r\n{}",
            message("a@origin.arct", "user@local.test", subject)
        )
    };
    let one =
        |subject: &str| dkimpy_arc_seal(&k.fwd1, "s1", "fwd1.arct", "fwd1.arct", &base(subject));
    let two = |subject: &str| {
        dkimpy_arc_seal(
            &k.fwd2,
            "s2",
            "fwd2.arct",
            "fwd2.arct",
            &format!(
                "Authentication-Results: fwd2.arct; arc=pass\r\n{}",
                one(subject)
            ),
        )
    };
    let keys = [
        ("s1._domainkey.fwd1.arct", &k.fwd1),
        ("s2._domainkey.fwd2.arct", &k.fwd2),
    ];
    // The reference agrees with itself before mailgate is asked.
    assert!(dkimpy_arc_verify(&keys, &two("x")).starts_with("pass 2"));
    let cases = [
        (
            "no chain",
            message("a@origin.arct", "user@local.test", "no chain"),
        ),
        ("one hop", one("one hop")),
        ("two hops", two("two hops")),
        (
            "body changed",
            one("body changed").replace("A forwarded body.", "A changed body."),
        ),
    ];
    for (subject, data) in &cases {
        let r = send(s.port, "a@origin.arct", "user@local.test", data);
        assert!(r.starts_with("250"), "{subject}: {r}\n{}", s.mainlog());
    }
    for (subject, want) in [
        ("no chain", "arc=none"),
        (
            "one hop",
            "arc=pass (i=1) header.oldest-pass=0 smtp.remote-ip=127.0.0.1",
        ),
        (
            "two hops",
            "arc=pass (i=2) header.oldest-pass=0 smtp.remote-ip=127.0.0.1",
        ),
        (
            "body changed",
            "arc=fail (i=1: i=1: AMS body hash does not match)",
        ),
    ] {
        let ar = auth_results(&s.delivered(subject));
        assert!(ar.contains(want), "{subject}: {ar}");
    }
}

/// Exim's copy of the message whose Subject is `subject` (CRLF).
fn exim_copy(ex: &EximServer, subject: &str, gateways: &[&Server]) -> String {
    let start = std::time::Instant::now();
    loop {
        let found = ex
            .lines(" <= ")
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
            .map(|id| ex.message(&id))
            .find(|m| m.contains(&format!("Subject: {subject}\n")));
        if let Some(m) = found {
            return m.replace("\r\n", "\n").replace('\n', "\r\n");
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "{subject}: exim got:\n{}\n{}",
            ex.mainlog(),
            gateways
                .iter()
                .map(|g| g.mainlog())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn mailgate_seals_and_dkimpy_validates_after_one_and_two_hops() {
    let dir = tempfile::tempdir().unwrap();
    let (k, zone) = zone(dir.path());
    let nsd = Nsd::start("arct", &zone);
    let ex = EximServer::start(free_port(), "", "");
    let gateway = |id: &str, next: u16, key: &Path, extra: &str| {
        Server::start_with(
            "",
            &format!(
                "smarthost = \"127.0.0.1:{next}\"\nnameservers = [\"127.0.0.1:{}\"]\n",
                nsd.port
            ),
            &format!(
                "[auth]\nauthserv_id = \"{id}.arct\"\n\n{}keys = {{ seal = \"{}\" }}\n[plugin.config]\nauthserv_id = \"{id}.arct\"\nseal = {{ domain = \"{id}.arct\", selector = \"arc\", key = \"seal\", expire = 86400 }}\n{extra}",
                arc_plugin(""),
                key.display()
            ),
        )
    };
    // a delivers to Exim and runs DMARC trusting b; b forwards to a.
    let a = gateway(
        "a",
        ex.port,
        &k.a.pem,
        &format!(
            "\n[[plugin]]\nname = \"dmarc\"\npath = \"{}\"\ncapabilities = [\"log\", \"dns\", \"random\"]\ntimeout_ms = 5000\non_failure = \"tempfail\"\n[plugin.config]\ntrusted_arc_sealers = [\"b.arct\"]\n",
            plugin_wasm("dmarc.wasm").display()
        ),
    );
    let b = gateway("b", a.port, &k.b.pem, "");
    let to = "rcpt@remote.test";
    for (port, from, subject) in [
        (a.port, "a@origin.arct", "one mailgate hop"),
        (b.port, "a@origin.arct", "two mailgate hops"),
        (b.port, "x@strict.arct", "forwarded by b"),
    ] {
        let r = send(port, from, to, &message(from, to, subject));
        assert!(r.starts_with("250"), "{subject}: {r}\n{}", a.mainlog());
    }
    let keys = [
        ("arc._domainkey.a.arct", &k.a),
        ("arc._domainkey.b.arct", &k.b),
    ];
    let one = exim_copy(&ex, "one mailgate hop", &[&a, &b]);
    let v = dkimpy_arc_verify(&keys, &one);
    assert!(v.starts_with("pass 1 "), "{v}\n{one}");
    assert!(
        one.contains("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=a.arct; s=arc; t="),
        "{one}"
    );
    let two = exim_copy(&ex, "two mailgate hops", &[&a, &b]);
    let v = dkimpy_arc_verify(&keys, &two);
    assert!(v.starts_with("pass 2 "), "{v}\n{two}");
    assert!(
        two.contains("ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=a.arct"),
        "{two}"
    );
    assert!(
        two.contains("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=b.arct"),
        "{two}"
    );
    assert!(
        two.contains("ARC-Authentication-Results: i=2; a.arct;"),
        "{two}"
    );
    // a's own results: b's chain passed.
    let ar = auth_results_of(&two.replace("\r\n", "\n"), "a.arct");
    assert!(ar.contains("arc=pass (i=1)"), "{ar}");

    // SPF fails for strict.arct at a (p=reject), but b, trusted, sealed a
    // passing chain: delivered, and the override is recorded. Sent to a
    // directly, without the chain, it is refused.
    let fwd = exim_copy(&ex, "forwarded by b", &[&a, &b]);
    let ar = auth_results_of(&fwd.replace("\r\n", "\n"), "a.arct");
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(
        ar.contains("dmarc=fail (p=reject dis=none; ARC sealed by b.arct)")
            && ar.contains("policy.override=trusted_forwarder"),
        "{ar}"
    );
    let mut c = Client::connect(a.port);
    c.cmd("EHLO client.arct");
    assert!(c.cmd("MAIL FROM:<x@strict.arct>").starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        message("x@strict.arct", to, "direct")
            .replace("\r\n.", "\r\n..")
            .as_bytes(),
    );
    let r = c.cmd(".");
    assert!(
        r.starts_with("550 5.7.1") && r.contains("strict.arct"),
        "{r}"
    );

    // A plugin without the crypto grant is refused at load (it imports
    // crypto), and sealing with a key not in its keys table is refused at
    // init: the key never reaches it.
    let dir2 = tempfile::tempdir().unwrap();
    let msg = dir2.path().join("m.eml");
    std::fs::write(&msg, message("a@origin.arct", to, "probe")).unwrap();
    let grant = "capabilities = [\"log\", \"dns\", \"crypto\", \"clock\"]";
    assert!(a.config.contains(grant));
    for (change, want) in [
        (
            (grant, "capabilities = [\"log\", \"dns\", \"clock\"]"),
            "imports mailgate:plugin/crypto@0.2.0",
        ),
        (
            ("key = \"seal\"", "key = \"other\""),
            "no key \\\"other\\\"",
        ),
    ] {
        let cfg = dir2.path().join("mailgate.toml");
        std::fs::write(&cfg, a.config.replace(change.0, change.1)).unwrap();
        let out = std::process::Command::new(mailgate_tests::mailgate_bin())
            .args(["plugin", "test"])
            .arg(plugin_wasm("arc.wasm"))
            .arg("--message")
            .arg(&msg)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && text.contains(want),
            "{want}: {text}"
        );
    }
}

/// Without the grants they need, the plugins do not load: each imports
/// the capabilities it calls (contract 0.2), and the gateway refuses to
/// start, naming the import, instead of running a check that cannot
/// check anything.
#[test]
fn plugins_without_their_grants_do_not_load() {
    for (plugin, caps, missing) in [
        ("arc", "\"log\", \"dns\", \"clock\"", "crypto"),
        ("arc", "\"log\", \"crypto\", \"clock\"", "dns"),
        ("dmarc", "\"log\", \"dns\"", "random"),
        ("dmarc", "\"log\", \"random\"", "dns"),
    ] {
        let err = refused_at_load(&format!(
            "[[plugin]]\nname = \"{plugin}\"\npath = \"{}\"\ncapabilities = [{caps}]\non_failure = \"tempfail\"\n",
            plugin_wasm(&format!("{plugin}.wasm")).display()
        ));
        assert!(
            err.contains(&format!(
                "imports mailgate:plugin/{missing}@0.2.0, which its capabilities do not grant (add \"{missing}\")"
            )),
            "{plugin} without {missing}: {err}"
        );
    }
}
