//! A private redis-server (Debian's) on a loopback port, optionally TLS
//! only, no persistence: the shared store of a test pool of gateways. The
//! gateways log in as the ACL user `mailgate`, allowed only the pool's
//! keys and the commands docs/scaling.md lists; the default user (for
//! redis-cli) has a password of its own.

use crate::{free_port, require};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The commands the gateways' ACL user may run (docs/scaling.md).
const ACL_COMMANDS: &[&str] = &[
    "+get",
    "+set",
    "+del",
    "+eval",
    "+evalsha",
    "+script|load",
    "+incr",
    "+expire",
];

/// A running (or stopped) redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Config, password file, certificates.
    pub dir: tempfile::TempDir,
    /// TLS only (`rediss://`).
    pub tls: bool,
    password: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Start one; with `tls`, a CA-issued certificate for 127.0.0.1 and no
    /// plain port.
    pub fn start(tls: bool) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let password = format!("pw-{}", std::process::id());
        let pw = dir.path().join("password");
        std::fs::write(&pw, format!("gw-{password}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        if tls {
            let ca = crate::dnssec::TestCa::new("redis test CA");
            let c = ca.issue(&["127.0.0.1", "localhost"]);
            std::fs::write(dir.path().join("ca.pem"), &ca.cert.chain_pem).unwrap();
            std::fs::write(dir.path().join("cert.pem"), &c.chain_pem).unwrap();
            std::fs::write(dir.path().join("key.pem"), &c.key_pem).unwrap();
        }
        let mut r = RedisServer {
            port: free_port(),
            dir,
            tls,
            password,
            child: None,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let port = self.port.to_string();
        let mut cmd = Command::new(require("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", &self.password])
            // The gateways' user, as docs/scaling.md advises.
            .args(["--user", "mailgate", "on"])
            .arg(format!(">gw-{}", self.password))
            .args(["~pool:*", "resetchannels"])
            .args(ACL_COMMANDS)
            .arg("--dir")
            .arg(d)
            .args(["--logfile", ""]);
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(d.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(d.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &port]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("redis.log"))
            .unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server exited ({st}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What redis-server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The URL a gateway uses (no password in it).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// A `[store]` section for a gateway of the pool: this server, its
    /// password file, its CA under TLS, and `extra` keys.
    pub fn store_section(&self, extra: &str) -> String {
        let ca = if self.tls {
            format!("ca_file = \"{}\"\n", self.ca_file().display())
        } else {
            String::new()
        };
        format!(
            "[store]\nredis = \"{}\"\nusername = \"mailgate\"\npassword_file = \"{}\"\n{ca}prefix = \"pool:\"\n{extra}\n",
            self.url(),
            self.dir.path().join("password").display()
        )
    }

    /// The CA certificate of a TLS server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Run redis-cli against it; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(require("redis-cli"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .env("REDISCLI_AUTH", &self.password);
        if self.tls {
            cmd.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stop it (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
