//! The DCC plugin against the real DCC 2.3.167 daemons: a private dccd, a
//! greylist dccd and dccifd on loopback and a unix socket, built from the
//! unchanged source by `tests/peers/dcc.sh` (never the public DCC servers).
//! Every dccifd answer takes about 0.4 s (dccd's delay without flooding
//! peers).

use mailgate_tests::{Client, Server, plugin_wasm};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The peer script and source: `MAILGATE_DCC_PEERS`, else the copy in
/// `tests/peers`.
fn peers() -> PathBuf {
    std::env::var_os("MAILGATE_DCC_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("peers"))
}

fn dcc_sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(peers().join("dcc.sh"))
        .args(args)
        .output()
        .expect("run dcc.sh");
    assert!(
        out.status.success(),
        "dcc.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where DCC is installed (built once per run, about 20 s).
fn prefix() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/dcc-prefix")
            .to_path_buf();
        let src = peers().join("dcc-2.3.167");
        dcc_sh(&["build", src.to_str().unwrap(), p.to_str().unwrap()]);
        p
    })
}

/// A running private peer; stopped on drop.
struct Peer {
    _dir: tempfile::TempDir,
    home: PathBuf,
    /// The unix-socket service address (`unix:PATH`).
    sock: String,
    /// The TCP one (`tcp:127.0.0.1:PORT`).
    tcp: String,
}

impl Peer {
    fn start() -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("peer");
        // A 2 s greylist embargo; dccifd on a unix socket and on TCP.
        dcc_sh(&[
            "start",
            "-d",
            home.to_str().unwrap(),
            "-P",
            prefix().to_str().unwrap(),
            "-g",
            "2,2h,2d",
        ]);
        let env = std::fs::read_to_string(home.join("peer.env")).unwrap();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {env}"))
                .trim_matches(['"', '\''])
                .to_string()
        };
        Peer {
            _dir: dir,
            sock: format!("unix:{}", get("DCC_SOCK=")),
            tcp: format!("tcp:127.0.0.1:{}", get("DCC_TCP_PORT=")),
            home,
        }
    }

    fn ctl(&self, daemon: &str, what: &str) {
        dcc_sh(&["ctl", "-d", self.home.to_str().unwrap(), daemon, what]);
    }

    /// Make `body` known as bulk ("many") to dccd.
    fn report_many(&self, message: &str) {
        let out = Command::new(prefix().join("bin/dccproc"))
            .args([
                "-h",
                self.home.to_str().unwrap(),
                "-t",
                "many",
                "-c",
                "CMN,10",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(message.as_bytes())?;
                c.wait()
            })
            .unwrap();
        // dccproc exits 67 (EX_NOUSER) for a message it would reject.
        assert!(matches!(out.code(), Some(0 | 67)), "dccproc: {out}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(peers().join("dcc.sh"))
            .args(["stop", "-d", self.home.to_str().unwrap()])
            .output();
    }
}

fn plugin(service: &str, options: &str) -> String {
    format!(
        "[[plugin]]\nname = \"dcc\"\npath = \"{}\"\ntimeout_ms = 10000\non_failure = \"tempfail\"\ncapabilities = [\"log\", \"services\"]\nservices = {{ dccifd = \"{service}\" }}\n[plugin.config]\noptions = [{options}]\nuser_domains = [\"peer.example\"]\n",
        plugin_wasm("dcc.wasm").display()
    )
}

const HAM: &str = "Minutes of the garden club meeting: tulips, compost and the spring fair.\r\nThe next meeting is on Thursday at the library.\r\n";
const SPAM: &str = "BUY CHEAP WATCHES NOW at http://spam.example/ limited offer, act today!\r\n";

/// One message from `ip` (a loopback address) with `body`; the reply to
/// the end of data (or to the first refused command).
fn send(s: &Server, ip: &str, from: &str, to: &[&str], body: &str) -> String {
    let mut c = Client::connect_from(ip, s.port);
    c.cmd("EHLO mail.sender.example");
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(r.starts_with("250"), "{t}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        format!("From: <{from}>\r\nTo: <{}>\r\nSubject: dcc test\r\nX-DCC-Forged-Metrics: forged\r\n\r\n{body}.\r\n", to[0])
            .as_bytes(),
    );
    let r = c.reply();
    c.cmd("QUIT");
    r
}

#[test]
fn dcc_accepts_rejects_greylists_per_message_and_recipient() {
    let peer = Peer::start();
    let domains = "local_domains = [\"local.test\", \"peer.example\"]";
    let s = Server::start(domains, &plugin(&peer.sock, "\"grey-off\""));

    // A normal message: A, and the X-DCC header (the forged one removed).
    let r = send(
        &s,
        "127.0.0.1",
        "sender@sender.example",
        &["alice@peer.example"],
        HAM,
    );
    assert!(r.starts_with("250"), "{r}");
    s.wait_log(" => alice@peer.example", 1);
    let m = s.maildir("peer.example", "alice");
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("\nX-DCC-PEER-Metrics: "), "{}", m[0]);
    assert!(!m[0].contains("X-DCC-Forged-Metrics"), "{}", m[0]);

    // A body reported as bulk is rejected.
    peer.report_many(&format!(
        "From: <x@spam.example>\r\nSubject: w\r\n\r\n{SPAM}"
    ));
    let r = send(
        &s,
        "127.0.0.1",
        "spammer@spam.example",
        &["bob@peer.example"],
        SPAM,
    );
    assert!(r.starts_with("550 5.7.1 rejected by DCC"), "{r}");

    // Two recipients get their own answers: nofilter opted out of DCC
    // (its whiteclnt), frank did not. frank is dropped, nofilter gets it.
    let r = send(
        &s,
        "127.0.0.1",
        "spammer@spam.example",
        &["frank@peer.example", "nofilter@peer.example"],
        SPAM,
    );
    assert!(r.starts_with("250"), "{r}");
    s.wait_log(" => nofilter@peer.example", 1);
    assert_eq!(s.maildir("peer.example", "nofilter").len(), 1);
    assert!(s.maildir("peer.example", "frank").is_empty());
    assert!(
        s.stderr()
            .contains("frank@peer.example removed from the delivery (R)"),
        "{}",
        s.stderr()
    );

    // Greylisting (another gateway without grey-off, reaching dccifd over
    // TCP): a new triple waits out the embargo, then gets through.
    let g = Server::start(domains, &plugin(&peer.tcp, ""));
    let r = send(
        &g,
        "127.0.0.2",
        "billing@sender.example",
        &["carol@peer.example"],
        HAM,
    );
    assert!(r.starts_with("451 4.7.1 greylisted by DCC"), "{r}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = send(
        &g,
        "127.0.0.2",
        "billing@sender.example",
        &["carol@peer.example"],
        HAM,
    );
    assert!(r.starts_with("250"), "{r}");

    // The DCC server down: dccifd still says A, with server-ID 0; the
    // plugin fails and its policy (tempfail) defers: nothing is accepted
    // unchecked, nothing is lost.
    peer.ctl("dccd", "stop");
    let r = send(
        &s,
        "127.0.0.1",
        "sender@sender.example",
        &["alice@peer.example"],
        HAM,
    );
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(
        s.stderr().contains("the DCC server did not answer"),
        "{}",
        s.stderr()
    );
    // dccifd itself stopped: the same policy.
    peer.ctl("dccifd", "stop");
    let r = send(
        &s,
        "127.0.0.1",
        "sender@sender.example",
        &["alice@peer.example"],
        HAM,
    );
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert_eq!(
        s.maildir("peer.example", "alice").len(),
        1,
        "only the first one"
    );
}
