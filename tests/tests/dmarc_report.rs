//! DMARC aggregate reports (RFC 7489 §7.2) end to end: the DMARC plugin
//! decides on messages whose policy asks for reports (nsd serves the
//! records; dkimpy signs), refused mail included; `mailgate report dmarc`
//! prints a report that xmllint (libxml2-utils) validates against RFC
//! 7489 Appendix C's schema and that parsedmarc (PyPI) reads back with the
//! same counts; `--send` mails it through the queue to Exim 4.96 for the
//! destinations that may have it: one in the policy domain, one outside it
//! that publishes its consent; not to one outside without consent, nor to
//! one whose size limit the report exceeds. parsedmarc reads the mail.

use mailgate_tests::dkimpy::{dkimpy_sign, key_records, keygen};
use mailgate_tests::{Client, EximServer, Nsd, Server, free_port, plugin_wasm, require};
use std::process::Command;

fn send(s: &Server, mail_from: &str, data: &str) -> String {
    let mut c = Client::connect(s.port);
    assert!(c.cmd("EHLO client.drt").starts_with("250"));
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

fn message(subject: &str) -> String {
    format!("From: <a@rep.drt>\r\nTo: user@local.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
}

/// parsedmarc's reading (offline: no DNS, no downloads) of a report XML
/// file or a report message: (total count, count of rejected, records).
fn parsedmarc(path: &std::path::Path, email: bool) -> serde_json::Value {
    let py = mailgate_tests::parsedmarc_python();
    let call = if email {
        "r = parsedmarc.parse_report_email(open(sys.argv[1]).read(), offline=True, always_use_local_files=True)\nassert r['report_type'] == 'aggregate', r['report_type']\nr = r['report']"
    } else {
        "r = parsedmarc.parse_aggregate_report_xml(open(sys.argv[1]).read(), offline=True, always_use_local_files=True)"
    };
    let out = Command::new(py)
        .arg("-c")
        .arg(format!(
            "import json, sys, parsedmarc\n{call}\nprint(json.dumps(r, default=str))"
        ))
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap()
}

fn check_counts(v: &serde_json::Value) {
    let records = v["records"].as_array().unwrap_or_else(|| panic!("{v}"));
    let total: u64 = records.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "{v}");
    let by = |dis: &str, dkim: &str, spf: &str| -> u64 {
        records
            .iter()
            .filter(|r| {
                let p = &r["policy_evaluated"];
                p["disposition"] == dis && p["dkim"] == dkim && p["spf"] == spf
            })
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(by("none", "fail", "pass"), 2, "{v}");
    assert_eq!(by("none", "pass", "fail"), 1, "{v}");
    assert_eq!(by("reject", "fail", "fail"), 1, "{v}");
    assert_eq!(v["policy_published"]["domain"], "rep.drt", "{v}");
    assert_eq!(v["policy_published"]["p"], "reject", "{v}");
    assert!(
        records
            .iter()
            .all(|r| r["source"]["ip_address"] == "127.0.0.1"),
        "{v}"
    );
}

#[test]
fn reports_validate_count_and_reach_the_consenting_destinations() {
    let xmllint = require("xmllint");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rep = keygen(d, "rep.drt", "k", false);
    let other = keygen(d, "other.drt", "k", false);
    let spf = "\"v=spf1 ip4:127.0.0.0/8 -all\"";
    let zone = format!(
        "$ORIGIN drt.
$TTL 300
@ IN SOA ns.drt. admin.drt. 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
rep IN TXT {spf}
other IN TXT {spf}
_dmarc.rep IN TXT \"v=DMARC1; p=reject; rua=mailto:agg@rep.drt,mailto:third@collector.drt,mailto:stranger@nowhere.drt,mailto:tiny@rep.drt!10\"
rep.drt._report._dmarc.collector IN TXT \"v=DMARC1\"
{}{}",
        key_records(&[("k._domainkey.rep", &rep)]),
        key_records(&[("k._domainkey.other", &other)]),
    );
    let nsd = Nsd::start("drt", &zone);
    let ex = EximServer::start(free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!(
            "smarthost = \"127.0.0.1:{}\"\nnameservers = [\"127.0.0.1:{}\"]\n",
            ex.port, nsd.port
        ),
        &format!(
            "[auth]\ndmarc_reports = true\nreport_organization = \"Mailgate Test\"\nreport_contact = \"dmarc@local.test\"\n\n[[plugin]]\nname = \"dmarc\"\npath = \"{}\"\ncapabilities = [\"log\", \"dns\", \"random\"]\ntimeout_ms = 5000\non_failure = \"tempfail\"\n",
            plugin_wasm("dmarc.wasm").display()
        ),
    );
    let ok = |r: String| assert!(r.starts_with("250"), "{r}\n{}", s.mainlog());
    ok(send(&s, "a@rep.drt", &message("spf one")));
    ok(send(&s, "a@rep.drt", &message("spf two")));
    ok(send(
        &s,
        "x@other.drt",
        &dkimpy_sign(&rep, "k", "rep.drt", "", &message("dkim")),
    ));
    let r = send(
        &s,
        "x@other.drt",
        &dkimpy_sign(&other, "k", "other.drt", "", &message("unaligned")),
    );
    assert!(r.starts_with("550 5.7.1"), "{r}");

    // The report as printed: valid per the RFC's schema, read by
    // parsedmarc with the same counts.
    let (ok_, xml) = s.cli(&["report", "dmarc", "--domain", "rep.drt"]);
    assert!(ok_, "{xml}");
    let file = d.join("report.xml");
    std::fs::write(&file, &xml).unwrap();
    let xsd = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/rfc7489-dmarc.xsd");
    let out = Command::new(&xmllint)
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A schema that cannot fail proves nothing: a broken copy is refused.
    std::fs::write(
        d.join("bad.xml"),
        xml.replace("<pct>", "<percent>")
            .replace("</pct>", "</percent>"),
    )
    .unwrap();
    let bad = Command::new(&xmllint)
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(d.join("bad.xml"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let v = parsedmarc(&file, false);
    check_counts(&v);
    assert_eq!(v["report_metadata"]["org_name"], "Mailgate Test", "{v}");

    // Sent now: to the policy domain's mailbox and to the consenting
    // collector; not to the stranger, nor over the 10-octet limit.
    let (ok_, out) = s.cli(&["report", "dmarc", "--domain", "rep.drt", "--send"]);
    assert!(ok_, "{out}");
    let sent = out
        .lines()
        .find(|l| l.starts_with("rep.drt: sent to "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(sent.contains("mailto:agg@rep.drt"), "{out}");
    assert!(sent.contains("mailto:third@collector.drt"), "{out}");
    assert!(
        out.contains("stranger@nowhere.drt: rep.drt._report._dmarc.nowhere.drt does not agree"),
        "{out}"
    );
    assert!(
        out.contains("tiny@rep.drt: the report") && out.contains("over its limit of 10"),
        "{out}"
    );
    let start = std::time::Instant::now();
    let ids = loop {
        let ids: Vec<String> = ex
            .lines(" <= ")
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect();
        if ids.len() >= 2 {
            break ids;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "{}\n{}",
            ex.mainlog(),
            s.mainlog()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(ex.lines(" <= ").len(), 2, "{}", ex.mainlog());
    for id in ids {
        let m = ex.message(&id);
        assert!(
            m.contains("Subject: Report Domain: rep.drt Submitter: mx.local.test Report-ID:"),
            "{m}"
        );
        let eml = d.join(format!("{id}.eml"));
        std::fs::write(&eml, &m).unwrap();
        check_counts(&parsedmarc(&eml, true));
    }
}
