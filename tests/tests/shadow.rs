//! Shadow mode: a new version of a plugin runs beside the active one on
//! real sessions. The new reject-list version refuses one recipient more
//! (carol) than the active one: carol's mail is still accepted, the
//! difference is logged and counted (`plugin list`, /metrics), agreeing
//! answers are not, and `plugin promote` swaps the new version in, after
//! which carol is refused. A shadow that fails never touches mail either.

use mailgate_tests::{Client, Server, plugin_wasm};

fn reject_list(name: &str, rejects: &[&str], extra: &str) -> String {
    let list: Vec<String> = rejects.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ncapabilities = [\"log\", \"lookup\"]\n{extra}[plugin.config]\nreject = [{}]\n\n",
        plugin_wasm("reject_list.wasm").display(),
        list.join(", ")
    )
}

/// One message to `rcpts`; each RCPT reply.
fn send(s: &Server, rcpts: &[&str]) -> Vec<String> {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(
        c.cmd("MAIL FROM:<sender@remote.example>")
            .starts_with("250")
    );
    let replies: Vec<String> = rcpts
        .iter()
        .map(|r| c.cmd(&format!("RCPT TO:<{r}>")))
        .collect();
    if replies.iter().any(|r| r.starts_with("250")) {
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(b"Subject: shadowed\r\n\r\nhello\r\n.\r\n");
        assert!(c.reply().starts_with("250"));
    }
    c.cmd("QUIT");
    replies
}

#[test]
fn a_shadow_is_compared_never_followed_and_promoted() {
    let extra = format!(
        "{}{}",
        reject_list("reject-list", &["bob@local.test"], ""),
        reject_list(
            "reject-list-next",
            &["bob@local.test", "carol@local.test"],
            "shadow_of = \"reject-list\"\n"
        )
    );
    let s = Server::start("", &extra);
    let r = send(
        &s,
        &["alice@local.test", "bob@local.test", "carol@local.test"],
    );
    assert!(r[0].starts_with("250"), "{r:?}");
    assert!(r[1].starts_with("550 5.7.1"), "{r:?}");
    assert!(r[2].starts_with("250"), "the shadow decided: {r:?}");
    s.wait_log(" => carol@local.test", 1);
    assert_eq!(s.maildir("local.test", "carol").len(), 1);

    // One difference, carol's; bob and alice agree, and so does the data
    // hook (both add the same header).
    let log = s.wait_log("shadow reject-list-next of reject-list differs", 1);
    let diffs: Vec<&str> = log.lines().filter(|l| l.contains(" differs at ")).collect();
    assert_eq!(diffs.len(), 1, "{log}");
    assert!(
        diffs[0].contains("differs at RCPT <carol@local.test>: reject-list continue; reject-list-next reject 550 5.7.1"),
        "{}",
        diffs[0]
    );
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains("shadow of reject-list: 4 hook calls compared, 1 differed"),
        "{list}"
    );
    // The delivered copy carries one X-Reject-List header: the shadow's
    // actions are not applied.
    let m = &s.maildir("local.test", "carol")[0];
    assert_eq!(m.matches("X-Reject-List:").count(), 1, "{m}");

    // Promoted: the new version decides, under the old name.
    let (ok, out) = s.cli(&["plugin", "promote", "reject-list"]);
    assert!(
        ok && out.contains("reject-list-next is now reject-list"),
        "{out}"
    );
    let r = send(&s, &["alice@local.test", "carol@local.test"]);
    assert!(r[1].starts_with("550 5.7.1"), "{r:?}");
    let (_, list) = s.cli(&["plugin", "list"]);
    assert!(!list.contains("shadow of"), "{list}");
    assert_eq!(list.matches("reject-list 0.2.0").count(), 1, "{list}");
    // Nothing left to promote.
    let (ok, out) = s.cli(&["plugin", "promote", "reject-list"]);
    assert!(!ok && out.contains("reject-list has no shadow"), "{out}");
}

#[test]
fn a_shadow_started_by_command_and_a_failing_shadow() {
    let s = Server::start("", &reject_list("reject-list", &["bob@local.test"], ""));
    let cfg = s.dir.path().join("next.toml");
    std::fs::write(&cfg, "reject = [\"alice@local.test\"]\n").unwrap();
    let wasm = plugin_wasm("reject_list.wasm");
    let (ok, out) = s.cli(&[
        "plugin",
        "shadow",
        "reject-list",
        wasm.to_str().unwrap(),
        "--plugin-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains("reject-list-shadow 0.2.0 shadows reject-list"),
        "{out}"
    );
    let r = send(&s, &["alice@local.test", "bob@local.test"]);
    assert!(r[0].starts_with("250"), "{r:?}");
    assert!(r[1].starts_with("550"), "{r:?}");
    let log = s.wait_log(" differs at ", 2);
    assert!(
        log.contains("differs at RCPT <alice@local.test>: reject-list continue; reject-list-shadow reject 550"),
        "{log}"
    );
    assert!(
        log.contains("differs at RCPT <bob@local.test>: reject-list reject 550 5.7.1 recipient refused by policy; reject-list-shadow continue"),
        "{log}"
    );

    // A new version that traps (misbehave, at recipient trap@): mail
    // flows as before, and the failure is a difference, not a failure of
    // the active plugin.
    let (ok, out) = s.cli(&[
        "plugin",
        "shadow",
        "reject-list",
        plugin_wasm("misbehave.wasm").to_str().unwrap(),
        "--plugin-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let r = send(&s, &["trap@local.test"]);
    assert!(r[0].starts_with("250"), "{r:?}");
    s.wait_log(" => trap@local.test", 1);
    let log = s.mainlog();
    assert!(
        log.contains("differs at RCPT <trap@local.test>: reject-list continue; reject-list-shadow failed (trap"),
        "{log}"
    );
    assert!(!log.contains("plugin reject-list failed"), "{log}");
    // A shadow for a plugin that is not there is refused.
    let (ok, out) = s.cli(&["plugin", "shadow", "nope", wasm.to_str().unwrap()]);
    assert!(
        !ok && out.contains("no active plugin is named nope"),
        "{out}"
    );
}
