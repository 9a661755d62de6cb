//! `mailgate auth check` on messages dkimpy signs, with DNS from a zone
//! file: the DKIM key record as `mailgate dkim keygen` prints it (strings
//! in parentheses, `;` inside quotes), an SPF record of several strings,
//! an SPF explanation with non-ASCII bytes (`\195\169`), a reverse zone
//! for the client (any address, not only loopback) and a DMARC record.
//! The bundled ARC and DMARC plugins run after the host's checks (ARC on
//! a chain dkimpy seals); `--json` gives each result, and a broken
//! signature turns DMARC's verdict into a rejection.

use mailgate_tests::dkimpy::{dkimpy_arc_seal, dkimpy_sign, key_records, keygen};
use mailgate_tests::mailgate_bin;
use std::process::Command;

fn check(dir: &std::path::Path, msg: &str, ip: &str, from: &str, json: bool) -> String {
    let file = dir.join("msg.eml");
    std::fs::write(&file, msg).unwrap();
    let mut c = Command::new(mailgate_bin());
    c.args(["auth", "check"])
        .arg(&file)
        .args([
            "--ip",
            ip,
            "--helo",
            "mx.sender.test",
            "--from",
            from,
            "--dns",
        ])
        .arg(dir.join("zone"));
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explains_spf_iprev_dkim_and_dmarc_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "sender.test", "s1", false);
    let fwd = keygen(d, "fwd.test", "arc", false);
    let printed = Command::new(mailgate_bin())
        .args(["dkim", "keygen", "sender.test", "s2", "--ed25519", "--out"])
        .arg(d.join("s2.pem"))
        .output()
        .unwrap();
    let s2_line = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .find(|l| l.contains("._domainkey."))
        .unwrap()
        .to_string();
    // The s1 record split as keygen splits it, in parentheses.
    let parts: Vec<String> = key
        .record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    let zone = format!(
        "$ORIGIN test.
$TTL 300
sender IN TXT \"v=spf1 \" \"ip4:192.0.2.0/28 exp=why.sender.test -all\"
why.sender IN TXT \"%{{i}} n'est pas autoris\\195\\169\"
mx.sender IN A 192.0.2.5
mx.sender IN TXT \"v=spf1 a -all\"
5.2.0.192.in-addr.arpa. IN PTR mx.sender.test.
_dmarc.sender IN TXT \"v=DMARC1; p=reject\"
s1._domainkey.sender IN TXT ( {}
    ) ; the key
{s2_line}
{}",
        parts.join("\n    "),
        key_records(&[("arc._domainkey.fwd", &fwd)])
    );
    std::fs::write(d.join("zone"), zone).unwrap();
    let msg = "From: Alice <alice@sender.test>\r\nTo: bob@rcpt.test\r\nSubject: offline\r\n\r\nHello.\r\n";
    let signed = dkimpy_sign(&key, "s1", "sender.test", "", msg);

    let v: serde_json::Value =
        serde_json::from_str(&check(d, &signed, "192.0.2.5", "alice@sender.test", true)).unwrap();
    assert_eq!(v["spf"]["helo"]["result"], "pass", "{v}");
    assert_eq!(v["spf"]["mailfrom"]["result"], "pass", "{v}");
    assert_eq!(v["spf"]["mailfrom"]["identity"], "alice@sender.test", "{v}");
    assert_eq!(v["iprev"]["result"], "pass", "{v}");
    assert_eq!(v["iprev"]["name"], "mx.sender.test", "{v}");
    assert_eq!(v["dkim"][0]["domain"], "sender.test", "{v}");
    assert_eq!(v["dkim"][0]["selector"], "s1", "{v}");
    assert_eq!(v["dkim"][0]["algorithm"], "rsa-sha256", "{v}");
    assert_eq!(v["dkim"][0]["result"], "pass", "{v}");
    assert_eq!(v["dmarc"]["result"], "pass", "{v}");
    assert_eq!(v["dmarc"]["policy"], "reject", "{v}");
    assert_eq!(v["dmarc"]["disposition"], "none", "{v}");
    assert_eq!(v["verdict"], "continue", "{v}");
    let ar = v["authentication_results"].as_str().unwrap();
    assert!(ar.starts_with("Authentication-Results: localhost;"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    assert_eq!(v["arc"]["result"], "none", "{v}");

    // Sealed by a forwarder (dkimpy): the bundled ARC plugin validates it.
    let sealed = dkimpy_arc_seal(
        &fwd,
        "arc",
        "fwd.test",
        "fwd.test",
        &format!("Authentication-Results: fwd.test; dkim=pass header.d=sender.test\r\n{signed}"),
    );
    let v: serde_json::Value =
        serde_json::from_str(&check(d, &sealed, "192.0.2.5", "alice@sender.test", true)).unwrap();
    assert_eq!(v["arc"]["result"], "pass", "{v}");
    assert_eq!(v["arc"]["instances"], 1, "{v}");
    assert_eq!(v["arc"]["domains"], "fwd.test", "{v}");
    assert!(
        v["authentication_results"]
            .as_str()
            .unwrap()
            .contains("arc=pass (i=1)"),
        "{v}"
    );

    // From an address SPF does not allow: the explanation, decoded; no
    // reverse name; DKIM still aligns, so DMARC passes.
    let v: serde_json::Value =
        serde_json::from_str(&check(d, &signed, "192.0.2.99", "alice@sender.test", true)).unwrap();
    assert_eq!(v["spf"]["mailfrom"]["result"], "fail", "{v}");
    assert_eq!(
        v["spf"]["mailfrom"]["reason"], "192.0.2.99 n'est pas autorisé",
        "{v}"
    );
    assert_ne!(v["iprev"]["result"], "pass", "{v}");
    assert_eq!(v["dmarc"]["result"], "pass", "{v}");

    // The body changed and SPF fails: DMARC fails and the plugin refuses.
    let broken = signed.replace("Hello.", "Hello!");
    let v: serde_json::Value =
        serde_json::from_str(&check(d, &broken, "192.0.2.99", "alice@sender.test", true)).unwrap();
    assert_eq!(v["dkim"][0]["result"], "fail", "{v}");
    assert_eq!(v["dmarc"]["result"], "fail", "{v}");
    assert_eq!(v["dmarc"]["disposition"], "reject", "{v}");
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .starts_with("reject 550 5.7.1"),
        "{v}"
    );

    // An Ed25519 signature with the key record keygen printed, and the
    // text output.
    let ed = mailgate_tests::dkimpy::Key {
        pem: d.join("s2.pem"),
        record: String::new(),
    };
    let signed = dkimpy_sign(&ed, "s2", "sender.test", "ed25519", msg);
    let text = check(d, &signed, "192.0.2.5", "alice@sender.test", false);
    assert!(
        text.contains("dkim=pass header.d=sender.test header.i=@sender.test header.s=s2 header.a=ed25519-sha256"),
        "{text}"
    );
    assert!(text.contains("plugins: continue"), "{text}");
}
