//! DNSSEC and certificate helpers for the DANE tests: zones signed by
//! ldns-signzone, test certificates (self-signed, or from a test CA) with
//! the digests TLSA records publish, and a DNS proxy in front of nsd that
//! answers SERVFAIL to, or drops, chosen queries.

use crate::require;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `zone` (for `origin`, with a trailing dot) signed by ldns-signzone with
/// one fresh ECDSA P-256 key; returns the signed zone text and the key's
/// DNSKEY record (the trust anchor).
pub fn sign_zone(dir: &Path, origin: &str, zone: &str) -> (String, String) {
    std::fs::write(dir.join("zone"), zone).unwrap();
    let out = std::process::Command::new(require("ldns-keygen"))
        .args(["-a", "ECDSAP256SHA256", "-k", origin])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let base = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let st = std::process::Command::new(require("ldns-signzone"))
        .args(["-o", origin, "zone", &base])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    (
        std::fs::read_to_string(dir.join("zone.signed")).unwrap(),
        std::fs::read_to_string(dir.join(format!("{base}.key"))).unwrap(),
    )
}

/// Break the signature over `owner`'s `rtype` records in a signed zone
/// (one base64 character of the RRSIG changed), so validation fails.
pub fn corrupt_rrsig(signed: &str, owner: &str, rtype: &str) -> String {
    let mut done = false;
    let out: Vec<String> = signed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !done
                && f.len() > 8
                && f[0].eq_ignore_ascii_case(owner)
                && f[3] == "RRSIG"
                && f[4] == rtype
            {
                done = true;
                // The signature is the last field; change a character in
                // its middle to another base64 character.
                let sig = f[f.len() - 1];
                let mid = sig.len() / 2;
                let c = sig.as_bytes()[mid];
                let swapped = if c == b'A' { 'B' } else { 'A' };
                let new_sig = format!("{}{}{}", &sig[..mid], swapped, &sig[mid + 1..]);
                let mut g: Vec<String> = f.iter().map(|s| s.to_string()).collect();
                let n = g.len();
                g[n - 1] = new_sig;
                g.join("\t")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "no RRSIG {rtype} for {owner}");
    out.join("\n") + "\n"
}

/// A certificate with its key and the bytes TLSA records are made from.
pub struct TestCert {
    /// The certificate (PEM), followed by its chain when it has one.
    pub chain_pem: String,
    /// The private key (PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// Its SubjectPublicKeyInfo (DER).
    pub spki: Vec<u8>,
}

/// A test CA that issues server certificates.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate.
    pub cert: TestCert,
}

/// SHA2-256 as hex, for TLSA records.
pub fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    TestCert {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        spki: rcgen::PublicKeyData::subject_public_key_info(&key),
    }
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let tc = TestCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        };
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            cert: tc,
        }
    }

    /// A server certificate for `names`; its PEM chain ends with the CA
    /// certificate (a DANE-TA server must send its trust anchor).
    pub fn issue(&self, names: &[&str]) -> TestCert {
        self.issue_with_ocsp(names, None)
    }

    /// Like [`TestCa::issue`], naming `ocsp_url` as its OCSP responder
    /// (Authority Information Access).
    pub fn issue_with_ocsp(&self, names: &[&str], ocsp_url: Option<&str>) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(url) = ocsp_url {
            let el = |tag: u8, c: &[u8]| {
                let mut v = vec![tag, c.len() as u8];
                v.extend_from_slice(c);
                v
            };
            let oid_ocsp = el(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
            let desc = el(0x30, &[oid_ocsp, el(0x86, url.as_bytes())].concat());
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                    el(0x30, &desc),
                ));
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert.chain_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }
}

/// A DNS proxy on a loopback port in front of a nameserver: UDP queries
/// whose name contains a `servfail` pattern get SERVFAIL, those with a
/// `drop` pattern get nothing (a timeout), everything else is relayed; TCP
/// is relayed as it is. It keeps every UDP question (`name TYPE`).
pub struct DnsProxy {
    /// The port (UDP and TCP) on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The question type of a DNS message (numeric, or its common name).
fn qtype(msg: &[u8]) -> String {
    let mut i = 12;
    while i < msg.len() && msg[i] != 0 {
        i += 1 + msg[i] as usize;
    }
    let t = match msg.get(i + 1..i + 3) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    };
    match t {
        1 => "A".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        43 => "DS".into(),
        48 => "DNSKEY".into(),
        52 => "TLSA".into(),
        n => n.to_string(),
    }
}

/// The query name of a DNS message, lower-cased, dotted.
fn qname(msg: &[u8]) -> String {
    let mut i = 12;
    let mut labels = Vec::new();
    while i < msg.len() {
        let n = msg[i] as usize;
        if n == 0 || i + 1 + n > msg.len() {
            break;
        }
        labels.push(String::from_utf8_lossy(&msg[i + 1..i + 1 + n]).to_ascii_lowercase());
        i += 1 + n;
    }
    labels.join(".")
}

impl DnsProxy {
    /// Relay to `upstream` (127.0.0.1:port of nsd).
    pub fn start(upstream: u16, servfail: &[&str], drop: &[&str]) -> DnsProxy {
        let port = crate::free_port();
        let stop = Arc::new(AtomicBool::new(false));
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let servfail: Vec<String> = servfail.iter().map(|s| s.to_string()).collect();
        let drop_: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
        let up: SocketAddr = ([127, 0, 0, 1], upstream).into();
        let s2 = stop.clone();
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let asked2 = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let q = buf[..n].to_vec();
                let name = qname(&q);
                asked2.lock().unwrap().push(format!("{name} {}", qtype(&q)));
                if drop_.iter().any(|p| name.contains(p.as_str())) {
                    continue;
                }
                if servfail.iter().any(|p| name.contains(p.as_str())) {
                    let mut r = q.clone();
                    r[2] |= 0x80; // QR
                    r[3] = (r[3] & 0xf0) | 2; // SERVFAIL
                    let _ = udp.send_to(&r, from);
                    continue;
                }
                // One upstream socket per query keeps the relay simple.
                let udp2 = udp.try_clone().unwrap();
                std::thread::spawn(move || {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let _ = s.send_to(&q, up);
                    let mut b = [0u8; 65535];
                    if let Ok(n) = s.recv(&mut b) {
                        let _ = udp2.send_to(&b[..n], from);
                    }
                });
            }
        });
        let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let s3 = stop.clone();
        std::thread::spawn(move || {
            while !s3.load(Ordering::Relaxed) {
                let Ok((c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                std::thread::spawn(move || {
                    let Ok(u) = TcpStream::connect(up) else {
                        return;
                    };
                    let (mut c1, mut u1) = (c.try_clone().unwrap(), u.try_clone().unwrap());
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c1, &mut u1);
                        let _ = u1.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut u2, mut c2) = (u, c);
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                    let _ = t.join();
                });
            }
        });
        DnsProxy { port, stop, asked }
    }

    /// How many UDP questions `question` (`name TYPE`) it has seen.
    pub fn asked(&self, question: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|q| *q == question)
            .count()
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Debian's unbound as a validating resolver on 127.0.0.2:53 (where
/// glibc's resolver, and so Exim, can reach it), forwarding `zone` to nsd
/// on `nsd_port` with `anchor` (a DNSKEY or DS record) as its trust anchor
/// and refusing every other name, so nothing leaves the machine.
pub struct Unbound {
    child: std::process::Child,
    /// Its directory (config, log).
    pub dir: tempfile::TempDir,
}

impl Unbound {
    /// Start and wait until it serves.
    pub fn start(zone: &str, nsd_port: u16, anchor: &str) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("anchor"), anchor).unwrap();
        let zone = format!("{}.", zone.trim_end_matches('.'));
        let conf = format!(
            "server:
  interface: 127.0.0.2
  port: 53
  do-ip6: no
  do-not-query-localhost: no
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"{d}/unbound.pid\"
  logfile: \"{d}/unbound.log\"
  use-syslog: no
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  module-config: \"validator iterator\"
  trust-anchor-file: \"{d}/anchor\"
  local-zone: \".\" refuse
  local-zone: \"{zone}\" transparent
stub-zone:
  name: \"{zone}\"
  stub-addr: 127.0.0.1@{nsd_port}
remote-control:
  control-enable: no
"
        );
        std::fs::write(dir.path().join("unbound.conf"), conf).unwrap();
        let child = std::process::Command::new(require("unbound"))
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("unbound.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start unbound");
        let u = Unbound { child, dir };
        let start = std::time::Instant::now();
        loop {
            let log = std::fs::read_to_string(u.dir.path().join("unbound.log")).unwrap_or_default();
            if log.contains("start of service") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "unbound did not start: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        u
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
