//! Contract 0.2 beside 0.1: a 0.2 component (`probe-v2`, which exports
//! only the RCPT and data hooks) and a 0.1 one (`misbehave`, built with
//! the frozen 0.1 SDK) run in one gateway; `plugin list` names each one's contract and the 0.2
//! plugin's hooks are what it exports; its context carries typed checks
//! and its enhanced status record reaches the client; a 0.2 component that
//! imports a capability its config does not grant is refused at load.
//! The reject-list example, built with the SDK (`plugin-sdk`, contract
//! 0.2), has the hooks it names and imports only what it calls. A 0.2
//! plugin's manifest says whether its instances may be reused; the
//! plugin's table overrides it.

use mailgate_tests::{Client, Server, plugin_wasm, refused_at_load};

fn probe(caps: &str) -> String {
    format!(
        "[[plugin]]\nname = \"probe-v2\"\npath = \"{}\"\ncapabilities = [{caps}]\nreuse = true\n\n",
        plugin_wasm("probe_v2.wasm").display()
    )
}

#[test]
fn contracts_0_1_and_0_2_side_by_side() {
    let extra = format!(
        "{}[[plugin]]\nname = \"misbehave\"\npath = \"{}\"\ncapabilities = [\"log\"]\n",
        probe("\"log\", \"kv\""),
        plugin_wasm("misbehave.wasm").display()
    );
    let s = Server::start("", &extra);
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    let section = |name: &str| {
        list.split("\n")
            .skip_while(|l| !l.starts_with(&format!("{name} ")))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let p = section("probe-v2");
    assert!(p.contains("contract: mailgate:plugin@0.2.0"), "{p}");
    assert!(p.contains("hooks: rcpt-to, data"), "{p}");
    let r = section("misbehave");
    assert!(r.contains("contract: mailgate:plugin@0.1.0"), "{r}");
    assert!(r.contains("hooks: rcpt-to, data"), "{r}");

    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@remote.example>").starts_with("250"));
    // The 0.2 record 5.7.1 becomes the reply's enhanced code.
    let bob = c.cmd("RCPT TO:<bob@local.test>");
    assert!(bob.starts_with("550 5.7.1 no bob (contract 0.2)"), "{bob}");
    // Typed checks: the host's SPF results as records (the test DNS
    // refuses every query: temperror), and iprev (127.0.0.1 names itself
    // through this machine's hosts file) with its name as client-name.
    let checks = c.cmd("RCPT TO:<checks@local.test>");
    assert!(checks.starts_with("550 5.7.1 client-name="), "{checks}");
    assert!(checks.contains(" auth-user=- iprev="), "{checks}");
    assert!(
        !checks.contains("iprev=pass") || !checks.contains("client-name=- "),
        "iprev passed without a client name: {checks}"
    );
    assert!(
        checks.contains("spf.helo=") && checks.contains("(client.test)"),
        "{checks}"
    );
    assert!(
        checks.contains("spf.mail-from=") && checks.contains("(a@remote.example)"),
        "{checks}"
    );
    let kv = c.cmd("RCPT TO:<kv@local.test>");
    assert!(kv.starts_with("550 5.7.1 kv read v2"), "{kv}");
    // The 0.1 plugin still decides what it decides, and a capability it
    // is not granted still fails at the call, as 0.1 says (it loaded).
    let count = c.cmd("RCPT TO:<count@local.test>");
    assert!(count.starts_with("550 5.7.1 count 1"), "{count}");
    let ungranted = c.cmd("RCPT TO:<dnstxt@local.test>");
    assert!(
        ungranted.starts_with("451 4.4.3 dns refused or failed"),
        "{ungranted}"
    );
    assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: two contracts\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    s.wait_log(" => alice@local.test", 1);
    let m = &s.maildir("local.test", "alice")[0];
    assert!(m.contains("X-Probe-V2: 1 7\n"), "{m}");
    assert!(m.contains("X-Misbehave: seen\n"), "{m}");
}

#[test]
fn a_capability_that_is_not_granted_is_not_linked() {
    let err = refused_at_load(&probe("\"log\""));
    assert!(
        err.contains("probe-v2")
            && err.contains(
                "imports mailgate:plugin/kv@0.2.0, which its capabilities do not grant (add \"kv\")"
            ),
        "{err}"
    );
}

#[test]
fn the_sdk_builds_0_2_plugins_with_the_hooks_they_name() {
    let wasm = plugin_wasm("reject_list.wasm");
    let s = Server::start(
        "",
        &format!(
            "[[plugin]]\nname = \"reject-list\"\npath = \"{}\"\ncapabilities = [\"log\", \"lookup\"]\n[plugin.config]\nreject = [\"bob@local.test\"]\n",
            wasm.display()
        ),
    );
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains("contract: mailgate:plugin@0.2.0"), "{list}");
    assert!(list.contains("hooks: rcpt-to, data"), "{list}");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@remote.example>").starts_with("250"));
    let r = c.cmd("RCPT TO:<bob@local.test>");
    assert!(
        r.starts_with("550 5.7.1 recipient refused by policy"),
        "{r}"
    );
    assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: sdk 0.2\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    s.wait_log(" => alice@local.test", 1);
    let m = &s.maildir("local.test", "alice")[0];
    assert!(m.contains("X-Reject-List: checked\n"), "{m}");
    // It calls `lookup`, so it imports it: without the grant it does not
    // load at all (a 0.1 plugin would fail at its first lookup).
    let err = refused_at_load(&format!(
        "[[plugin]]\nname = \"reject-list\"\npath = \"{}\"\ncapabilities = [\"log\"]\n",
        wasm.display()
    ));
    assert!(
        err.contains("imports mailgate:plugin/lookup@0.2.0, which its capabilities do not grant"),
        "{err}"
    );
}

#[test]
fn a_0_2_plugin_declares_whether_its_instances_are_reused() {
    let table = |name: &str, wasm: &str, caps: &str, extra: &str| {
        format!(
            "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ncapabilities = [{caps}]\n{extra}[plugin.config]\nreject = [\"bob@local.test\"]\n\n",
            plugin_wasm(wasm).display()
        )
    };
    // reject-list (SDK, REUSABLE = true) twice: as it declares, and
    // overridden by its table; probe-v2 declares false.
    let extra = [
        table("reject-list", "reject_list.wasm", "\"log\", \"lookup\"", ""),
        table(
            "reject-list-fresh",
            "reject_list.wasm",
            "\"log\", \"lookup\"",
            "reuse = false\n",
        ),
        table("probe-v2", "probe_v2.wasm", "\"log\", \"kv\"", ""),
    ]
    .concat();
    let s = Server::start("", &extra);
    for n in 1..=3 {
        let mut c = Client::connect(s.port);
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<a@remote.example>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(b"Subject: reuse\r\n\r\nhello\r\n.\r\n");
        assert!(c.reply().starts_with("250"));
        c.cmd("QUIT");
        s.wait_log(" => alice@local.test", n);
    }
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    let instances = |name: &str| {
        list.split('\n')
            .skip_while(|l| !l.starts_with(&format!("{name} ")))
            .find(|l| l.trim_start().starts_with("instances:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(
        instances("reject-list"),
        "instances: 1 created, 2 transactions on a reused one, 1 idle (reuse, as the plugin declares)",
        "{list}"
    );
    assert_eq!(
        instances("reject-list-fresh"),
        "instances: 3 created, 0 transactions on a reused one, 0 idle (fresh per transaction)",
        "{list}"
    );
    assert_eq!(
        instances("probe-v2"),
        "instances: 3 created, 0 transactions on a reused one, 0 idle (fresh per transaction)",
        "{list}"
    );
}
