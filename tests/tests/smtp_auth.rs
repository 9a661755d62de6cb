//! SMTP AUTH and submission against real clients and a real Dovecot:
//! - hashes written by Dovecot's `doveadm pw` in a lookup table; swaks
//!   authenticates with PLAIN and LOGIN on a submission listener (AUTH
//!   required) and relays; the log, Received: header, DKIM signature and
//!   the plugins' `auth-user` show the login;
//! - from the attacker's side: AUTH before TLS, MAIL before AUTH, wrong
//!   passwords until the per-IP limit closes the connection (another IP
//!   unaffected), a garbled response, a sender the login does not own;
//! - delegated to Debian's Dovecot over its auth-client socket, and what
//!   happens when that Dovecot is gone;
//! - as a client: logging in to Exim smarthosts with PLAIN and LOGIN over
//!   verified TLS, a wrong password (deferred, the reply in the log and
//!   the delay warning), a server whose certificate is not verified (the
//!   password is never sent), a credentials file others can read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailgate_tests::{Client, Server, dkimpy, doveadm_pw, plugin_wasm, require, swaks};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// The starttls listener becomes a submission port (AUTH required), the
/// implicit-TLS one offers AUTH; nobody relays without it.
fn server(smtp_auth: &str, tables: bool) -> Server {
    let dkim_dir = tempfile::tempdir().unwrap().keep();
    let key = dkimpy::keygen(&dkim_dir, "local.test", "sub", true);
    let extra = format!(
        "[smtp_auth]\n{smtp_auth}\nmax_failures = 3\nfailure_delay = 0\n\n[[dkim]]\ndomain = \"local.test\"\nselector = \"sub\"\nkey = \"{}\"\n\n[[plugin]]\nname = \"probe\"\npath = \"{}\"\n",
        key.pem.display(),
        plugin_wasm("hooks_probe.wasm").display()
    );
    let mut s = Server::configure("relay_networks = []\n", "", &extra);
    s.config = s
        .config
        .replacen(
            "mode = \"starttls\"\n",
            "mode = \"starttls\"\nauth = \"required\"\n",
            1,
        )
        .replacen(
            "mode = \"implicit-tls\"\n",
            "mode = \"implicit-tls\"\nauth = \"offered\"\n",
            1,
        );
    std::fs::write(s.config_path(), &s.config).unwrap();
    if tables {
        let users = format!(
            "# made by doveadm pw\nalice {}\nbob {}\ncarol {}\nplainuser {{PLAIN}}secret\n",
            doveadm_pw("SHA512-CRYPT", "alice-pw"),
            doveadm_pw("BLF-CRYPT", "bob-pw"),
            doveadm_pw("ARGON2ID", "carol-pw"),
        );
        s.build_table("smtp-users", &users);
        s.build_table(
            "sender-logins",
            "alice@local.test alice\nbob@local.test bob, carol\n@partner.test carol\n",
        );
    }
    s.run();
    s
}

fn swaks_submit(
    port: u16,
    user: &str,
    password: &str,
    mech: &str,
    from: &str,
    to: &str,
) -> (bool, String) {
    let port = port.to_string();
    swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        from,
        "--to",
        to,
        "--helo",
        "laptop.test",
        "--header",
        &format!("Subject: from {user} by {mech}"),
        "--header",
        &format!("From: <{from}>"),
    ])
}

/// A client from loopback address `ip`, under STARTTLS, after EHLO.
fn starttls_from(ip: &str, port: u16) -> Client {
    let mut c = Client::connect_from(ip, port);
    c.cmd("EHLO other.test");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    c.upgrade();
    c.cmd("EHLO other.test");
    c
}

/// The first main-log line with `pat`, waiting for it.
fn log_line(s: &Server, pat: &str) -> String {
    let log = s.wait_log(pat, 1);
    log.lines().find(|l| l.contains(pat)).unwrap().to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn submission_with_hashes_from_a_table() {
    let s = server(
        "passwords = \"smtp-users\"\nsender_logins = \"sender-logins\"",
        true,
    );

    // PLAIN with a SHA512-CRYPT hash, to a local user: the copy shows who.
    let (ok, out) = swaks_submit(
        s.port,
        "alice",
        "alice-pw",
        "PLAIN",
        "alice@local.test",
        "dave@local.test",
    );
    assert!(ok, "{out}");
    let line = log_line(&s, "<= alice@local.test");
    assert!(
        line.contains(" P=esmtpsa ") && line.contains(" A=plain:alice "),
        "{line}"
    );
    let copy = wait_for("alice's copy", || {
        s.maildir("local.test", "dave").into_iter().next()
    });
    assert!(copy.contains("with ESMTPSA"), "{copy}");
    assert!(copy.contains("(Authenticated sender: alice)"), "{copy}");
    assert!(
        copy.contains("DKIM-Signature:") && copy.contains("d=local.test"),
        "{copy}"
    );

    // LOGIN with a bcrypt hash, relaying to another domain (nobody may
    // relay without AUTH here), with a sender bob's line allows carol.
    let (ok, out) = swaks_submit(
        s.port,
        "bob",
        "bob-pw",
        "LOGIN",
        "bob@local.test",
        "x@remote.test",
    );
    assert!(ok, "{out}");
    assert!(log_line(&s, "A=login:bob").contains("<= bob@local.test"));
    let mut c = Client::connect_tls(s.tls_port);
    c.cmd("EHLO laptop.test");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("carol", "carol-pw")));
    assert!(r.starts_with("235 2.7.0"), "argon2id: {r}");
    assert!(c.cmd("MAIL FROM:<carol@partner.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<y@remote.test>").starts_with("250"));
    // The plugins see the login.
    let r = c.cmd("RCPT TO:<whoami@local.test>");
    assert!(r.starts_with("550 5.7.1 auth-user: carol;"), "{r}");
    c.cmd("QUIT");

    // Unauthenticated on the listener that only offers it: no relaying,
    // and the plugins see nobody.
    let mut c = Client::connect_tls(s.tls_port);
    c.cmd("EHLO stranger.test");
    assert!(c.cmd("MAIL FROM:<s@stranger.test>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<x@remote.test>")
            .starts_with("550 5.7.1 Relaying denied")
    );
    let r = c.cmd("RCPT TO:<whoami@local.test>");
    assert!(r.starts_with("550 5.7.1 auth-user: none;"), "{r}");
    c.cmd("QUIT");

    // A sender the login does not own.
    let mut c = Client::starttls(s.port);
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .starts_with("235")
    );
    let r = c.cmd("MAIL FROM:<bob@local.test>");
    assert!(
        r.starts_with("553 5.7.1 <bob@local.test>: Sender address not owned by user alice"),
        "{r}"
    );
    assert!(
        c.cmd("MAIL FROM:<nobody@elsewhere.test>")
            .starts_with("553 5.7.1")
    );
    assert!(
        c.cmd("MAIL FROM:<>").starts_with("250"),
        "the null sender is always allowed"
    );
    c.cmd("QUIT");

    // A hash the gateway cannot check is the admin's problem: 454, logged.
    let mut c = Client::starttls(s.port);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("plainuser", "secret")));
    assert!(r.starts_with("454 4.7.0"), "{r}");
    let l = log_line(&s, "(set_id=plainuser)");
    assert!(l.contains("unsupported password scheme {PLAIN}"), "{l}");
    c.cmd("QUIT");
}

#[test]
fn attacks_on_submission() {
    let s = server("passwords = \"smtp-users\"", true);

    // Before TLS: not offered, and refused if tried (the password would
    // travel in clear); MAIL without AUTH is refused on submission.
    let mut c = Client::connect(s.port);
    let ehlo = c.cmd("EHLO laptop.test");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")));
    assert!(r.starts_with("538 5.7.11"), "{r}");
    assert!(
        c.cmd("MAIL FROM:<a@local.test>")
            .starts_with("530 5.7.0 Authentication required")
    );
    c.cmd("QUIT");

    // A stripped-STARTTLS client that pipelines AUTH behind STARTTLS: the
    // plaintext is thrown away, and the session after TLS is not
    // authenticated.
    let mut c = Client::connect(s.port);
    c.cmd("EHLO laptop.test");
    c.send(format!("STARTTLS\r\nAUTH PLAIN {}\r\n", plain("alice", "alice-pw")).as_bytes());
    assert!(c.reply().starts_with("220"));
    c.upgrade();
    let ehlo = c.cmd("EHLO laptop.test");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<a@local.test>").starts_with("530"));
    c.cmd("QUIT");

    // Garbled and cancelled responses.
    let mut c = Client::starttls(s.port);
    assert!(c.cmd("AUTH PLAIN ***").starts_with("501 5.5.2"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd("*").starts_with("501 5.0.0"));
    assert!(c.cmd("AUTH DIGEST-MD5").starts_with("504 5.5.4"));
    c.cmd("QUIT");

    // Guessing: two wrong passwords get 535, the third 421 and the
    // connection closes; the next connection from that IP is refused at
    // once, even with the right password; another IP is not affected.
    let mut c = Client::starttls(s.port);
    for _ in 0..2 {
        let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice", "guess")));
        assert!(r.starts_with("535 5.7.8"), "{r}");
    }
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice", "guess")));
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.closed());
    let log = s.wait_log("plain authenticator failed for", 3);
    assert!(
        log.contains("535 5.7.8 Authentication credentials invalid (set_id=alice): wrong password"),
        "{log}"
    );
    assert!(
        log.contains("421 4.7.0 mx.local.test Too many failed authentication attempts"),
        "{log}"
    );
    let mut c = Client::starttls(s.port);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")));
    assert!(r.starts_with("421 4.7.0"), "{r}");
    let mut c = starttls_from("127.0.0.2", s.port);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")));
    assert!(r.starts_with("235"), "another client: {r}");
    c.cmd("QUIT");
    // Unknown users fail like wrong passwords.
    let mut c = starttls_from("127.0.0.3", s.port);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("mallory", "x")));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    c.cmd("QUIT");
}

/// Debian's Dovecot with a passwd-file, only its auth service, in `dir`.
struct Dovecot {
    child: Child,
    socket: std::path::PathBuf,
}

impl Dovecot {
    fn start(dir: &Path) -> Dovecot {
        let users = format!("erin:{}\n", doveadm_pw("SHA512-CRYPT", "erin-pw"));
        std::fs::write(dir.join("users"), users).unwrap();
        // Dovecot's unprivileged auth process reads the passwd-file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = format!(
            "protocols = none\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             auth_mechanisms = plain login\nssl = no\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n\
             service auth {{\n  unix_listener auth-client {{\n    mode = 0666\n  }}\n}}\n",
            d = dir.display()
        );
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(require("dovecot"))
            .arg("-F")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let socket = dir.join("run/auth-client");
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "dovecot did not start: {}",
                std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot { child, socket }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn delegated_to_dovecot() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path());
    let s = server(
        &format!("dovecot = \"{}\"", dovecot.socket.display()),
        false,
    );

    let (ok, out) = swaks_submit(
        s.port,
        "erin",
        "erin-pw",
        "LOGIN",
        "erin@local.test",
        "z@remote.test",
    );
    assert!(ok, "{out}");
    assert!(log_line(&s, "A=login:erin").contains("<= erin@local.test"));

    let mut c = Client::starttls(s.port);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("erin", "nope")));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    c.cmd("QUIT");
    let l = log_line(&s, "(set_id=erin): dovecot");
    assert!(l.contains("535 5.7.8"), "{l}");

    // Dovecot gone: try later, nothing counted against the client.
    drop(dovecot);
    let mut c = Client::starttls(s.port);
    for _ in 0..4 {
        let r = c.cmd(&format!("AUTH PLAIN {}", plain("erin", "erin-pw")));
        assert!(r.starts_with("454 4.7.0"), "{r}");
    }
    assert!(c.cmd("NOOP").starts_with("250"));
    c.cmd("QUIT");
    assert!(log_line(&s, "(set_id=erin): dovecot auth").contains("454 4.7.0"));
}

/// Exim's `plaintext` authenticators for PLAIN and LOGIN, offered only
/// under TLS (and PLAIN not on `login_only`), accepting `relayuser` /
/// `s3cret`.
fn exim_authenticators(login_only: &str) -> String {
    r#"begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{relayuser}}{eq{$auth3}{s3cret}}}}
  server_set_id = $auth2
  server_advertise_condition = ${if and {{def:tls_in_cipher}{!eq{$received_ip_address}{LOGIN_ONLY}}}}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = <| Username: | Password:
  server_condition = ${if and {{eq{$auth1}{relayuser}}{eq{$auth2}{s3cret}}}}
  server_set_id = $auth1
  server_advertise_condition = ${if def:tls_in_cipher}
"#
    .replace("LOGIN_ONLY", login_only)
}

#[test]
fn relaying_through_smarthosts_that_demand_a_login() {
    use mailgate_tests::dnssec::TestCa;
    use mailgate_tests::{EximServer, free_port, mailgate_bin};
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::new("mailgate smarthost test CA");
    let cert = ca.issue(&["relay.authtest"]);
    let port = free_port();
    // .151 offers PLAIN and LOGIN, .152 LOGIN only; .153 gets a wrong
    // password; .154 has an unverified certificate.
    let ex = EximServer::start_at(
        &["127.0.0.151", "127.0.0.152", "127.0.0.153", "127.0.0.154"],
        port,
        &exim_authenticators("127.0.0.152"),
        &cert.chain_pem,
        &cert.key_pem,
    );
    let metrics = free_port();
    let mut s = Server::configure(
        "",
        "",
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
    );
    let ca_file = s.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert.chain_pem).unwrap();
    let auth_file = s.dir.path().join("smarthost-auth");
    std::fs::write(
        &auth_file,
        format!(
            "# smarthost credentials\n[127.0.0.151]:{port} relayuser:s3cret\n[127.0.0.152] relayuser:s3cret\n\
             [127.0.0.153]:{port} relayuser:n0t-the-password\n127.0.0.154 relayuser:s3cret\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut routes = String::new();
    let mut policies = String::new();
    for (i, d) in ["plain", "login", "wrong", "unverified"].iter().enumerate() {
        let ip = format!("127.0.0.{}", 151 + i);
        routes.push_str(&format!(
            "[outbound.domains.\"{d}.test\"]\nsmarthost = \"[{ip}]:{port}\"\n"
        ));
        policies.push_str(&if *d == "unverified" {
            format!("\"[{ip}]\" = \"encrypt\"\n")
        } else {
            format!("\"[{ip}]\" = {{ level = \"secure\", match = [\"relay.authtest\"] }}\n")
        });
    }
    s.config = s.config.replace(
        "[outbound]\n",
        &format!(
            "[outbound]\nretry_min = \"1s\"\nretry_max = \"1s\"\ndelay_warning = \"3s\"\n\
             tls_ca_file = \"{}\"\nauth_file = \"{}\"\n",
            ca_file.display(),
            auth_file.display()
        ),
    ) + &format!("\n{routes}[outbound.tls_policy]\n{policies}");
    std::fs::write(s.config_path(), &s.config).unwrap();

    // A credentials file others can read is refused before anything runs,
    // by `config check` and at start.
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = Command::new(mailgate_bin())
        .args(["config", "check"])
        .arg(s.config_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && err.contains("readable by group or others (mode 0644)"),
        "{err}"
    );
    let (ok, out) = s.cli(&["serve"]);
    assert!(!ok && out.contains("auth_file"), "{out}");
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.run();

    let plain = s.submit_to("x@plain.test");
    let login = s.submit_to("y@login.test");
    let wrong = s.submit_to("z@wrong.test");
    let unverified = s.submit_to("w@unverified.test");
    let delivered = |id: &str, rcpt: &str| {
        let l = s.wait_line(id, &format!("=> {rcpt}"));
        assert!(l.contains("CV=yes"), "{l}");
        l
    };
    assert!(delivered(&plain, "x@plain.test").contains(" A=plain:relayuser"));
    assert!(delivered(&login, "y@login.test").contains(" A=login:relayuser"));
    let exim_got = |rcpt: &str| {
        wait_for("Exim's <= line", || {
            ex.lines(" <= ")
                .into_iter()
                .find(|l| l.contains(&format!("for {rcpt}")))
        })
    };
    assert!(exim_got("x@plain.test").contains(" A=plain:relayuser"));
    assert!(exim_got("y@login.test").contains(" A=login:relayuser"));

    // A wrong password defers; the log and the delay warning carry
    // Exim's answer.
    let l = s.wait_line(&wrong, "== z@wrong.test");
    assert!(
        l.contains("after AUTH PLAIN: 535 Incorrect authentication data"),
        "{l}"
    );
    let log = s.mainlog();
    assert!(!log.contains("n0t-the-password") && !log.contains("s3cret"));
    // The unverified server never sees the password: not even a connection
    // is made for it.
    let l = s.wait_line(&unverified, "== w@unverified.test");
    assert!(
        l.contains(
            "not logging in to 127.0.0.154 as relayuser: its TLS certificate would not be verified"
        ),
        "{l}"
    );
    let warnings = wait_for("two delay warnings", || {
        let m = s.maildir("local.test", "a");
        (m.len() >= 2).then_some(m.join("\n----\n"))
    });
    assert!(
        warnings.contains("535 Incorrect authentication data"),
        "{warnings}"
    );
    assert!(warnings.contains("would not be verified"), "{warnings}");
    let exim_log = ex.mainlog();
    assert!(
        !exim_log.contains("z@wrong.test") && !exim_log.contains("w@unverified.test"),
        "{exim_log}"
    );
    assert!(
        exim_log.contains("authenticator failed") && exim_log.contains("(set_id=relayuser)"),
        "{exim_log}"
    );
    assert_eq!(exim_log.matches(" <= ").count(), 2, "{exim_log}");
    // After a refused login the connection ends with QUIT, not a drop.
    assert!(!exim_log.contains("TLS error"), "{exim_log}");
    // The metrics count the connections that were ready for mail: every
    // one under TLS with a verified certificate, none unverified.
    let (_, _, text) = mailgate_tests::http_get(metrics, "/metrics");
    let outbound: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mailgate_outbound_connections_total{"))
        .collect();
    assert!(!outbound.is_empty(), "{text}");
    for l in &outbound {
        assert!(
            l.contains("verified=\"yes\"") && !l.contains("tls=\"none\""),
            "{l}"
        );
    }
}
