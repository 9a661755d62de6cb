//! The plugin runtime against the real binary: a policy plugin, plugins
//! that misbehave (stopped within budget, policy applied, other clients
//! unaffected), capabilities refused when not granted, hot reload.

use mailgate_tests::{Client, Nsd, Server, plugin_wasm};
use std::time::{Duration, Instant};

fn plugin_table(name: &str, file: &str, extra: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
        plugin_wasm(file).display()
    )
}

fn deliver(c: &mut Client, to: &str, subject: &str) -> String {
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    if !r.starts_with("250") {
        c.cmd("RSET");
        return r;
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: {subject}\r\n\r\nx\r\n.\r\n").as_bytes());
    c.reply()
}

#[test]
fn policy_plugin_rejects_and_tags() {
    let s = Server::start(
        "",
        &plugin_table(
            "reject-list",
            "reject_list.wasm",
            "capabilities = [\"log\", \"lookup\"]\n[plugin.config]\nreject = [\"bob@local.test\"]",
        ),
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let r = deliver(&mut c, "bob@local.test", "to bob");
    assert!(
        r.starts_with("550 5.7.1 recipient refused by policy"),
        "{r}"
    );
    let r = deliver(&mut c, "alice@local.test", "to alice");
    assert!(r.starts_with("250 2.0.0 OK"), "{r}");
    s.wait_log(" => alice@local.test", 1);
    let m = &s.maildir("local.test", "alice")[0];
    assert!(m.contains("\nX-Reject-List: checked\n"), "{m}");
    let log = s.mainlog();
    assert!(
        log.contains("plugin reject-list 0.2.0 loaded (sha256 "),
        "{log}"
    );
    assert!(
        log.contains("rejected RCPT <bob@local.test>: 5.7.1 recipient refused by policy"),
        "{log}"
    );
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains("reject-list 0.2.0  sha256:") && list.contains("calls=3 failures=0"),
        "{list}"
    );
    assert!(list.contains("hooks: rcpt-to, data"), "{list}");
}

#[test]
fn misbehaving_plugin_is_stopped_and_fails_open() {
    let s = Server::start(
        "",
        &plugin_table(
            "misbehave",
            "misbehave.wasm",
            "timeout_ms = 200\nmemory = \"16M\"\non_failure = \"continue\"",
        ),
    );
    // Another client keeps working while the plugin loops.
    let port = s.port;
    let other = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        c.cmd("EHLO other.test");
        let mut ok = 0;
        for i in 0..10 {
            if deliver(&mut c, "alice@local.test", &format!("other {i}")).starts_with("250 2.0.0") {
                ok += 1;
            }
        }
        ok
    });
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    for rcpt in ["loop", "bomb", "trap", "garbage"] {
        let t = Instant::now();
        let r = c.cmd(&format!("RCPT TO:<{rcpt}@local.test>"));
        assert!(r.starts_with("250"), "{rcpt}: fail-open policy, got {r}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{rcpt} took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        other.join().unwrap(),
        10,
        "other client's transactions failed"
    );
    let log = s.mainlog();
    for why in [
        "time budget exceeded",
        "memory budget exceeded",
        "trap",
        "malformed answer",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("plugin misbehave failed at RCPT: ") && l.contains(why)),
            "{why}:\n{log}"
        );
    }
    let (_, list) = s.cli(&["plugin", "list"]);
    assert!(list.contains("failures=4"), "{list}");
    // Messages the plugin saw got its header.
    s.wait_log(" => alice@local.test", 10);
    assert!(
        s.maildir("local.test", "alice")
            .iter()
            .all(|m| m.contains("X-Misbehave: seen"))
    );
}

/// One session's `count` answers over three transactions (MAIL, RCPT,
/// RSET), then after a trap, and what `plugin list` says of instances.
fn counts(s: &Server) -> (Vec<String>, String) {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let mut seen = Vec::new();
    let mut count = |c: &mut Client| {
        assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
        let r = c.cmd("RCPT TO:<count@local.test>");
        assert!(r.starts_with("550 5.7.1 count "), "{r}");
        seen.push(r["550 5.7.1 ".len()..].trim().to_string());
        assert!(c.cmd("RSET").starts_with("250"));
    };
    for _ in 0..3 {
        count(&mut c);
    }
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<trap@local.test>").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    count(&mut c);
    // A message ends a transaction too.
    assert!(deliver(&mut c, "alice@local.test", "ends it").starts_with("250 2.0.0"));
    count(&mut c);
    // An instance that keeps more than half its memory budget is renewed.
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<hog@local.test>").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    count(&mut c);
    let (ok, list) = s.cli(&["plugin", "list"]);
    assert!(ok, "{list}");
    (seen, list)
}

#[test]
fn reused_instances_keep_their_memory_and_failed_ones_are_renewed() {
    let fresh = Server::start(
        "",
        &plugin_table("misbehave", "misbehave.wasm", "memory = \"16M\""),
    );
    let (seen, list) = counts(&fresh);
    // A fresh instance per transaction, RSET included: nothing survives.
    assert_eq!(seen, ["count 1"; 6], "{list}");
    assert!(
        list.contains(
            "instances: 9 created, 0 transactions on a reused one, 0 idle (fresh per transaction)"
        ),
        "{list}"
    );
    let kept = Server::start(
        "",
        &plugin_table(
            "misbehave",
            "misbehave.wasm",
            "reuse = true\nmemory = \"16M\"",
        ),
    );
    let (seen, list) = counts(&kept);
    // One instance serves the session's transactions; the trap drops it
    // and the next one starts from init; a message's end keeps it; the
    // memory hog is renewed.
    assert_eq!(
        seen,
        [
            "count 1", "count 2", "count 3", "count 1", "count 2", "count 1"
        ],
        "{list}"
    );
    assert!(
        list.contains("instances: 3 created, 6 transactions on a reused one, 0 idle (reuse)"),
        "{list}"
    );
    assert!(list.contains("failures=1"), "{list}");
    // A reload retires the old set's idle instances: the new set starts
    // from init.
    let (ok, out) = kept.cli(&["plugin", "reload"]);
    assert!(ok, "{out}");
    let mut c = Client::connect(kept.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    let r = c.cmd("RCPT TO:<count@local.test>");
    assert!(r.starts_with("550 5.7.1 count 1"), "{r}");
}

#[test]
fn tempfail_policy_fails_closed() {
    let s = Server::start(
        "",
        &plugin_table(
            "misbehave",
            "misbehave.wasm",
            "timeout_ms = 100\non_failure = \"tempfail\"",
        ),
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    let r = c.cmd("RCPT TO:<loop@local.test>");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    let r = c.cmd("RCPT TO:<alice@local.test>");
    assert!(
        r.starts_with("250"),
        "the next call gets a fresh instance: {r}"
    );
}

#[test]
fn capability_refused_unless_granted() {
    let s = Server::start(
        "",
        &plugin_table("misbehave", "misbehave.wasm", "capabilities = [\"log\"]"),
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    let r = c.cmd("RCPT TO:<kv@local.test>");
    assert!(r.starts_with("550 5.7.1 kv not granted"), "{r}");
    // routing.add-header needs no grant, but works in on-route only.
    let r = c.cmd("RCPT TO:<routing@local.test>");
    assert!(r.starts_with("550 5.7.1 routing header refused"), "{r}");
    let s2 = Server::start(
        "",
        &plugin_table(
            "misbehave",
            "misbehave.wasm",
            "capabilities = [\"log\", \"kv\"]",
        ),
    );
    let mut c = Client::connect(s2.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<kv@local.test>").starts_with("250"));
}

#[test]
fn hot_reload_under_load_and_refused_reload() {
    // Reused instances: none of the old set's serves after the reload.
    let s = Server::start(
        "",
        &plugin_table(
            "reject-list",
            "reject_list.wasm",
            "reuse = true\ncapabilities = [\"log\", \"lookup\"]\n[plugin.config]\nreject = [\"bob@local.test\"]",
        ),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for t in 0..3 {
        let (port, stop) = (s.port, stop.clone());
        load.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            c.cmd("EHLO load.test");
            let (mut ok, mut bad) = (0, 0);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = deliver(&mut c, "alice@local.test", &format!("load {t} {i}"));
                i += 1;
                if r.starts_with("250 2.0.0") {
                    ok += 1
                } else {
                    bad += 1
                }
            }
            (ok, bad)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    // New config: reject carol instead of bob.
    let cfg = s.config.replace(
        "reject = [\"bob@local.test\"]",
        "reject = [\"carol@local.test\"]",
    );
    std::fs::write(s.config_path(), &cfg).unwrap();
    let (ok, out) = s.cli(&["plugin", "reload"]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<bob@local.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<carol@local.test>").starts_with("550 5.7.1"));
    // A broken component is refused and the running one stays.
    let broken = s.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm not really").unwrap();
    let bad_cfg = cfg.replace(
        &plugin_wasm("reject_list.wasm").display().to_string(),
        &broken.display().to_string(),
    );
    std::fs::write(s.config_path(), &bad_cfg).unwrap();
    let (ok, out) = s.cli(&["plugin", "reload"]);
    assert!(!ok && out.contains("not a valid component"), "{out}");
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(
        c.cmd("RCPT TO:<carol@local.test>").starts_with("550 5.7.1"),
        "old set still active"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let (ok, bad) = t.join().unwrap();
        assert!(ok > 0 && bad == 0, "load client: {ok} ok, {bad} failed");
    }
    assert!(
        s.mainlog()
            .contains("plugin reload refused, the running plugins stay")
    );
}

#[test]
fn dns_capability_resolves_through_the_host() {
    let nsd = Nsd::start(
        "mgtest",
        "$ORIGIN mgtest.\n$TTL 300\n@ IN SOA ns.mgtest. admin.mgtest. 1 3600 600 86400 300\n@ IN NS ns.mgtest.\nns IN A 127.0.0.1\npolicy IN TXT \"blocked by zone\"\n",
    );
    let granted = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &plugin_table(
            "misbehave",
            "misbehave.wasm",
            "capabilities = [\"log\", \"dns\"]",
        ),
    );
    let mut c = Client::connect(granted.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    let r = c.cmd("RCPT TO:<dnstxt@local.test>");
    assert!(r.starts_with("550 5.7.1 txt: blocked by zone"), "{r}");
    let refused = Server::start_with(
        "",
        &format!("nameservers = [\"127.0.0.1:{}\"]\n", nsd.port),
        &plugin_table("misbehave", "misbehave.wasm", "capabilities = [\"log\"]"),
    );
    let mut c = Client::connect(refused.port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(
        c.cmd("RCPT TO:<dnstxt@local.test>")
            .starts_with("451 4.4.3 dns refused")
    );
}

#[test]
fn plugin_test_runs_a_plugin_offline() {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, "From: Alice <alice@example.test>\nTo: bob@local.test, carol@local.test\nSubject: hi\n\nbody\n").unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "reject = [\"bob@local.test\"]\n").unwrap();
    let out = std::process::Command::new(mailgate_tests::mailgate_bin())
        .args(["plugin", "test"])
        .arg(plugin_wasm("reject_list.wasm"))
        .arg("--message")
        .arg(&msg)
        .arg("--plugin-config")
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("hooks: rcpt-to, data"), "{text}");
    assert!(
        text.contains("mail-from <alice@example.test> (not hooked): continue"),
        "{text}"
    );
    assert!(
        text.contains("rcpt-to <bob@local.test>: reject 550 5.7.1 recipient refused by policy"),
        "{text}"
    );
    assert!(
        text.contains("rcpt-to <carol@local.test>: continue"),
        "{text}"
    );
    assert!(
        text.contains("data: continue\n    add-header X-Reject-List: checked"),
        "{text}"
    );
    // The same as JSON.
    let out = std::process::Command::new(mailgate_tests::mailgate_bin())
        .args(["plugin", "test"])
        .arg(plugin_wasm("reject_list.wasm"))
        .arg("--message")
        .arg(&msg)
        .arg("--plugin-config")
        .arg(&conf)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["plugin"]["hooks"],
        serde_json::json!(["rcpt-to", "data"]),
        "{v}"
    );
    let steps = v["steps"].as_array().unwrap();
    let bob = steps
        .iter()
        .find(|s| s["hook"] == "rcpt-to" && s["target"] == "bob@local.test")
        .unwrap();
    assert_eq!(
        bob["verdict"], "reject 550 5.7.1 recipient refused by policy",
        "{v}"
    );
    let data = steps.iter().find(|s| s["hook"] == "data").unwrap();
    assert_eq!(data["verdict"], "continue", "{v}");
    assert_eq!(
        data["headers_added"],
        serde_json::json!([{"name": "X-Reject-List", "value": "checked"}]),
        "{v}"
    );
    assert_eq!(steps[0]["hooked"], false, "{v}");
    // A file that is not a component is refused clearly.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    let out = std::process::Command::new(mailgate_tests::mailgate_bin())
        .args(["plugin", "test"])
        .arg(&bad)
        .arg("--message")
        .arg(&msg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid component"));
}

/// A one-shot echo service: answers "pong <what it read>" to each client.
fn echo_service() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            let _ = s.write_all(format!("pong {}\n", buf.trim()).as_bytes());
        }
    });
    port
}

#[test]
fn services_capability_reaches_only_named_endpoints() {
    let port = echo_service();
    // The probe's answer to RCPT svc@ with this plugin table.
    let ask = |table: String| {
        let s = Server::start("", &plugin_table("probe", "hooks_probe.wasm", &table));
        let mut c = Client::connect(s.port);
        c.cmd("EHLO client.test");
        deliver(&mut c, "svc@local.test", "svc")
    };
    let named = format!("services = {{ echo = \"tcp:127.0.0.1:{port}\" }}");
    let r = ask(format!("capabilities = [\"log\", \"services\"]\n{named}"));
    assert!(r.starts_with("550 5.7.1 echo: pong ping"), "{r}");
    // Named but not granted: refused.
    let r = ask(named);
    assert!(r.starts_with("550 5.7.1 services refused"), "{r}");
    // Granted, but no service of that name: refused too.
    let r = ask(format!(
        "capabilities = [\"services\"]\nservices = {{ other = \"tcp:127.0.0.1:{port}\" }}"
    ));
    assert!(r.starts_with("550 5.7.1 services refused"), "{r}");
}

#[test]
fn plugin_transport_writes_into_its_directory() {
    let out = tempfile::tempdir().unwrap();
    let s = Server::start(
        "",
        &plugin_table(
            "probe",
            "hooks_probe.wasm",
            &format!(
                "capabilities = [\"log\", \"directories\"]\ndirectories = {{ out = \"{}\" }}",
                out.path().display()
            ),
        ),
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let r = deliver(&mut c, "file-one@local.test", "to a file");
    assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
    let id = r.trim().rsplit("id=").next().unwrap().to_string();
    let log = s.wait_log(&format!("{id} => file-one@local.test"), 1);
    assert!(
        log.contains(&format!(
            "{id} => file-one@local.test R=plugin T=probe C=\"written to /out/{id}-file-one.eml\""
        )),
        "{log}"
    );
    let written = std::fs::read_to_string(out.path().join(format!("{id}-file-one.eml"))).unwrap();
    assert!(
        written.starts_with("Received: from client.test"),
        "{written}"
    );
    assert!(
        written.contains("Subject: to a file\r\n\r\nx\r\n"),
        "{written}"
    );
    s.wait_log(&format!("{id} Completed"), 1);
    drop(s);

    // Without the capability the write fails: deferred, never lost.
    let s = Server::start("", &plugin_table("probe", "hooks_probe.wasm", ""));
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let r = deliver(&mut c, "file-two@local.test", "no dir");
    assert!(r.starts_with("250"), "{r}");
    let log = s.wait_log(" == file-two@local.test R=plugin T=probe defer", 1);
    assert!(!log.contains("** file-two"), "{log}");
    let (ok, q) = s.cli(&["queue", "list"]);
    assert!(ok && q.contains("file-two@local.test"), "{q}");
}

#[test]
fn deliver_hook_changes_the_copy_sent_or_stops_it() {
    let ex = mailgate_tests::EximServer::start(mailgate_tests::free_port(), "", "");
    let s = Server::start_with(
        "",
        &format!("smarthost = \"127.0.0.1:{}\"\n", ex.port),
        &plugin_table("probe", "hooks_probe.wasm", ""),
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    let r = deliver(&mut c, "x@remote.test", "hooked");
    assert!(r.starts_with("250"), "{r}");
    let r = deliver(&mut c, "y@refuse.test", "refused");
    assert!(r.starts_with("250"), "{r}");
    let log = s.wait_log(" => x@remote.test", 1);
    // The two messages are delivered concurrently: look at this one's line,
    // not at whatever else the log holds by now.
    let line = log
        .lines()
        .find(|l| l.contains(" => x@remote.test"))
        .unwrap_or_default();
    assert!(line.contains("R=smarthost T=remote_smtp"), "{log}");
    let log = s.wait_log(" ** y@refuse.test", 1);
    assert!(
        log.contains("refused by plugin: 550 no deliveries to refuse.test"),
        "{log}"
    );
    // The header reached Exim's spool; the copy in ours was not changed.
    let input = ex.dir.path().join("spool/input");
    let start = Instant::now();
    let headers = loop {
        let h: String = std::fs::read_dir(&input)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-H"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        if h.contains("Subject: hooked") {
            break h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            ex.mainlog()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        headers.contains("X-Deliver-Hook: remote.test a@example.test"),
        "{headers}"
    );
}

#[test]
fn plugin_test_answers_dns_from_a_zone_file_and_uses_the_gateway_config() {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(
        &msg,
        "From: a@orig.test\nTo: dnstxt@local.test\nSubject: z\n\nbody\n",
    )
    .unwrap();
    let zone = dir.path().join("z.zone");
    std::fs::write(
        &zone,
        "$ORIGIN mgtest.\n$TTL 300\npolicy IN TXT \"from the zone file\"\n",
    )
    .unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(mailgate_tests::mailgate_bin())
            .args(["plugin", "test"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let wasm = plugin_wasm("misbehave.wasm");
    let text = run(&[
        wasm.as_os_str(),
        "--message".as_ref(),
        msg.as_os_str(),
        "--dns".as_ref(),
        zone.as_os_str(),
    ]);
    assert!(
        text.contains("rcpt-to <dnstxt@local.test>: reject 550 5.7.1 txt: from the zone file"),
        "{text}"
    );
    // The SRS plugin with its entry in a gateway config: settings and
    // capabilities come from there; its route hook rewrites the sender.
    let srs = plugin_wasm("srs.wasm");
    let conf = dir.path().join("mailgate.toml");
    std::fs::write(
        &conf,
        format!(
            "[server]\nhostname = \"h.test\"\nlocal_domains = [\"fwd.test\"]\ndata_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"plain\"\n[[plugin]]\nname = \"srs\"\npath = \"{}\"\ncapabilities = [\"clock\"]\n[plugin.config]\ndomain = \"fwd.test\"\nsecrets = [\"x\"]\n",
            dir.path().join("data").display(),
            srs.display()
        ),
    )
    .unwrap();
    let text = run(&[
        "--config".as_ref(),
        conf.as_os_str(),
        srs.as_os_str(),
        "--message".as_ref(),
        msg.as_os_str(),
    ]);
    assert!(text.contains("hooks: rcpt-to, route"), "{text}");
    // Offline every recipient counts as given by the client, so SRS leaves
    // the sender alone (it rewrites only redirected mail).
    assert!(
        text.contains("route <dnstxt@local.test>: recipient <dnstxt@local.test>\n"),
        "{text}"
    );
}

#[test]
fn dns_capability_reports_dnssec_validation() {
    let dir = tempfile::tempdir().unwrap();
    let zone = "$ORIGIN mgtest.\n$TTL 300\n@ IN SOA ns.mgtest. admin.mgtest. 1 3600 600 86400 300\n@ IN NS ns.mgtest.\nns IN A 127.0.0.1\npolicy IN TXT \"signed policy\"\n";
    let (signed, anchor) = mailgate_tests::dnssec::sign_zone(dir.path(), "mgtest.", zone);
    let anchors = dir.path().join("anchors");
    std::fs::write(&anchors, &anchor).unwrap();
    let ask = |nsd_port: u16, with_anchor: bool| {
        let s = Server::start_with(
            "",
            &format!(
                "nameservers = [\"127.0.0.1:{nsd_port}\"]\n{}",
                if with_anchor {
                    format!("dnssec_trust_anchors = \"{}\"\n", anchors.display())
                } else {
                    String::new()
                }
            ),
            &plugin_table(
                "misbehave",
                "misbehave.wasm",
                "capabilities = [\"log\", \"dns\"]",
            ),
        );
        let mut c = Client::connect(s.port);
        c.cmd("EHLO client.test");
        c.cmd("MAIL FROM:<a@example.test>");
        c.cmd("RCPT TO:<dnssec@local.test>")
    };
    let nsd = Nsd::start("mgtest", &signed);
    // Signed zone, its key as the anchor: validated.
    let r = ask(nsd.port, true);
    assert!(
        r.starts_with("550 5.7.1 secure=true txt: signed policy"),
        "{r}"
    );
    // No anchor for it (the IANA root cannot be reached): not validated,
    // the answer is still given.
    let r = ask(nsd.port, false);
    assert!(
        r.starts_with("550 5.7.1 secure=false txt: signed policy"),
        "{r}"
    );
    drop(nsd);
    // The same name unsigned, with the anchor: not secure either.
    let nsd = Nsd::start("mgtest", zone);
    let r = ask(nsd.port, true);
    assert!(
        r.starts_with("550 5.7.1 secure=false txt: signed policy"),
        "{r}"
    );
}

/// What Exim's spool holds of the probe's WASI headers, per message, once
/// `n` messages with subject `subject` have arrived.
fn probe_headers(ex: &mailgate_tests::EximServer, subject: &str, n: usize) -> Vec<(u64, String)> {
    let input = ex.dir.path().join("spool/input");
    let start = Instant::now();
    loop {
        let files: Vec<String> = std::fs::read_dir(&input)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-H"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .filter(|h| h.contains(&format!("Subject: {subject}")))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            return files
                .iter()
                .map(|h| {
                    let field = |name: &str| {
                        h.lines()
                            .find_map(|l| l.split_once(&format!("{name}: ")).map(|x| x.1))
                            .unwrap_or_else(|| panic!("no {name} in {h}"))
                            .trim()
                            .to_string()
                    };
                    (
                        field("X-Probe-Clock").parse().unwrap(),
                        field("X-Probe-Random"),
                    )
                })
                .collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            ex.mainlog()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// WASI's own clocks and random numbers are real only with the `clock` and
/// `random` grants: without them the plugin reads the epoch and the same
/// "random" seed in every instance.
#[test]
fn wasi_clock_and_random_are_real_only_when_granted() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (grants, subject) in [
        ("", "ungranted"),
        ("capabilities = [\"clock\", \"random\"]", "granted"),
    ] {
        let ex = mailgate_tests::EximServer::start(mailgate_tests::free_port(), "", "");
        let s = Server::start_with(
            "",
            &format!("smarthost = \"127.0.0.1:{}\"\n", ex.port),
            &plugin_table("probe", "hooks_probe.wasm", grants),
        );
        let mut c = Client::connect(s.port);
        c.cmd("EHLO client.test");
        for _ in 0..2 {
            assert!(deliver(&mut c, "x@remote.test", subject).starts_with("250"));
        }
        let h = probe_headers(&ex, subject, 2);
        if grants.is_empty() {
            assert!(h.iter().all(|(clock, _)| *clock == 0), "{h:?}");
            assert_eq!(h[0].1, h[1].1, "a fixed seed in every instance");
        } else {
            assert!(
                h.iter().all(|(clock, _)| clock.abs_diff(now) < 600),
                "{h:?}"
            );
            assert_ne!(h[0].1, h[1].1, "each instance its own seed");
        }
    }
}

/// Somebody who can write the compile cache replaces a plugin's compiled
/// code with other native code (here: another plugin's, compiled by a
/// gateway with another key). The gateway refuses the entry, compiles the
/// component it was configured with, and runs that.
#[test]
fn a_forged_compile_cache_entry_is_never_loaded() {
    let d = tempfile::tempdir().unwrap();
    let cache_for = |name: &str| {
        format!(
            "plugin_cache = \"{0}/{name}\"\nplugin_cache_key = \"{0}/{name}.key\"",
            d.path().display()
        )
    };
    let reject_list = plugin_table(
        "rl",
        "reject_list.wasm",
        "capabilities = [\"log\", \"lookup\"]\n[plugin.config]\nreject = [\"bob@local.test\"]",
    );
    // The attacker's code: the misbehave plugin, compiled elsewhere.
    drop(Server::start(
        &cache_for("elsewhere"),
        &plugin_table("mb", "misbehave.wasm", ""),
    ));
    let foreign = std::fs::read_dir(d.path().join("elsewhere"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .expect("a compiled entry")
        .path();
    let mut s = Server::start(&cache_for("ours"), &reject_list);
    let ours = std::fs::read_dir(d.path().join("ours"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .expect("a compiled entry")
        .path();
    std::fs::copy(&foreign, &ours).unwrap();
    s.restart();
    assert!(
        s.stderr().contains("compiled code in the cache refused"),
        "{}",
        s.stderr()
    );
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<bob@local.test>");
    assert!(r.starts_with("550"), "the configured plugin runs: {r}");
    // The entry was rewritten with our own code.
    assert_ne!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&foreign).unwrap()
    );
}
