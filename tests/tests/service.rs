//! Running mailgate as a service: what it writes is not readable by other
//! local users (spool 0700/0600, maildirs 0700/0600, the log 0640), and
//! SIGUSR1 reopens the main log after logrotate renamed it, without losing
//! a line or stopping the daemon; started as root it binds port 25 and
//! runs as `server.user`.

use mailgate_tests::Server;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `dir` with its mode.
fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let is_dir = p.is_dir();
        out.push((p.clone(), mode(&p), is_dir));
        if is_dir {
            walk(&p, out);
        }
    }
}

#[test]
fn nothing_written_is_readable_by_other_users() {
    let mut s = Server::configure("", "", "");
    s.run();
    let id = s.submit_to("alice@local.test");
    s.wait_line(&id, "=> alice@local.test");
    let data = s.data();
    assert_eq!(mode(&data.join("spool")), 0o700);
    let mut spool = Vec::new();
    walk(&data.join("spool"), &mut spool);
    assert!(!spool.is_empty());
    for (p, m, is_dir) in &spool {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{}", p.display());
    }
    let mut maildir = Vec::new();
    walk(&data.join("maildir"), &mut maildir);
    let files: Vec<_> = maildir.iter().filter(|(_, _, d)| !d).collect();
    assert_eq!(files.len(), 1, "{maildir:?}");
    for (p, m, is_dir) in &maildir {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{}", p.display());
    }
    assert_eq!(mode(&data.join("log/mainlog")), 0o640);
    // Nothing else in the data directory is open to others either.
    let mut all = Vec::new();
    walk(&data, &mut all);
    for (p, m, _) in &all {
        if p.file_name().is_some_and(|n| n == "control.sock") {
            continue;
        }
        assert_eq!(m & 0o007, 0, "{} is {m:o}", p.display());
    }
    assert!(s.sigterm(std::time::Duration::from_secs(20)));
}

#[test]
fn sigusr1_reopens_the_main_log_for_logrotate() {
    let mut s = Server::configure("", "", "");
    s.run();
    let first = s.submit_to("alice@local.test");
    s.wait_line(&first, "=> alice@local.test");
    let log = s.data().join("log/mainlog");
    let rotated = s.data().join("log/mainlog.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Written after the rename and before the signal: still the old file.
    let between = s.submit_to("alice@local.test");
    let old_has = |pat: &str| {
        std::fs::read_to_string(&rotated)
            .unwrap()
            .lines()
            .any(|l| l.contains(pat))
    };
    let start = std::time::Instant::now();
    while !old_has(&format!("{between} => alice@local.test")) {
        assert!(start.elapsed().as_secs() < 30, "no delivery of {between}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.signal(libc::SIGUSR1);
    s.wait_log("main log reopened (SIGUSR1)", 1);
    assert!(s.running(), "SIGUSR1 stopped the daemon");
    let after = s.submit_to("alice@local.test");
    s.wait_line(&after, "=> alice@local.test");
    assert_eq!(mode(&log), 0o640);
    let new = s.mainlog();
    assert!(!new.contains(&first) && !new.contains(&between), "{new}");
    assert!(old_has(&format!("{first} <= ")) && old_has(&format!("{between} <= ")));
    assert!(!old_has(&after));
}

/// The uid the process `pid` runs as (effective).
fn uid_of(pid: u32) -> u32 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn started_as_root_it_binds_port_25_then_runs_as_its_user() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test starts the gateway as root (as CI does)"
    );
    // Debian's unprivileged `nobody`, owning a fresh data directory.
    let nobody = mailgate_tests::user_ids("nobody");
    let mut s = Server::configure("user = \"nobody\"\n", "", "");
    // Port 25 on an address of its own, so nothing else on 127.0.0.1:25
    // is in the way.
    s.config = s.config.replacen(
        &format!("address = \"127.0.0.1:{}\"", s.port),
        "address = \"127.0.0.77:25\"",
        1,
    );
    std::fs::write(s.config_path(), &s.config).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{}:{}", nobody.0, nobody.1)])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    s.run();
    s.wait_log("mailgate daemon started", 1);
    assert_eq!(uid_of(s.pid()), nobody.0);
    assert!(s.mainlog().contains(", user=nobody, "), "{}", s.mainlog());
    let (ok, t) = mailgate_tests::swaks(&[
        "--server",
        "127.0.0.77:25",
        "--from",
        "a@local.test",
        "--to",
        "alice@local.test",
    ]);
    assert!(ok, "{t}");
    let id = t
        .lines()
        .find_map(|l| l.split("id=").nth(1))
        .expect("queue id")
        .trim()
        .to_string();
    s.wait_line(&id, "=> alice@local.test");
    let mut maildir = Vec::new();
    walk(&s.data().join("maildir"), &mut maildir);
    for (p, _, _) in &maildir {
        assert_eq!(
            std::fs::metadata(p).unwrap().uid(),
            nobody.0,
            "{}",
            p.display()
        );
    }
    // Everything it wrote belongs to its user, not to root.
    let spool = s.data().join("spool");
    assert_eq!(std::fs::metadata(&spool).unwrap().uid(), nobody.0);
}

#[test]
fn a_user_it_cannot_become_is_a_clear_error() {
    let s = Server::configure("user = \"no-such-user-here\"\n", "", "");
    let (ok, out) = s.cli(&["serve"]);
    assert!(
        !ok && out.contains("server.user no-such-user-here: no such user"),
        "{out}"
    );
}

#[test]
fn installed_under_a_prefix_it_runs_with_a_bundled_plugin_and_tells_systemd() {
    use std::os::unix::net::UnixDatagram;
    let root = tempfile::tempdir().unwrap();
    let prefix = root.path().join("usr");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let install = || {
        // The debug build the tests use and the plugins scripts/test.sh
        // built: no second build here.
        let out = std::process::Command::new(repo.join("scripts/install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .args(["--profile", "debug", "--no-build"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    install();
    let etc = prefix.join("etc/mailgate/mailgate.toml");
    let bin = prefix.join("bin/mailgate");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&etc), 0o640);
    for p in [
        "srs",
        "reject_list",
        "arc",
        "dmarc",
        "queuefile",
        "bmi",
        "dcc",
    ] {
        let f = prefix.join(format!("lib/mailgate/plugins/{p}.wasm"));
        assert!(f.is_file(), "{}", f.display());
    }
    let unit = std::fs::read_to_string(prefix.join("lib/systemd/system/mailgate.service")).unwrap();
    for want in [
        format!(
            "ExecStart={}/bin/mailgate serve --config {}\n",
            prefix.display(),
            etc.display()
        ),
        "Type=notify\n".into(),
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n".into(),
        "NoNewPrivileges=yes\n".into(),
        "ProtectSystem=strict\n".into(),
        "User=mailgate\n".into(),
    ] {
        assert!(unit.contains(&want), "{want:?} not in\n{unit}");
    }
    assert!(!unit.contains('@'), "unfilled placeholder in\n{unit}");
    let config = std::fs::read_to_string(&etc).unwrap();
    assert!(config.contains("data_dir = \"/var/lib/mailgate\""));
    assert!(config.contains("mainlog = \"/var/log/mailgate/mainlog\""));
    let srs_path = format!("{}/lib/mailgate/plugins/srs.wasm", prefix.display());
    assert!(
        config.contains(&format!("# path = \"{srs_path}\"")),
        "{config}"
    );
    let (ok, out) = {
        let o = std::process::Command::new(&bin)
            .args(["config", "check"])
            .arg(&etc)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert!(ok, "{out}");

    // Turn on the SRS entry as written, on private ports and directories,
    // and start the installed binary the way systemd's Type=notify does.
    let mut lines: Vec<String> = Vec::new();
    let mut in_srs = false;
    for l in config.lines() {
        if l == "# [[plugin]]" {
            in_srs = false;
        }
        if l == "# name = \"srs\"" {
            in_srs = true;
            lines.pop();
            lines.push("[[plugin]]".into());
        }
        if in_srs && l == "#" {
            in_srs = false;
        }
        match l.strip_prefix("# ") {
            Some(rest) if in_srs => lines.push(rest.split("  #").next().unwrap().to_string()),
            _ => lines.push(l.to_string()),
        }
    }
    let ports = mailgate_tests::free_ports(2);
    let data = root.path().join("data");
    let text = lines
        .join("\n")
        .replace(
            "data_dir = \"/var/lib/mailgate\"",
            &format!("data_dir = \"{}\"", data.display()),
        )
        .replace(
            "mainlog = \"/var/log/mailgate/mainlog\"",
            "mainlog = \"{data_dir}/log/mainlog\"",
        )
        .replace("127.0.0.1:2525", &format!("127.0.0.1:{}", ports[0]))
        .replace("127.0.0.1:4650", &format!("127.0.0.1:{}", ports[1]))
        .replace("fwd.example.org", "localhost");
    let local = root.path().join("local.toml");
    std::fs::write(&local, &text).unwrap();
    let sock = root.path().join("notify");
    let notify = UnixDatagram::bind(&sock).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&local)
        .env("NOTIFY_SOCKET", &sock)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 128];
    let n = notify.recv(&mut buf).expect("READY=1 from the gateway");
    assert_eq!(&buf[..n], b"READY=1");
    let log = std::fs::read_to_string(data.join("log/mainlog")).unwrap();
    assert!(log.contains("plugin srs "), "{log}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = notify.recv(&mut buf).expect("STOPPING=1 from the gateway");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());

    // Installing again keeps the admin's config and puts the new default
    // beside it.
    std::fs::write(&etc, "# mine\n").unwrap();
    install();
    assert_eq!(std::fs::read_to_string(&etc).unwrap(), "# mine\n");
    assert!(etc.with_extension("toml.new").is_file());
}
