//! Lookup tables against the real binary: `mailgate table` builds them
//! from text, and a running server verifies recipients, expands aliases
//! and applies access actions from them, sees a rebuild at its next
//! lookup, and defers (never accepts) when a table cannot answer.

use mailgate_tests::{Client, Server, mailgate_bin};
use std::path::Path;
use std::process::Command;

/// Run `mailgate table ARGS --config CFG`: (success, stdout, stderr).
fn table(cfg: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(mailgate_bin())
        .arg("table")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write `text` as the source of table `name` and build it.
fn build(s: &Server, name: &str, text: &str, cidr: bool) -> String {
    let src = s.dir.path().join(format!("{name}.txt"));
    std::fs::write(&src, text).unwrap();
    let src = src.display().to_string();
    let mut args = vec!["build", name, src.as_str()];
    if cidr {
        args.push("--cidr");
    }
    let (ok, out, err) = table(&s.config_path(), &args);
    assert!(ok, "{out}{err}");
    out
}

/// MAIL and RCPT from `source` (an address of 127/8): the RCPT reply, or
/// the MAIL reply when that was refused.
fn try_rcpt(s: &Server, source: &str, from: &str, to: &str) -> String {
    let mut c = Client::connect_from(source, s.port);
    c.cmd("EHLO client.test");
    let m = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !m.starts_with("250") {
        return m;
    }
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    c.cmd("QUIT");
    r
}

/// Send one message; the reply to its end of data.
fn send(s: &Server, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(r.starts_with("250"), "{t}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    let r = c.reply();
    c.cmd("QUIT");
    r
}

#[test]
fn tables_verify_recipients_expand_aliases_and_apply_access() {
    let mut s = Server::configure(
        "local_domains = [\"local.test\", \"table:domains\"]\nrelay_networks = [\"table:relays\"]",
        "queue_only = false",
        "[local]\nusers = [\"postmaster\", \"table:users\"]\nalias_table = \"aliases\"\n\n[access]\nclient = \"clients\"\nsender = \"senders\"\nrecipient = \"rcpts\"\n",
    );
    // The server refuses to start while a table it names is missing.
    let out = Command::new(mailgate_bin())
        .args(["config", "check"])
        .arg(s.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.local_domains: lookup table domains does not exist"),
        "{err}"
    );
    build(&s, "domains", "# ours\n*.corp.test\n", false);
    build(&s, "relays", "127.0.0.1/32\n", true);
    let out = build(
        &s,
        "users",
        "alice@local.test\nbob: any local domain\n@catchall.corp.test\n",
        false,
    );
    assert!(out.contains("users: 3 keys entries"), "{out}");
    build(
        &s,
        "aliases",
        "team: alice@local.test,\n  bob@corp.test\n",
        false,
    );
    build(
        &s,
        "clients",
        "127.0.0.3 REJECT go away\n127.0.0.0/8 OK\n",
        true,
    );
    build(
        &s,
        "senders",
        "@spam.test REJECT no spam here\nhold@remote.test HOLD review\n",
        false,
    );
    build(&s, "rcpts", "trap@local.test DISCARD\n", false);
    // A broken source line names file and line; the old version stays.
    let src = s.dir.path().join("users-broken.txt");
    std::fs::write(&src, "carol\n\"unclosed: x\n").unwrap();
    let (ok, _, err) = table(&s.config_path(), &["build", "users", src.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("users-broken.txt:2: a quoted key without its closing quote"),
        "{err}"
    );
    let (ok, out, _) = table(&s.config_path(), &["get", "users", "BOB"]);
    assert!(ok && out.trim() == "any local domain", "{out}");
    let (ok, out, err) = table(
        &s.config_path(),
        &["get", "domains", "mx.corp.test", "--search", "domain"],
    );
    assert!(ok, "{out}{err}");
    assert!(err.contains("found as \"*.corp.test\""), "{err}");
    let (ok, _, _) = table(&s.config_path(), &["get", "users", "carol"]);
    assert!(!ok, "carol is not in the old version");
    let (_, list, _) = table(&s.config_path(), &["list"]);
    assert_eq!(list.lines().count(), 7, "{list}");
    assert!(list.contains("clients\tcidr\t2 entries"), "{list}");

    s.run();
    let r = |to: &str| try_rcpt(&s, "127.0.0.1", "a@remote.test", to);
    // Recipient verification: unknown users get 550 5.1.1 at RCPT.
    assert!(r("alice@local.test").starts_with("250"));
    assert!(r("bob@corp.test").starts_with("250"), "a table domain");
    assert!(r("anyone@catchall.corp.test").starts_with("250"));
    assert!(r("team@corp.test").starts_with("250"), "an alias");
    let unknown = r("carol@local.test");
    assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
    // From a client outside relay_networks (its table), no relaying; the
    // client table's REJECT comes at MAIL.
    let relay = try_rcpt(&s, "127.0.0.2", "a@remote.test", "x@far.test");
    assert!(relay.starts_with("550 5.7.1 Relaying denied"), "{relay}");
    let refused = try_rcpt(&s, "127.0.0.3", "a@remote.test", "alice@local.test");
    assert_eq!(refused.trim(), "550 5.7.1 go away");
    let spam = try_rcpt(&s, "127.0.0.1", "x@spam.test", "alice@local.test");
    assert_eq!(spam.trim(), "550 5.7.1 no spam here");

    // A rebuild is seen at the next lookup, without a restart.
    build(&s, "users", "alice@local.test\nbob\ncarol\ntrap\n", false);
    assert!(r("carol@local.test").starts_with("250"));
    assert!(r("anyone@catchall.corp.test").starts_with("550 5.1.1"));

    // The alias table expands into its targets' maildirs.
    let reply = send(&s, "a@remote.test", &["team@corp.test"], "to the team");
    assert!(reply.starts_with("250"), "{reply}");
    s.wait_log(" Completed", 1);
    assert_eq!(s.maildir("local.test", "alice").len(), 1);
    assert_eq!(s.maildir("corp.test", "bob").len(), 1);

    // DISCARD: accepted, logged, delivered nowhere. HOLD: quarantined.
    let reply = send(
        &s,
        "a@remote.test",
        &["trap@local.test", "alice@local.test"],
        "trap",
    );
    assert!(reply.starts_with("250"), "{reply}");
    let log = s.wait_log("discarded by access table", 1);
    assert!(!log.contains("trap@local.test <= "), "{log}");
    let reply = send(&s, "hold@remote.test", &["alice@local.test"], "held");
    assert!(reply.starts_with("250"), "{reply}");
    s.wait_log("held by access table: review", 1);
    let held: Vec<_> = std::fs::read_dir(s.data().join("quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(
        s.maildir("local.test", "alice").len(),
        1,
        "neither trap nor held"
    );

    // A table that cannot answer defers: nothing is let through or
    // refused for good.
    std::fs::remove_file(s.data().join("tables/users.table")).unwrap();
    let gone = r("alice@local.test");
    assert!(gone.starts_with("451 4.3.0"), "{gone}");
    std::fs::write(s.data().join("tables/clients.table"), b"garbage").unwrap();
    let broken = try_rcpt(&s, "127.0.0.1", "a@remote.test", "postmaster@local.test");
    assert!(broken.starts_with("451 4.3.0"), "{broken}");
    let log = s.mainlog();
    assert!(log.contains("lookup table users does not exist"), "{log}");
    assert!(log.contains("lookup table clients cannot be read"), "{log}");
}

fn reject_list(grant: &str, on_failure: &str) -> String {
    format!(
        "[[plugin]]\nname = \"reject-list\"\npath = \"{}\"\non_failure = \"{on_failure}\"\ncapabilities = [\"log\", \"lookup\"]\n{grant}\n[plugin.config]\ntable = \"blocked\"\n",
        mailgate_tests::plugin_wasm("reject_list.wasm").display()
    )
}

#[test]
fn plugins_read_granted_tables_and_nothing_else() {
    let mut s = Server::configure("", "", &reject_list("tables = [\"blocked\"]", "continue"));
    build(
        &s,
        "blocked",
        "bad@local.test go away\n@blocked.test\n",
        false,
    );
    s.run();
    let r = |to: &str| try_rcpt(&s, "127.0.0.1", "a@remote.test", to);
    assert_eq!(r("bad@local.test").trim(), "550 5.7.1 go away");
    assert_eq!(
        r("x@blocked.test").trim(),
        "550 5.7.1 recipient refused by policy"
    );
    assert!(r("alice@local.test").starts_with("250"));
    // The plugin sees a rebuild at its next lookup too.
    build(&s, "blocked", "alice@local.test later\n", false);
    assert_eq!(r("alice@local.test").trim(), "550 5.7.1 later");
    // A table that cannot answer is an error for the plugin, which defers.
    std::fs::remove_file(s.data().join("tables/blocked.table")).unwrap();
    assert!(r("alice@local.test").starts_with("451 4.3.0"));
    // The plugin logged why, through the host's log.
    let err = s.stderr();
    assert!(
        err.contains("table blocked: lookup table blocked does not exist"),
        "{err}"
    );

    // A plugin that names a table it was not granted gets an error naming
    // why; the reject-list defers on any lookup error, and logs it.
    let mut s = Server::configure("", "", &reject_list("tables = []", "tempfail"));
    build(&s, "blocked", "bad@local.test go away\n", false);
    s.run();
    let r = try_rcpt(&s, "127.0.0.1", "a@remote.test", "bad@local.test");
    assert!(r.starts_with("451 4.3.0 temporary lookup failure"), "{r}");
    assert!(
        s.stderr()
            .contains("table blocked: not granted by the plugin's config (its `tables`"),
        "{}",
        s.stderr()
    );

    // Naming tables without granting lookup is a config error.
    let bad =
        reject_list("tables = [\"blocked\"]", "continue").replace("\"log\", \"lookup\"", "\"log\"");
    let s = Server::configure("", "", &bad);
    let out = Command::new(mailgate_bin())
        .args(["config", "check"])
        .arg(s.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tables are named but the lookup capability is not granted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn routes_and_tls_policy_from_tables() {
    use mailgate_tests::{EximServer, free_port};
    // b.test: another mailgate, on its implicit-TLS port; *.plain.test:
    // Exim without STARTTLS, which the policy table says must be encrypted.
    let b = Server::start("", "");
    let ex = EximServer::start(free_port(), "", "tls_advertise_hosts =");
    let mut a = Server::configure(
        "",
        "retry_min = \"1h\"\nroutes_table = \"routes\"\ntls_policy_table = \"tls\"\n",
        "",
    );
    build(
        &a,
        "routes",
        &format!(
            "b.test [127.0.0.1]:{}\n*.plain.test 127.0.0.1:{}\nbroken.test not a host\n",
            b.tls_port, ex.port
        ),
        false,
    );
    build(
        &a,
        "tls",
        &format!(
            "[127.0.0.1]:{} encrypt implicit\n.plain.test encrypt\n",
            b.tls_port
        ),
        false,
    );
    a.run();
    let send = |to: &str| {
        let mut c = Client::connect(a.port);
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<a@local.test>").starts_with("250"));
        assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(format!("Subject: to {to}\r\n\r\nbody\r\n.\r\n").as_bytes());
        let r = c.reply();
        assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
        r.trim().rsplit("id=").next().unwrap().to_string()
    };
    let id = send("x@b.test");
    let log = a.wait_log(&format!("{id} => x@b.test"), 1);
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{id} => ")))
        .unwrap();
    assert!(line.contains(" X=TLS1.3:"), "{line}");
    b.wait_log(" <= a@local.test", 1);
    // The policy table's "encrypt" stops a delivery in clear.
    let id = send("y@mx.plain.test");
    let log = a.wait_log(&format!("{id} == y@mx.plain.test"), 1);
    assert!(log.contains("TLS is required"), "{log}");
    assert!(ex.lines(" <= a@local.test").is_empty());
    // A routes entry that is not a next hop, or a table that is gone,
    // defers: the mail stays, nothing goes elsewhere.
    let id = send("z@broken.test");
    let log = a.wait_log(&format!("{id} == z@broken.test"), 1);
    assert!(log.contains("routes table routes: broken.test"), "{log}");
    std::fs::remove_file(a.data().join("tables/tls.table")).unwrap();
    let id = send("w@b.test");
    let log = a.wait_log(&format!("{id} == w@b.test"), 1);
    assert!(log.contains("lookup table tls does not exist"), "{log}");
}
