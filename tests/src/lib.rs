//! Helpers for the integration tests: start the real `mailgate` binary on
//! loopback with a private configuration, talk to it with raw sockets (plain
//! or TLS), run real peers (swaks, Exim) against it, and read its logs.

pub mod dkimpy;
pub mod dnssec;
pub mod exim_client;
pub mod redis;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `mailgate` binary built by this workspace.
pub fn mailgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/mailgate
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("mailgate");
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The ports handed to listeners in tests: below Linux's ephemeral range
/// (32768-60999), so no outgoing connection of a parallel test (an Exim
/// client, a load loop, mailgate's own deliveries) can take one as its
/// source port between the choice and the server's bind.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

/// A TCP (and UDP) port on 127.0.0.1 that no other test of any process
/// running now has been given, and that nothing listens on.
///
/// Ports come from [`PORT_RANGE`], outside the ephemeral range. Each
/// handed-out port is claimed with an exclusive `flock` on a file under
/// the temporary directory, held until this process exits, so parallel
/// tests in this process and concurrently running test binaries never get
/// the same one; a port some unrelated program listens on is skipped.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    // Each process starts at its own place in the range, so claims rarely
    // contend.
    let base = std::process::id().wrapping_mul(2_654_435_761) % span;
    let locks = std::env::temp_dir().join("mailgate-test-ports");
    std::fs::create_dir_all(&locks).expect("port lock directory");
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = PORT_RANGE.start + ((base + n) % span) as u16;
        let Ok(file) = std::fs::File::create(locks.join(port.to_string())) else {
            continue;
        };
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            HELD.lock().unwrap().push(file);
            return port;
        }
    }
    panic!("no free port left in {PORT_RANGE:?}")
}

/// `n` distinct ports, each from [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// Our Authentication-Results header (authserv-id `mx.local.test`) of a
/// maildir message (LF line ends), unfolded.
pub fn auth_results(m: &str) -> String {
    auth_results_of(m, "mx.local.test")
}

/// The Authentication-Results header with authserv-id `id` of a message
/// (LF line ends), unfolded.
pub fn auth_results_of(m: &str, id: &str) -> String {
    let at = m
        .find(&format!("\nAuthentication-Results: {id}"))
        .map(|i| i + 1)
        .or_else(|| {
            m.starts_with(&format!("Authentication-Results: {id}"))
                .then_some(0)
        })
        .unwrap_or_else(|| panic!("no Authentication-Results of {id} in {m}"));
    let rest = &m[at..];
    let end = rest
        .match_indices('\n')
        .find(|(i, _)| !rest[i + 1..].starts_with(['\t', ' ']))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].replace("\n\t", " ")
}

/// Make a self-signed P-256 certificate and key with openssl.
pub fn self_signed_cert(cert: &Path, key: &Path, cn: &str) {
    let st = Command::new(require("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// A program a test needs; fails with a clear message when it is missing.
pub fn require(program: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is not installed; .ci/run installs the test peers (apt-get install swaks exim4-daemon-heavy)"
    )
}

/// A running mailgate with its own data directory.
pub struct Server {
    /// Temporary directory holding config and data.
    pub dir: tempfile::TempDir,
    /// The STARTTLS listener port.
    pub port: u16,
    /// The implicit-TLS listener port.
    pub tls_port: u16,
    child: Option<Child>,
    /// The configuration text.
    pub config: String,
}

impl Server {
    /// Start with the given extra config sections appended to a base that
    /// has both listeners, local domain `local.test` and loopback relaying.
    /// `server_extra` goes into the `[server]` table.
    pub fn start(server_extra: &str, extra: &str) -> Server {
        Server::start_with(server_extra, "", extra)
    }

    /// Like [`Server::start`], with keys for the `[outbound]` table. Unless
    /// they name nameservers, DNS goes to a loopback responder that refuses
    /// every query at once ([`refusing_dns`]), so no test ever asks a
    /// resolver off this machine, nor waits for DNS timeouts.
    pub fn start_with(server_extra: &str, outbound_extra: &str, extra: &str) -> Server {
        let mut s = Server::configure(server_extra, outbound_extra, extra);
        s.spawn();
        s
    }

    /// Like [`Server::start_with`] without starting it: the caller prepares
    /// the data directory (lookup tables, say), then calls [`Server::run`].
    pub fn configure(server_extra: &str, outbound_extra: &str, extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let (port, tls_port) = (ports[0], ports[1]);
        let dns = if outbound_extra.contains("nameservers") {
            String::new()
        } else {
            format!("nameservers = [\"127.0.0.1:{}\"]\n", refusing_dns())
        };
        // Every test server shares one compile cache (and its key), so a
        // large plugin is compiled once per run, unless the test brings its
        // own.
        let compile_cache = if server_extra.contains("plugin_cache") {
            String::new()
        } else {
            format!(
                "plugin_cache = \"{}\"\nplugin_cache_key = \"{}\"\n",
                plugin_cache().display(),
                plugin_cache().with_extension("key").display()
            )
        };
        // The local domains, unless the test names its own.
        let domains = if server_extra.contains("local_domains") {
            ""
        } else {
            "local_domains = [\"local.test\", \"localhost\"]\n"
        };
        let config = format!(
            "[server]\nhostname = \"mx.local.test\"\ndata_dir = \"{data}\"\n{compile_cache}{domains}{server_extra}\n\n[[listener]]\naddress = \"127.0.0.1:{port}\"\nmode = \"starttls\"\n\n[[listener]]\naddress = \"127.0.0.1:{tls_port}\"\nmode = \"implicit-tls\"\n\n[outbound]\n{dns}{outbound_extra}\n\n{extra}\n",
            data = dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("mailgate.toml"), &config).unwrap();
        Server {
            dir,
            port,
            tls_port,
            child: None,
            config,
        }
    }

    /// Start a server made by [`Server::configure`].
    pub fn run(&mut self) {
        self.spawn();
    }

    /// The first main-log line about message `id` that contains `pat`,
    /// waiting up to 90 seconds for it (DNS timeouts take a while).
    pub fn wait_line(&self, id: &str, pat: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.mainlog();
            if let Some(l) = log.lines().find(|l| l.contains(id) && l.contains(pat)) {
                return l.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no {id} {pat:?} in:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Submit a short message from `a@local.test` to `to` in clear; its
    /// queue id.
    pub fn submit_to(&self, to: &str) -> String {
        let mut c = Client::connect(self.port);
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<a@local.test>").starts_with("250"));
        let r = c.cmd(&format!("RCPT TO:<{to}>"));
        assert!(r.starts_with("250"), "{to}: {r}");
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(format!("Subject: to {to}\r\n\r\nbody\r\n.\r\n").as_bytes());
        let r = c.reply();
        assert!(r.starts_with("250 2.0.0 OK id="), "{r}");
        c.cmd("QUIT");
        r.trim().rsplit("id=").next().unwrap().to_string()
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mailgate.toml")
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .unwrap();
        let child = Command::new(mailgate_bin())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start mailgate");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            // The control socket appears once every listener is bound.
            if std::os::unix::net::UnixStream::connect(self.data().join("control.sock")).is_ok() {
                break;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mailgate exited at start ({st}): {}", self.stderr());
            }
            assert!(
                // Compiling a large plugin (Python, JS) the first time
                // takes a while in a debug build.
                start.elapsed() < Duration::from_secs(180),
                "mailgate did not start: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server printed on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The main log.
    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.data().join("log/mainlog")).unwrap_or_default()
    }

    /// Wait until the main log has at least `n` lines containing `pat`.
    pub fn wait_log(&self, pat: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.mainlog();
            if log.lines().filter(|l| l.contains(pat)).count() >= n {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {n} x {pat:?} in the main log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Files delivered to a local mailbox.
    /// The message in user@local.test's maildir whose Subject is
    /// `subject`, waiting up to 30 seconds for it.
    pub fn delivered(&self, subject: &str) -> String {
        self.delivered_where(|m| m.contains(&format!("Subject: {subject}\n")))
    }

    /// The first message in user@local.test's maildir that `pick` likes,
    /// waiting up to 30 seconds for one.
    pub fn delivered_where(&self, pick: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(m) = self
                .maildir("local.test", "user")
                .into_iter()
                .find(|m| pick(m))
            {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}",
                self.mainlog()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn maildir(&self, domain: &str, local: &str) -> Vec<String> {
        let dir = self
            .data()
            .join("maildir")
            .join(domain)
            .join(local)
            .join("new");
        let mut v: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect(),
            Err(_) => vec![],
        };
        v.sort();
        v
    }

    /// Today's TLS report for `domain` (`mailgate report tls --domain`).
    pub fn tls_report(&self, domain: &str) -> serde_json::Value {
        let (ok, out) = self.cli(&["report", "tls", "--domain", domain]);
        assert!(ok, "report tls --domain {domain}: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Build lookup table `name` from `text` with `mailgate table build`
    /// (the source is kept in the test directory as `NAME.txt`).
    pub fn build_table(&self, name: &str, text: &str) {
        let src = self.dir.path().join(format!("{name}.txt"));
        std::fs::write(&src, text).unwrap();
        let (ok, out) = self.cli(&["table", "build", name, src.to_str().unwrap()]);
        assert!(ok, "{out}");
    }

    /// Run `mailgate <args> --config <ours>`.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(mailgate_bin())
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// SIGKILL the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send `sig` to the running server.
    pub fn signal(&self, sig: i32) {
        let c = self.child.as_ref().expect("the server runs");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, sig) };
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// Whether the server process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Send SIGTERM and wait for the exit (at most `timeout`).
    pub fn sigterm(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if c.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Start again on the same data and ports.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Start a gateway with `extra` (plugin tables, say) and expect it to
/// refuse to start; what it printed on stderr.
pub fn refused_at_load(extra: &str) -> String {
    let s = Server::configure("", "", extra);
    let mut child = Command::new(mailgate_bin())
        .args(["serve", "--config"])
        .arg(s.config_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the gateway started although it should have refused its config");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// A raw SMTP client over plain TCP or TLS.
pub struct Client {
    stream: Conn,
    buf: Vec<u8>,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(s) => s.read(b),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that accepts any certificate; `tls12_only`
/// limits it to TLS 1.2. Its session cache lives as long as the config, so
/// reusing one config across connections lets them resume.
pub fn tls_config(tls12_only: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

fn tls_wrap_with(tcp: TcpStream, cfg: Arc<rustls::ClientConfig>) -> Conn {
    tls_wrap_named(tcp, cfg, "mx.local.test")
}

fn tls_wrap_named(tcp: TcpStream, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Conn {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

fn tls_wrap(tcp: TcpStream) -> Conn {
    tls_wrap_with(tcp, tls_config(false))
}

impl Client {
    /// Connect in cleartext without reading the banner.
    pub fn connect_raw(port: u16) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            stream: Conn::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// Connect in cleartext from the loopback address `source` (say
    /// 127.0.0.5, for a client whose reverse DNS a test serves) and read
    /// the banner.
    pub fn connect_from(source: &str, port: u16) -> Client {
        let mut c = Client::connect_raw_from(source, port);
        let r = c.reply();
        assert!(r.starts_with("220 "), "banner: {r}");
        c
    }

    /// Connect in cleartext from the loopback address `source` without
    /// reading the banner.
    pub fn connect_raw_from(source: &str, port: u16) -> Client {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
        s.bind(&from.into()).unwrap();
        let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        s.connect(&to.into()).unwrap();
        let tcp: TcpStream = s.into();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            stream: Conn::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// A client on `tcp` that has read the banner.
    fn greeted(tcp: TcpStream) -> Client {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            stream: Conn::Plain(tcp),
            buf: Vec::new(),
        };
        let r = c.reply();
        assert!(r.starts_with("220 "), "banner: {r}");
        c
    }

    /// Connect in cleartext and read the banner.
    pub fn connect(port: u16) -> Client {
        let mut c = Client::connect_raw(port);
        let r = c.reply();
        assert!(r.starts_with("220 "), "banner: {r}");
        c
    }

    /// Connect with implicit TLS and read the banner.
    pub fn connect_tls(port: u16) -> Client {
        Client::connect_tls_with(port, tls_config(false))
    }

    /// Connect with implicit TLS using a given client configuration.
    pub fn connect_tls_with(port: u16, cfg: Arc<rustls::ClientConfig>) -> Client {
        Client::connect_tls_sni(port, cfg, "mx.local.test")
    }

    /// Connect with implicit TLS asking for server name `sni`.
    pub fn connect_tls_sni(port: u16, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            stream: tls_wrap_named(tcp, cfg, sni),
            buf: Vec::new(),
        };
        let r = c.reply();
        assert!(r.starts_with("220 "), "banner: {r}");
        c
    }

    /// EHLO, STARTTLS, handshake and EHLO again.
    pub fn starttls(port: u16) -> Client {
        let mut c = Client::connect(port);
        c.cmd("EHLO client.test");
        let r = c.cmd("STARTTLS");
        assert!(r.starts_with("220 "), "STARTTLS: {r}");
        assert!(c.buf.is_empty());
        c.upgrade();
        let r = c.cmd("EHLO client.test");
        assert!(r.starts_with("250"), "EHLO after TLS: {r}");
        c
    }

    /// Switch a cleartext connection to TLS (after a 220 to STARTTLS).
    pub fn upgrade(&mut self) {
        match std::mem::replace(&mut self.stream, Conn::Gone) {
            Conn::Plain(tcp) => self.stream = tls_wrap(tcp),
            _ => panic!("not a cleartext connection"),
        }
    }

    /// Connect in cleartext to any address and read the banner.
    pub fn connect_addr(addr: std::net::SocketAddr) -> Client {
        Client::greeted(TcpStream::connect(addr).unwrap())
    }

    /// The server's end-entity certificate (DER), on a TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Conn::Tls(s) => s.conn.peer_certificates().map(|c| c[0].to_vec()),
            _ => None,
        }
    }

    /// Send bytes; false when the connection is gone.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .is_ok()
    }

    /// Send bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Read one complete (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some(end) = complete_reply(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&r).into_owned();
            }
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                }
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => panic!(
                    "read failed: {e}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server closed the connection (EOF).
    pub fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 64];
        matches!(self.stream.read(&mut tmp), Ok(0) | Err(_))
    }
}

/// Length of the first complete reply in `buf`.
fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(off) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[pos..pos + off];
        pos += off + 2;
        if line.len() < 4 || line[3] == b' ' {
            return Some(pos);
        }
    }
    None
}

/// Run swaks against the server; returns (success, transcript).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new(require("swaks"))
        .args(args)
        .output()
        .expect("run swaks");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The uid and primary gid of a local user (`id -u`, `id -g`).
pub fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        assert!(out.status.success(), "id {flag} {user}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// `GET path` from an HTTP server on 127.0.0.1 (`/metrics`, say):
/// (status line, content type, body).
pub fn http_get(port: u16, path: &str) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (status, ctype, body.to_string())
}

/// A password hash in Dovecot's form: `doveadm pw -s SCHEME -p PASSWORD`.
pub fn doveadm_pw(scheme: &str, password: &str) -> String {
    let out = Command::new(require("doveadm"))
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("doveadm pw");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A command running one of Postfix's test tools (`smtp-source`,
/// `smtp-sink`), unpacked from Debian's postfix package by
/// `bench/postfix-tools.sh` (the package itself conflicts with Exim's).
pub fn postfix_tool(name: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/postfix-tools.sh");
    let out = Command::new(&script)
        .output()
        .expect("run bench/postfix-tools.sh");
    assert!(out.status.success(), "postfix-tools.sh: {out:?}");
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let mut c = Command::new(dir.join(name));
    c.env("LD_LIBRARY_PATH", dir.join("../lib/postfix"));
    c
}

/// The Python that has parsedmarc (PyPI; scripts/test.sh installs it into
/// `target/parsedmarc` and names it in `MAILGATE_PARSEDMARC_PYTHON`).
pub fn parsedmarc_python() -> PathBuf {
    let p = std::env::var_os("MAILGATE_PARSEDMARC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/parsedmarc/bin/python")
        });
    assert!(
        p.exists(),
        "{} missing: run scripts/test.sh, which installs parsedmarc from PyPI",
        p.display()
    );
    p
}

/// The port of a UDP DNS responder on 127.0.0.1 (one per test process)
/// that answers every query REFUSED at once.
pub fn refusing_dns() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                let mut r = buf[..n].to_vec();
                r[2] = (r[2] | 0x80) & !0x02; // QR, not truncated
                r[3] = (r[3] & 0xf0) | 5; // REFUSED
                r[6..12].fill(0); // no answer, authority or additional records
                // Keep the question only: cut at its end (name, type, class).
                let mut i = 12;
                while i < r.len() && r[i] != 0 {
                    i += 1 + r[i] as usize;
                }
                r.truncate((i + 5).min(r.len()));
                let _ = sock.send_to(&r, from);
            }
        });
        port
    })
}

/// A TLS report's policies in short: `type [mx hosts] ok=N [result=N]...`
/// (e.g. `tlsa mx.example ok=0 tlsa-invalid=1`), in report order.
pub fn tls_summary(r: &serde_json::Value) -> Vec<String> {
    let list = r["policies"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|p| {
            let mut s = p["policy"]["policy-type"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            let mx: Vec<&str> = p["policy"]["mx-host"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            if !mx.is_empty() {
                s.push_str(&format!(" {}", mx.join(",")));
            }
            s.push_str(&format!(
                " ok={}",
                p["summary"]["total-successful-session-count"]
            ));
            for f in p["failure-details"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    " {}={}",
                    f["result-type"].as_str().unwrap_or("?"),
                    f["failed-session-count"]
                ));
            }
            s
        })
        .collect()
}

/// Debian's Exim 4.96 running as an SMTP server on loopback with a private
/// configuration (queue only: it accepts and keeps messages).
pub struct EximServer {
    /// Its directory (config, spool, log, certificate).
    pub dir: tempfile::TempDir,
    /// Port it listens on.
    pub port: u16,
    primary: String,
    child: Option<Child>,
}

impl EximServer {
    /// Start on 127.0.0.1 (and any extra `interfaces`) at `port`.
    /// `options` are main-section lines, optionally followed by a `begin
    /// authenticators` section; ACLs reject or defer by local part
    /// (`reject*`, `defer*`), sender (`mailreject*`, `maildefer*`) and
    /// subject (`reject-data`, `defer-data`); a subject with `slow-data`
    /// waits a second before the end of data is answered.
    pub fn start(port: u16, interfaces: &str, options: &str) -> EximServer {
        let dir = tempfile::tempdir().unwrap();
        EximServer::start_in(dir, "127.0.0.1", port, interfaces, options, None)
    }

    /// Like [`EximServer::start`], in a private mount namespace whose
    /// /etc/resolv.conf names only `nameserver` (a loopback resolver on
    /// port 53, e.g. [`dnssec::Unbound`]), so Exim's own lookups (DKIM
    /// keys, say) never reach the machine's resolver.
    pub fn start_resolving(port: u16, options: &str, nameserver: &str) -> EximServer {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {nameserver}\n")).unwrap();
        EximServer::start_in(dir, "127.0.0.1", port, "", options, Some(&resolv))
    }

    /// Start on the loopback addresses `addrs` (the first is probed) at
    /// `port`, with this certificate chain and key (PEM).
    pub fn start_at(
        addrs: &[&str],
        port: u16,
        options: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> EximServer {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
        std::fs::set_permissions(
            dir.path().join("key.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let extra: String = addrs[1..].iter().map(|a| format!(" ; {a}")).collect();
        EximServer::start_in(dir, addrs[0], port, &extra, options, None)
    }

    fn start_in(
        dir: tempfile::TempDir,
        primary: &str,
        port: u16,
        interfaces: &str,
        options: &str,
        resolv: Option<&Path>,
    ) -> EximServer {
        use std::os::unix::fs::PermissionsExt;
        let d = dir.path();
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        if !d.join("cert.pem").exists() {
            self_signed_cert(&d.join("cert.pem"), &d.join("key.pem"), "exim-server.test");
            std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let (options, authenticators) = match options.find("begin authenticators") {
            Some(i) => options.split_at(i),
            None => (options, ""),
        };
        let conf = format!(
            "primary_hostname = exim-server.test
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
log_selector = +pipelining +tls_resumption +tls_cipher +received_recipients +incoming_port +dkim_verbose
host_lookup =
rfc1413_hosts =
daemon_smtp_ports = {port}
local_interfaces = <; {primary} {interfaces}
{tls_adv}
tls_certificate = {d}/cert.pem
tls_privatekey = {d}/key.pem
tls_resumption_hosts = *
dsn_advertise_hosts = *
queue_only = true
keep_environment =
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data
{options}
begin acl
acl_mail:
  deny senders = ^mailreject
       message = 5.7.1 sender refused
  defer senders = ^maildefer
       message = 4.3.0 sender deferred
  accept
acl_rcpt:
  deny local_parts = ^reject
       message = 5.1.1 no such user here
  defer local_parts = ^defer
       message = 4.2.0 try again later
  accept
acl_data:
  warn condition = ${{if match{{$h_subject:}}{{slow-data}}}}
       delay = 1s
  deny condition = ${{if match{{$h_subject:}}{{reject-data}}}}
       message = 5.7.0 content refused
  defer condition = ${{if match{{$h_subject:}}{{defer-data}}}}
       message = 4.7.0 content deferred
  accept
begin routers
begin transports
{authenticators}
",
            d = d.display(),
            tls_adv = if options.contains("tls_advertise_hosts") {
                ""
            } else {
                "tls_advertise_hosts = *"
            },
        );
        std::fs::write(d.join("exim.conf"), conf).unwrap();
        let mut cmd = match resolv {
            // unshare execs sh, which execs Exim: the child is Exim.
            Some(r) => {
                let mut c = Command::new(require("unshare"));
                c.args(["-m", "sh", "-c"]).arg(format!(
                    "mount --bind {} /etc/resolv.conf && exec {} -C {} -bdf",
                    r.display(),
                    require("exim4").display(),
                    d.join("exim.conf").display()
                ));
                c
            }
            None => {
                let mut c = Command::new(require("exim4"));
                c.arg("-C").arg(d.join("exim.conf")).arg("-bdf");
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start exim4");
        let mut s = EximServer {
            dir,
            primary: primary.to_string(),
            port,
            child: Some(child),
        };
        let start = Instant::now();
        while TcpStream::connect((primary, port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "exim did not start: {}",
                s.mainlog()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The probe connection shows up in Exim's log; wait for it to go.
        std::thread::sleep(Duration::from_millis(100));
        s.child.as_mut().unwrap();
        s
    }

    /// Stop and start again with other main options (same port, spool).
    pub fn restart_with(mut self, interfaces: &str, options: &str) -> EximServer {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let primary = self.primary.clone();
        EximServer::start_in(dir, &primary, self.port, interfaces, options, None)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let start = Instant::now();
        while TcpStream::connect((self.primary.as_str(), self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Exim's main log.
    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }

    /// A queued message, headers and body (`exim -Mvc`).
    pub fn message(&self, id: &str) -> String {
        let out = Command::new(require("exim4"))
            .arg("-C")
            .arg(self.dir.path().join("exim.conf"))
            .arg("-Mvc")
            .arg(id)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Lines of the main log that contain `pat`.
    pub fn lines(&self, pat: &str) -> Vec<String> {
        self.mainlog()
            .lines()
            .filter(|l| l.contains(pat))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for EximServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's nsd serving one zone on a loopback port, so DNS never leaves
/// this machine.
pub struct Nsd {
    /// Working directory.
    pub dir: tempfile::TempDir,
    /// UDP/TCP port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Nsd {
    /// Serve `zone_text` as zone `origin`.
    pub fn start(origin: &str, zone_text: &str) -> Nsd {
        Nsd::start_zones(&[(origin, zone_text)])
    }

    /// Serve several zones (a parent and its children, say).
    pub fn start_zones(zones: &[(&str, &str)]) -> Nsd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display().to_string();
        let mut conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n  pidfile: \"{d}/nsd.pid\"\n  logfile: \"{d}/nsd.log\"\n  do-ip6: no\n  verbosity: 1\nremote-control:\n  control-enable: no\n"
        );
        for (i, (origin, text)) in zones.iter().enumerate() {
            std::fs::write(dir.path().join(format!("zone{i}")), text).unwrap();
            conf.push_str(&format!("zone:\n  name: {origin}\n  zonefile: zone{i}\n"));
        }
        std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
        let child = Command::new(require("nsd"))
            .arg("-c")
            .arg(dir.path().join("nsd.conf"))
            .arg("-d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nsd");
        let n = Nsd {
            dir,
            port,
            child: Some(child),
        };
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(n.dir.path().join("nsd.log")).unwrap_or_default();
            if log.contains("nsd started") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nsd did not start: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }
}

impl Nsd {
    /// Replace zone `i` (in the order given at start) and make nsd reload.
    pub fn replace_zone(&mut self, i: usize, text: &str) {
        std::fs::write(self.dir.path().join(format!("zone{i}")), text).unwrap();
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child; SIGHUP makes nsd reload.
            unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
        }
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // nsd forks a server child; SIGTERM lets the parent stop it.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// Compiled plugin code shared by every test server (keyed by hash), so a
/// large component is compiled once per test run.
pub fn plugin_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugin-cache")
}

/// A plugin component built by `scripts/test.sh` (`plugins/` workspace).
pub fn plugin_wasm(file: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(file);
    assert!(
        p.exists(),
        "{} missing: build the plugins with `cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml` (scripts/test.sh does)",
        p.display()
    );
    p
}
