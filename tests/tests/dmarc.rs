//! The DMARC plugin against records nsd serves, with the host's SPF and
//! DKIM results (dkimpy signs): aligned SPF (strict and relaxed) and
//! aligned DKIM pass; unaligned mail is refused under `p=reject` (550
//! 5.7.1 naming the domain), quarantined under `p=quarantine` (with our
//! Authentication-Results in the quarantined copy), delivered under
//! `p=none`; a subdomain takes `sp`, a subdomain that does not exist takes
//! `np`; strict alignment refuses what relaxed accepts; no record is
//! `dmarc=none`. Organizational Domains come from a public suffix list
//! file the plugin reads from its granted directory.

use mailgate_tests::dkimpy::{dkimpy_sign, key_records, keygen};
use mailgate_tests::{Client, Nsd, Server, auth_results, plugin_wasm};

fn send(s: &Server, mail_from: &str, data: &str) -> String {
    let mut c = Client::connect(s.port);
    assert!(c.cmd("EHLO client.dmt").starts_with("250"));
    assert!(
        c.cmd(&format!("MAIL FROM:<{mail_from}>"))
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<user@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(data.as_bytes());
    let r = c.cmd(".");
    c.cmd("QUIT");
    r
}

fn message(from: &str, subject: &str) -> String {
    format!("From: <{from}>\r\nTo: user@local.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
}

/// The quarantined message whose Subject is `subject`.
fn quarantined(s: &Server, subject: &str) -> Option<String> {
    let dir = s.data().join("quarantine");
    std::fs::read_dir(dir).ok()?.find_map(|e| {
        let m = std::fs::read_to_string(e.ok()?.path()).ok()?;
        m.contains(&format!("Subject: {subject}\r\n")).then_some(m)
    })
}

#[test]
fn policies_alignment_and_dispositions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dm = keygen(d, "dm.dmt", "k", false);
    let other = keygen(d, "other.dmt", "k", false);
    let spf = "\"v=spf1 ip4:127.0.0.0/8 -all\"";
    let zone = format!(
        "$ORIGIN dmt.
$TTL 300
@ IN SOA ns.dmt. admin.dmt. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
dm IN TXT {spf}
bounce.dm IN TXT {spf}
_dmarc.dm IN TXT \"v=DMARC1; p=reject; sp=quarantine; np=reject\"
sub.dm IN A 192.0.2.1
other IN TXT {spf}
strict IN TXT {spf}
bounce.strict IN TXT {spf}
_dmarc.strict IN TXT \"v=DMARC1; p=reject; aspf=s; adkim=s\"
q IN TXT {spf}
_dmarc.q IN TXT \"v=DMARC1; p=quarantine\"
mon IN TXT {spf}
_dmarc.mon IN TXT \"v=DMARC1; p=none\"
nopolicy IN TXT {spf}
{}{}",
        key_records(&[("k._domainkey.dm", &dm)]),
        key_records(&[("k._domainkey.other", &other)]),
    );
    let nsd = Nsd::start("dmt", &zone);
    let psl = d.join("psl");
    std::fs::create_dir(&psl).unwrap();
    std::fs::write(psl.join("list.dat"), "// test list\ndmt\n").unwrap();
    let s = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &format!(
            "[[plugin]]\nname = \"dmarc\"\npath = \"{}\"\ncapabilities = [\"log\", \"dns\", \"random\", \"directories\"]\ntimeout_ms = 5000\non_failure = \"tempfail\"\ndirectories = {{ psl = \"{}\" }}\n[plugin.config]\npublic_suffix_list = \"/psl/list.dat\"\n",
            plugin_wasm("dmarc.wasm").display(),
            psl.display()
        ),
    );
    let signed = |key, dom: &str, from: &str, subject: &str| {
        dkimpy_sign(key, "k", dom, "", &message(from, subject))
    };
    let ok = |r: String| assert!(r.starts_with("250"), "{r}\n{}", s.mainlog());
    // Delivered.
    ok(send(&s, "a@dm.dmt", &message("a@dm.dmt", "spf aligned")));
    ok(send(
        &s,
        "b@bounce.dm.dmt",
        &message("a@dm.dmt", "spf relaxed"),
    ));
    ok(send(
        &s,
        "x@other.dmt",
        &signed(&dm, "dm.dmt", "a@dm.dmt", "dkim aligned"),
    ));
    ok(send(&s, "x@other.dmt", &message("a@mon.dmt", "monitoring")));
    ok(send(
        &s,
        "x@other.dmt",
        &message("a@nopolicy.dmt", "no policy"),
    ));
    for (subject, entry) in [
        (
            "spf aligned",
            "dmarc=pass (p=reject dis=none) header.from=dm.dmt policy.dmarc=reject",
        ),
        (
            "spf relaxed",
            "dmarc=pass (p=reject dis=none) header.from=dm.dmt",
        ),
        (
            "dkim aligned",
            "dmarc=pass (p=reject dis=none) header.from=dm.dmt",
        ),
        (
            "monitoring",
            "dmarc=fail (p=none dis=none) header.from=mon.dmt policy.dmarc=none",
        ),
        ("no policy", "dmarc=none header.from=nopolicy.dmt"),
    ] {
        let ar = auth_results(&s.delivered(subject));
        assert!(ar.contains(entry), "{subject}: {ar}");
        // One header: the host's results and the plugin's together.
        assert!(ar.contains("spf=pass smtp.mailfrom="), "{ar}");
    }
    let ar = auth_results(&s.delivered("dkim aligned"));
    assert!(ar.contains("dkim=pass header.d=dm.dmt"), "{ar}");

    // Refused: unaligned under p=reject (DKIM by another domain), strict
    // SPF alignment with a subdomain, a subdomain that does not exist.
    let r = send(
        &s,
        "x@other.dmt",
        &signed(&other, "other.dmt", "a@dm.dmt", "unaligned"),
    );
    assert!(r.starts_with("550 5.7.1") && r.contains("dm.dmt"), "{r}");
    let r = send(
        &s,
        "b@bounce.strict.dmt",
        &message("a@strict.dmt", "strict"),
    );
    assert!(
        r.starts_with("550 5.7.1") && r.contains("strict.dmt"),
        "{r}\n{}",
        s.mainlog()
    );
    let r = send(&s, "x@other.dmt", &message("a@ghost.dm.dmt", "np"));
    assert!(
        r.starts_with("550 5.7.1") && r.contains("ghost.dm.dmt"),
        "{r}\n{}",
        s.mainlog()
    );
    // Quarantined: p=quarantine, and an existing subdomain's sp.
    ok(send(
        &s,
        "x@other.dmt",
        &message("a@q.dmt", "quarantine me"),
    ));
    ok(send(
        &s,
        "x@other.dmt",
        &message("a@sub.dm.dmt", "subdomain"),
    ));
    for (subject, entry) in [
        (
            "quarantine me",
            "dmarc=fail (p=quarantine dis=quarantine) header.from=q.dmt",
        ),
        (
            "subdomain",
            "dmarc=fail (p=reject dis=quarantine) header.from=sub.dm.dmt policy.dmarc=quarantine",
        ),
    ] {
        let m = quarantined(&s, subject)
            .unwrap_or_else(|| panic!("{subject} not quarantined\n{}", s.mainlog()));
        let ar = auth_results(&m.replace("\r\n", "\n"));
        assert!(ar.contains(entry), "{subject}: {ar}");
    }
    let log = s.mainlog();
    assert!(
        log.contains("quarantined by plugin: DMARC policy of q.dmt"),
        "{log}"
    );
    let delivered = s.maildir("local.test", "user");
    assert_eq!(delivered.len(), 5, "{delivered:?}");
}
