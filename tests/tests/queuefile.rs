//! The queuefile transport plugin against its real reader: Exim 4.96 with
//! `spool_directory` pointed at the plugin's output lists the messages with
//! their sender and recipients (`exim -bp`) and delivers one (`exim -M`)
//! into a maildir, headers and body as mailgate received them.

use mailgate_tests::{Client, Server, plugin_wasm, require};
use std::path::Path;
use std::process::Command;

fn plugin(out: &Path, format: &str) -> String {
    format!(
        "[[plugin]]\nname = \"queuefile\"\npath = \"{}\"\ncapabilities = [\"log\", \"clock\", \"random\", \"directories\"]\ndirectories = {{ out = \"{}\" }}\n[plugin.config]\ndirectory = \"out\"\ndomains = [\"scan.test\", \".scan.test\"]\nformat = \"{format}\"\nowner = \"root 0 0\"\n",
        plugin_wasm("queuefile.wasm").display(),
        out.display()
    )
}

/// Send one message (a dot-stuffed line included); the queue id.
fn send(s: &Server, to: &[&str]) -> String {
    let mut c = Client::connect(s.port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<sender@remote.test>").starts_with("250"));
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        assert!(r.starts_with("250"), "{t}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(
        b"From: Sender <sender@remote.test>\r\nTo: a@scan.test\r\nSubject: for the scanner\r\nX-Folded: one\r\n\ttwo\r\n\r\nfirst line\r\n..a line that began with a dot\r\n\r\nlast line\r\n.\r\n",
    );
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
    c.cmd("QUIT");
    r.trim().rsplit("id=").next().unwrap().to_string()
}

/// An Exim configuration whose spool is `spool`, delivering everything
/// into the maildir `spool/maildir`.
fn exim_conf(dir: &Path, spool: &Path) -> std::path::PathBuf {
    let conf = dir.join("exim.conf");
    std::fs::write(
        &conf,
        format!(
            "primary_hostname = exim.test\nspool_directory = {s}\nlog_file_path = {s}/log/%slog\nhost_lookup =\nrfc1413_hosts =\nkeep_environment =\nnever_users =\nexim_user = root\nexim_group = root\nbegin acl\nbegin routers\nall:\n  driver = accept\n  transport = mdir\nbegin transports\nmdir:\n  driver = appendfile\n  directory = {s}/maildir\n  maildir_format\n  user = nobody\n  group = nogroup\n",
            s = spool.display()
        ),
    )
    .unwrap();
    conf
}

fn exim(conf: &Path, args: &[&str]) -> String {
    let out = Command::new(require("exim4"))
        .arg("-C")
        .arg(conf)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exim {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn exim_reads_and_delivers_what_queuefile_wrote() {
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("exim-spool");
    std::fs::create_dir_all(&spool).unwrap();
    let s = Server::start("", &plugin(&spool, "exim"));
    // Two scanner recipients and a local one (mailgate's own copy, to
    // compare with).
    let id = send(&s, &["a@scan.test", "b@mx.scan.test", "alice@local.test"]);
    // One delivery for both (Exim's log grammar: the second is "->").
    let log = s.wait_log(&format!("{id} -> b@mx.scan.test"), 1);
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{id} => a@scan.test")))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("queued as "), "{line}");
    let input = files(&spool.join("input"));
    assert_eq!(input.len(), 2, "{input:?}");
    assert!(
        input[0].ends_with("-D") && input[1].ends_with("-H"),
        "{input:?}"
    );
    let exim_id = input[0].trim_end_matches("-D").to_string();
    assert!(line.contains(&exim_id), "{line}");
    assert!(
        files(&spool.join(".queuefile-tmp")).is_empty(),
        "temporary files left"
    );

    let conf = exim_conf(work.path(), &spool);
    let listed = exim(&conf, &["-bp"]);
    assert!(
        listed.contains(&format!("{exim_id} <sender@remote.test>")),
        "{listed}"
    );
    assert!(
        listed.contains("a@scan.test") && listed.contains("b@mx.scan.test"),
        "{listed}"
    );
    assert!(!listed.contains("alice@local.test"), "{listed}");

    // Exim delivers as nobody (root is on its fixed never_users list).
    {
        use std::os::unix::fs::PermissionsExt;
        let m = spool.join("maildir");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    exim(&conf, &["-M", &exim_id]);
    let new = spool.join("maildir/new");
    let got = files(&new);
    let elog = std::fs::read_to_string(spool.join("log/mainlog")).unwrap_or_default();
    // Exim writes one file per recipient.
    assert_eq!(got.len(), 2, "{got:?}\n{elog}");
    let delivered = std::fs::read_to_string(new.join(&got[0])).unwrap();
    assert_eq!(
        delivered,
        std::fs::read_to_string(new.join(&got[1])).unwrap()
    );
    // mailgate's own maildir copy, less the two lines its maildir delivery
    // puts first (Return-Path, Delivered-To), is what it received.
    s.wait_log(&format!("{id} => alice@local.test"), 1);
    let mine = s.maildir("local.test", "alice");
    assert_eq!(mine.len(), 1);
    let received: String = mine[0].splitn(3, '\n').nth(2).unwrap().to_string();
    assert!(received.starts_with("Received: "), "{received}");
    assert_eq!(delivered, received);
    assert!(
        delivered.contains("\n.a line that began with a dot\n"),
        "{delivered}"
    );
    assert!(delivered.contains("X-Folded: one\n\ttwo\n"), "{delivered}");
    assert!(
        elog.contains(&format!("{exim_id} => a <a@scan.test> R=all T=mdir")),
        "{elog}"
    );
    assert!(
        elog.contains(&format!("{exim_id} => b <b@mx.scan.test> R=all T=mdir")),
        "{elog}"
    );
    assert!(elog.contains(&format!("{exim_id} Completed")), "{elog}");
}

#[test]
fn mailgate_format_and_an_unwritable_directory() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let s = Server::start("", &plugin(&out, "mailgate"));
    let id = send(&s, &["a@scan.test"]);
    s.wait_log(&format!("{id} => a@scan.test"), 1);
    assert_eq!(
        files(&out),
        [
            ".queuefile-tmp".to_string(),
            format!("{id}.eml"),
            format!("{id}.json")
        ]
    );
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(format!("{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(env["sender"], "sender@remote.test");
    assert_eq!(env["recipients"][0], "a@scan.test");
    let eml = std::fs::read(out.join(format!("{id}.eml"))).unwrap();
    // As received: CRLF line ends, the dot-stuffing undone.
    let needle = b"\r\n.a line that began with a dot\r\n";
    assert!(eml.windows(needle.len()).any(|w| w == needle));
    assert!(eml.starts_with(b"Received: "));

    // A directory that cannot be written defers: the message stays queued.
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, b"now a file").unwrap();
    let id = send(&s, &["b@scan.test"]);
    s.wait_log(&format!("{id} == b@scan.test"), 1);
    let (ok, q) = s.cli(&["queue", "list"]);
    assert!(ok && q.contains(&id), "{q}");
}
