//! The BMI-style verdict plugin against a real SpamAssassin spamd (Debian's
//! package `spamd`) on a unix socket, with network tests off (`-L`, and a
//! site config saying `dns_available no`) and two users whose own
//! `required_score` differs: one scan per distinct profile, verdicts per
//! recipient (drop, alternate mailbox, deliver), aliases inheriting them,
//! a verdict header in each recipient's own copy, local and remote, and
//! spamd down, garbled or hanging.

use mailgate_tests::{Client, Server, free_port, plugin_wasm, require};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private spamd; stopped on drop.
struct Spamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Spamd {
    fn start() -> Spamd {
        let spamd = require("spamd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Each user's own threshold, in the virtual config dir spamd reads
        // as that user.
        for (user, required) in [("strict", 6), ("lenient", 12)] {
            std::fs::create_dir_all(d.join("users").join(user)).unwrap();
            std::fs::write(
                d.join("users").join(user).join("user_prefs"),
                format!("required_score {required}\n"),
            )
            .unwrap();
        }
        // A site config of our own: the .pre files that load the plugins,
        // no DNS, no Bayes or reputation (scores do not drift).
        let site = d.join("site");
        std::fs::create_dir_all(&site).unwrap();
        for e in std::fs::read_dir("/etc/spamassassin").unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pre") {
                std::fs::copy(&p, site.join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::write(
            site.join("local.cf"),
            "dns_available no\nuse_bayes 0\nbayes_auto_learn 0\n",
        )
        .unwrap();
        // spamd's children run as nobody and read the user dirs.
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(d)
            .status()
            .unwrap();
        let log = std::fs::File::create(d.join("spamd.log")).unwrap();
        let child = Command::new(spamd)
            .arg("-L")
            .arg(format!("--socketpath={}", d.join("spamd.sock").display()))
            .arg("--socketmode=0666")
            .arg(format!("--virtual-config-dir={}/users/%u", d.display()))
            .args(["-x", "-u", "nobody", "-s", "stderr", "--max-children=2"])
            .arg(format!("--siteconfigpath={}", site.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Spamd {
            dir,
            child: Some(child),
        };
        // Up once it answers PING.
        let start = Instant::now();
        loop {
            if let Ok(mut c) = UnixStream::connect(s.sock()) {
                let _ = c.write_all(b"PING SPAMC/1.5\r\n\r\n");
                let mut r = String::new();
                let _ = c.read_to_string(&mut r);
                if r.contains("PONG") {
                    return s;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "spamd did not start: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("spamd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("spamd.log")).unwrap_or_default()
    }

    /// How many scans spamd made as `user`.
    fn scans(&self, user: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("spamd: result:") && l.contains(&format!(",user={user},")))
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM, so the parent takes its children with it.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn plugin(service: &str, timeout_ms: u32, on_failure: &str) -> String {
    format!(
        r#"[[plugin]]
name = "bmi"
path = "{}"
timeout_ms = {timeout_ms}
on_failure = "{on_failure}"
capabilities = ["log", "services", "lookup"]
services = {{ spamd = "{service}" }}
tables = ["bmi_optin"]
[plugin.config]
optin_table = "bmi_optin"
[plugin.config.profiles.strict]
spam = "drop"
[plugin.config.profiles.lenient]
spam = "alternate"
alternate = "{{local}}+spam@{{domain}}"
[plugin.config.profiles.held]
spam = "alternate"
alternate = "{{local}}@quarantine.test"

[aliases]
"team@corp.test" = ["carol@corp.test"]
"#,
        plugin_wasm("bmi.wasm").display()
    )
}

/// A gateway for corp.test with the opt-in table built; `routes` sends
/// remote.test to that port.
fn gateway(service: &str, timeout_ms: u32, on_failure: &str, routes: Option<u16>) -> Server {
    let outbound = match routes {
        Some(_) => "queue_only = false\nroutes_table = \"routes\"\n",
        None => "queue_only = false\n",
    };
    let mut s = Server::configure(
        "local_domains = [\"local.test\", \"corp.test\"]",
        outbound,
        &plugin(service, timeout_ms, on_failure),
    );
    // By local part at any domain; team (an alias) is lenient, whoever
    // it expands to; everyone else is opted out.
    s.build_table(
        "bmi_optin",
        "strict@ strict\nlenient@ lenient\nheld@ held\nteam@corp.test lenient\n@corp.test off\n",
    );
    if let Some(port) = routes {
        s.build_table(
            "routes",
            &format!("remote.test 127.0.0.1:{port}\nquarantine.test 127.0.0.1:{port}\n"),
        );
    }
    s.run();
    s
}

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
const HAM: &str = "Minutes of the garden club meeting: tulips, compost and the spring fair.\r\nThe next meeting is on Thursday at the library.\r\n";

/// One message with a forged verdict field; the reply to its end of data.
fn send(port: u16, to: &[&str], subject: &str, body: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO mail.sender.example");
    assert!(c.cmd("MAIL FROM:<news@sender.example>").starts_with("250"));
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(r.starts_with("250"), "{t}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!(
            "From: <news@sender.example>\r\nTo: <{}>\r\nSubject: {subject}\r\nDate: Wed, 2 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@sender.example>\r\nX-Spam-Verdict: deliver; forged\r\n\r\n{body}.\r\n",
            to[0]
        )
        .as_bytes(),
    );
    let r = c.reply();
    c.cmd("QUIT");
    r
}

/// The verdict fields of a delivered copy.
fn verdicts(m: &str) -> Vec<&str> {
    m.lines()
        .filter_map(|l| l.strip_prefix("X-Spam-Verdict: "))
        .collect()
}

#[test]
fn verdicts_per_recipient_from_one_scan_per_profile() {
    let mut spamd = Spamd::start();
    let sink = Server::start("local_domains = [\"remote.test\", \"quarantine.test\"]", "");
    let sock = format!("unix:{}", spamd.sock().display());
    let s = gateway(&sock, 20000, "tempfail", Some(sink.port));

    // GTUBE to a strict and a lenient user, an alias of a lenient one, a
    // user whose alternate location is another host, and an opted-out
    // user, in one transaction: one scan per profile.
    let r = send(
        s.port,
        &[
            "strict@corp.test",
            "lenient@corp.test",
            "team@corp.test",
            "held@corp.test",
            "other@corp.test",
        ],
        "gtube",
        GTUBE,
    );
    assert!(r.starts_with("250"), "{r}");
    s.wait_log(" => strict@corp.test R=plugin T=bmi", 1);
    s.wait_log(" => lenient+spam@corp.test", 1);
    s.wait_log(" => carol+spam@corp.test", 1);
    s.wait_log(" => other@corp.test", 1);
    assert_eq!(spamd.scans("strict"), 1, "{}", spamd.log());
    assert_eq!(spamd.scans("lenient"), 1, "{}", spamd.log());
    assert_eq!(spamd.scans("held"), 1, "{}", spamd.log());
    // Another host's mailbox for held (spamd's default threshold, 5).
    sink.wait_log(" => held@quarantine.test", 1);
    let q = sink.maildir("quarantine.test", "held");
    assert_eq!(q.len(), 1);
    assert!(
        verdicts(&q[0])[0].starts_with("alternate; profile=held;")
            && verdicts(&q[0])[0].contains("required=5.0"),
        "{}",
        q[0]
    );
    assert!(s.maildir("corp.test", "held").is_empty());
    // Strict: dropped.
    assert!(s.maildir("corp.test", "strict").is_empty());
    // Lenient: the alternate mailbox, with the lenient verdict (its own
    // threshold, 12).
    assert!(s.maildir("corp.test", "lenient").is_empty());
    let alt = s.maildir("corp.test", "lenient+spam");
    assert_eq!(alt.len(), 1);
    let v = verdicts(&alt[0]);
    assert_eq!(v.len(), 1, "{}", alt[0]);
    assert!(
        v[0].starts_with("alternate; profile=lenient; score=10")
            && v[0].contains("required=12.0; rules=GTUBE"),
        "{}",
        v[0]
    );
    // The alias's target inherits team's verdict.
    assert!(s.maildir("corp.test", "carol").is_empty());
    let carol = s.maildir("corp.test", "carol+spam");
    assert_eq!(carol.len(), 1);
    assert!(verdicts(&carol[0])[0].starts_with("alternate; profile=lenient;"));
    // Opted out: delivered, and the forged field is gone.
    let other = s.maildir("corp.test", "other");
    assert_eq!(other.len(), 1);
    assert!(verdicts(&other[0]).is_empty(), "{}", other[0]);
    assert!(
        s.stderr()
            .contains("<strict@corp.test> not delivered (drop; profile=strict"),
        "{}",
        s.stderr()
    );

    // Ham to the same two profiles, locally and at a remote domain: each
    // recipient's copy carries its own verdict, so the remote copies go in
    // two transactions.
    let r = send(
        s.port,
        &[
            "strict@corp.test",
            "lenient@corp.test",
            "strict@remote.test",
            "lenient@remote.test",
        ],
        "ham",
        HAM,
    );
    assert!(r.starts_with("250"), "{r}");
    sink.wait_log(" => strict@remote.test", 1);
    sink.wait_log(" => lenient@remote.test", 1);
    s.wait_log(" => lenient@corp.test", 1);
    for (who, required) in [("strict", "6.0"), ("lenient", "12.0")] {
        for m in [
            s.maildir("corp.test", who),
            sink.maildir("remote.test", who),
        ] {
            assert_eq!(m.len(), 1, "{who}");
            let v = verdicts(&m[0]);
            assert_eq!(v.len(), 1, "{}", m[0]);
            assert!(
                v[0].starts_with(&format!("deliver; profile={who}; score="))
                    && v[0].contains(&format!("required={required}")),
                "{who}: {}",
                v[0]
            );
            assert!(m[0].contains("\nSubject: ham\n"));
        }
    }
    let remote_tx = s
        .mainlog()
        .lines()
        .filter(|l| l.contains(" => ") && l.contains("@remote.test"))
        .count();
    assert_eq!(remote_tx, 2, "{}", s.mainlog());

    // spamd stopped: deliver normally (fail open), say so in the copy and
    // the log; nothing is lost.
    spamd.stop();
    let r = send(s.port, &["strict@corp.test"], "down", GTUBE);
    assert!(r.starts_with("250"), "{r}");
    s.wait_log(" => strict@corp.test R=local_user", 2);
    let m: Vec<String> = s
        .maildir("corp.test", "strict")
        .into_iter()
        .filter(|m| m.contains("Subject: down"))
        .collect();
    assert_eq!(m.len(), 1);
    assert!(
        verdicts(&m[0])[0]
            .starts_with("deliver; profile=strict; unscanned (spamd: connect to spamd"),
        "{}",
        m[0]
    );
    assert!(
        s.stderr()
            .contains("spamd for profile strict: connect to spamd"),
        "{}",
        s.stderr()
    );
}

/// A fake spamd on TCP: the first connection gets garbage, the others are
/// read and never answered.
fn fake_spamd() -> u16 {
    let port = free_port();
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        let mut held = Vec::new();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            n += 1;
            if n == 1 {
                // The whole request (the plugin closes its half), then an
                // answer from the wrong protocol.
                let mut req = Vec::new();
                let _ = c.read_to_end(&mut req);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            } else {
                held.push(c);
            }
        }
    });
    port
}

#[test]
fn garbled_and_hanging_spamd() {
    let port = fake_spamd();
    let s = gateway(&format!("tcp:127.0.0.1:{port}"), 3000, "tempfail", None);
    // Garbage: deliver normally, unscanned.
    let r = send(s.port, &["strict@corp.test"], "garbled", GTUBE);
    assert!(r.starts_with("250"), "{r}");
    s.wait_log(" => strict@corp.test", 1);
    let m = s.maildir("corp.test", "strict");
    assert!(
        verdicts(&m[0])[0].contains("unscanned (spamd: spamd's reply is garbled"),
        "{}",
        m[0]
    );
    // A spamd that never answers runs into the plugin's budget, and its
    // failure policy (tempfail here) applies: deferred, nothing accepted.
    let r = send(s.port, &["strict@corp.test"], "hang", GTUBE);
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert_eq!(s.maildir("corp.test", "strict").len(), 1);
    let log = s.mainlog();
    assert!(
        log.contains("plugin bmi failed at DATA") && log.contains("policy tempfail"),
        "{log}"
    );
}
