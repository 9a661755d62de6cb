//! DKIM with a real peer on each side. Keys come from `mailgate dkim
//! keygen` and are published by nsd.
//! - dkimpy (Debian's python3-dkim) signs with rsa-sha256 and
//!   ed25519-sha256, relaxed and simple, with and without `l=`; mailgate
//!   verifies and says so in its Authentication-Results header; a body or
//!   header changed after signing fails. A client outside relay_networks
//!   is not signed by mailgate, though its From domain has a key.
//! - mailgate signs a relay client's mail with an RSA and an Ed25519 key
//!   and sends it to Exim 4.96, which verifies both on receipt (its
//!   `DKIM:` log lines; keys through unbound in Exim's own mount
//!   namespace); dkimpy verifies Exim's copy, and fails it once its body
//!   is changed.

use mailgate_tests::dkimpy::{Key, VERIFY, dkimpy_sign, key_records, keygen, python};
use mailgate_tests::dnssec::{Unbound, sign_zone};
use mailgate_tests::{Client, EximServer, Nsd, Server, auth_results, free_port};

/// Send `data` (CRLF, no final dot) from `from` to `to`; the reply to the
/// final dot.
fn send(port: u16, from: &str, to: &str, data: &str) -> String {
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(data.replace("\r\n.", "\r\n..").as_bytes());
    let r = c.cmd(".");
    c.cmd("QUIT");
    r
}

#[test]
fn mailgate_verifies_what_dkimpy_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rsa = keygen(d, "dk.test", "rsa", false);
    let ed = keygen(d, "dk.test", "ed", true);
    let zone = format!(
        "$ORIGIN dk.test.\n$TTL 300\n@ IN SOA ns.dk.test. admin.dk.test. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n{}",
        key_records(&[("rsa._domainkey", &rsa), ("ed._domainkey", &ed)])
    );
    let nsd = Nsd::start("dk.test", &zone);
    // mailgate has a key for dk.test too, but the client (127.0.0.1) is
    // not a relay client here: nothing of ours is added.
    let s = Server::start_with(
        "relay_networks = [\"192.0.2.0/24\"]",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &format!(
            "[[dkim]]\ndomain = \"dk.test\"\nselector = \"rsa\"\nkey = \"{}\"\n",
            rsa.pem.display()
        ),
    );
    let msg = |subject: &str| {
        format!(
            "From: Alice <alice@dk.test>\r\nTo: user@local.test\r\nSubject: {subject}\r\n\r\nHello,\r\n\r\nthis body is signed.\r\n"
        )
    };
    let cases: &[(&str, &str, &str, &Key)] = &[
        ("rsa relaxed", "rsa", "", &rsa),
        ("rsa simple", "rsa", "canon=simple", &rsa),
        ("ed25519", "ed", "ed25519", &ed),
        ("length", "rsa", "length", &rsa),
    ];
    for (subject, sel, opts, key) in cases {
        let signed = dkimpy_sign(key, sel, "dk.test", opts, &msg(subject));
        let r = send(s.port, "alice@dk.test", "user@local.test", &signed);
        assert!(r.starts_with("250"), "{r}");
    }
    // Changed after signing: one body line, then the Subject.
    let signed = dkimpy_sign(&rsa, "rsa", "dk.test", "", &msg("body changed"));
    send(
        s.port,
        "alice@dk.test",
        "user@local.test",
        &signed.replace("this body is signed.", "this body is forged."),
    );
    let signed = dkimpy_sign(&rsa, "rsa", "dk.test", "", &msg("header original"));
    send(
        s.port,
        "alice@dk.test",
        "user@local.test",
        &signed.replace("Subject: header original", "Subject: header changed"),
    );
    // l= covers the body as signed; what is appended is not signed, and
    // the header says so.
    let signed = dkimpy_sign(&rsa, "rsa", "dk.test", "length", &msg("appended"));
    send(
        s.port,
        "alice@dk.test",
        "user@local.test",
        &format!("{signed}An unsigned postscript.\r\n"),
    );
    // Two signatures, RSA then Ed25519: two results.
    let once = dkimpy_sign(&rsa, "rsa", "dk.test", "", &msg("two signatures"));
    let twice = dkimpy_sign(&ed, "ed", "dk.test", "ed25519", &once);
    send(s.port, "alice@dk.test", "user@local.test", &twice);

    for (subject, sel, opts, _) in cases {
        let m = s.delivered(subject);
        let ar = auth_results(&m);
        let alg = if opts.contains("ed25519") {
            "ed25519-sha256"
        } else {
            "rsa-sha256"
        };
        assert!(
            ar.contains(&format!(
                "dkim=pass{} header.d=dk.test header.i=@dk.test header.s={sel} header.a={alg}",
                if opts.contains("length") {
                    format!(
                        " (body length limit l={})",
                        "Hello,\r\n\r\nthis body is signed.\r\n".len()
                    )
                } else {
                    String::new()
                }
            )),
            "{subject}: {ar}"
        );
        // Only dkimpy's signature: mailgate did not sign for a non-relay client.
        assert_eq!(m.matches("DKIM-Signature:").count(), 1, "{m}");
    }
    for subject in ["body changed", "header changed"] {
        let ar = auth_results(&s.delivered(subject));
        assert!(ar.contains("dkim=fail"), "{subject}: {ar}");
        assert!(!ar.contains("dkim=pass"), "{subject}: {ar}");
    }
    let ar = auth_results(&s.delivered("body changed"));
    assert!(ar.contains("body hash does not match"), "{ar}");
    let ar = auth_results(&s.delivered("appended"));
    assert!(ar.contains("dkim=pass (body length limit l="), "{ar}");
    let ar = auth_results(&s.delivered("two signatures"));
    assert!(
        ar.contains(
            "dkim=pass header.d=dk.test header.i=@dk.test header.s=rsa header.a=rsa-sha256"
        ) && ar.contains(
            "dkim=pass header.d=dk.test header.i=@dk.test header.s=ed header.a=ed25519-sha256"
        ),
        "{ar}"
    );
    // No signature at all.
    send(s.port, "alice@dk.test", "user@local.test", &msg("unsigned"));
    assert!(auth_results(&s.delivered("unsigned")).contains("dkim=none"));
}

#[test]
fn exim_and_dkimpy_verify_what_mailgate_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rsa = keygen(d, "sign.test", "r1", false);
    let ed = keygen(d, "sign.test", "e1", true);
    let local = keygen(d, "local.test", "dsn", true);
    let zone = format!(
        "$ORIGIN sign.test.\n$TTL 300\n@ IN SOA ns.sign.test. admin.sign.test. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n{}",
        key_records(&[("r1._domainkey", &rsa), ("e1._domainkey", &ed)])
    );
    let (signed_zone, anchor) = sign_zone(d, "sign.test.", &zone);
    let nsd = Nsd::start_zones(&[("sign.test", &signed_zone)]);
    let unbound = Unbound::start("sign.test", nsd.port, &anchor);
    let ex = EximServer::start_resolving(free_port(), "", "127.0.0.2");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nnameservers = [\"127.0.0.1:{}\"]\n",
            ex.port, nsd.port
        ),
        &format!(
            "[[dkim]]\ndomain = \"sign.test\"\nselector = \"r1\"\nkey = \"{}\"\nexpire = \"7d\"\n\n[[dkim]]\ndomain = \"sign.test\"\nselector = \"e1\"\nkey = \"{}\"\n\n[[dkim]]\ndomain = \"local.test\"\nselector = \"dsn\"\nkey = \"{}\"\n",
            rsa.pem.display(),
            ed.pem.display(),
            local.pem.display()
        ),
    );
    // A subdomain's mail is signed by its parent's keys (aligned for
    // DMARC); a domain without keys is not signed.
    for (from, subject) in [
        ("bob@sign.test", "signed by mailgate"),
        ("news@lists.sign.test", "signed for a subdomain"),
        ("carol@other.test", "not ours to sign"),
    ] {
        let r = send(
            s.port,
            from,
            "rcpt@remote.test",
            &format!(
                "From: {from}\r\nTo: rcpt@remote.test\r\nSubject: {subject}\r\nDate: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nA body line.\r\n.leading dot\r\n"
            ),
        );
        assert!(r.starts_with("250"), "{r}");
    }
    // Exim's log: each message's id and its DKIM lines.
    let start = std::time::Instant::now();
    let log = loop {
        let log = ex.mainlog();
        if log.matches(" <= ").count() >= 3 {
            break log;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "exim got:\n{log}\nmailgate:\n{}\nunbound:\n{}",
            s.mainlog(),
            unbound.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let id_of = |subject: &str| -> String {
        log.lines()
            .filter(|l| l.contains(" <= "))
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .find(|id| ex.message(id).contains(&format!("Subject: {subject}")))
            .unwrap_or_else(|| panic!("{subject} not in:\n{log}"))
    };
    let dkim_lines = |id: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(id) && l.contains("DKIM: "))
            .map(str::to_string)
            .collect()
    };
    for subject in ["signed by mailgate", "signed for a subdomain"] {
        let id = id_of(subject);
        let lines = dkim_lines(&id);
        for (sel, alg) in [("r1", "rsa-sha256"), ("e1", "ed25519-sha256")] {
            assert!(
                lines.iter().any(|l| l.contains("d=sign.test")
                    && l.contains(&format!("s={sel}"))
                    && l.contains(&format!("a={alg}"))
                    && l.contains("[verification succeeded]")),
                "{subject} {sel}: {lines:?}\n{log}"
            );
        }
        // dkimpy checks Exim's copy (the -Mvc output is the message as
        // received, LF line ends).
        let m = ex.message(&id).replace("\r\n", "\n").replace('\n', "\r\n");
        let args = [
            format!("r1._domainkey.sign.test={}", rsa.record),
            format!("e1._domainkey.sign.test={}", ed.record),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ok = String::from_utf8(python(VERIFY, &args, m.as_bytes())).unwrap();
        assert_eq!(ok.trim(), "True\nTrue", "{subject}: {m}");
        assert!(m.contains(" x="), "{m}");
        let forged = m.replace("A body line.", "A forged line.");
        let bad = String::from_utf8(python(VERIFY, &args, forged.as_bytes())).unwrap();
        let bad: Vec<&str> = bad.lines().collect();
        assert!(
            bad.len() == 2
                && bad
                    .iter()
                    .all(|l| l.starts_with("False body hash mismatch")),
            "{bad:?}"
        );
    }
    let id = id_of("not ours to sign");
    assert!(!ex.message(&id).contains("DKIM-Signature"));
    assert!(dkim_lines(&id).is_empty(), "{log}");

    // A bounce the gateway writes itself (Exim refuses the recipient) is
    // signed too: its From is Mailer-Daemon@mx.local.test, below
    // local.test, which has a key.
    let r = send(
        s.port,
        "user@local.test",
        "reject-me@remote.test",
        "From: user@local.test\r\nSubject: will bounce\r\n\r\nx\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let dsn = s.delivered_where(|m| m.contains("Mailer-Daemon@mx.local.test"));
    assert!(
        dsn.replace("\n\t", " ").contains(
            "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=local.test; s=dsn;"
        ),
        "{dsn}"
    );
    let m = dsn
        .split_once("\nDKIM-Signature")
        .map(|(_, rest)| format!("DKIM-Signature{rest}"))
        .unwrap()
        .replace('\n', "\r\n");
    let arg = format!("dsn._domainkey.local.test={}", local.record);
    let ok = String::from_utf8(python(VERIFY, &[&arg], m.as_bytes())).unwrap();
    assert_eq!(ok.trim(), "True", "{m}");
}
