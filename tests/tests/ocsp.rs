//! The server's certificates: an OCSP response made by `openssl ocsp` for
//! a certificate from a test CA is stapled (seen by `openssl s_client
//! -status`); a second certificate is served to clients asking for its
//! name (SNI); a replaced certificate is served to the next handshake
//! while a session opened before continues; a broken replacement keeps the
//! old certificate. With an ECDSA certificate beside the RSA one
//! (`[[tls.alternative]]`), `openssl s_client` gets ECDSA, and RSA when it
//! offers only RSA signature algorithms.

use mailgate_tests::dnssec::TestCa;
use mailgate_tests::{Client, Server, require, tls_config};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `openssl ocsp` answers for `leaf` (signed by the CA itself) into
/// `out`: make a request, then the response from an index that lists the
/// certificate as valid.
fn ocsp_response(dir: &Path, ca: &Path, ca_key: &Path, leaf: &Path, serial_hex: &str, out: &Path) {
    std::fs::write(
        dir.join("index.txt"),
        format!("V\t301231235959Z\t\t{serial_hex}\tunknown\t/CN=test\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(require("openssl"))
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let p = |x: &Path| x.display().to_string();
    run(&[
        "ocsp",
        "-issuer",
        &p(ca),
        "-cert",
        &p(leaf),
        "-no_nonce",
        "-reqout",
        "req.der",
    ]);
    run(&[
        "ocsp",
        "-index",
        "index.txt",
        "-rsigner",
        &p(ca),
        "-rkey",
        &p(ca_key),
        "-CA",
        &p(ca),
        "-reqin",
        "req.der",
        "-respout",
        &p(out),
        "-ndays",
        "7",
    ]);
}

/// What `openssl s_client -status` prints about the staple.
fn s_client_status(port: u16, sni: &str) -> String {
    let o = Command::new(require("openssl"))
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            sni,
            "-status",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn serial_hex(der: &[u8]) -> String {
    // The serial as openssl's index wants it: upper-case hex of the
    // INTEGER's bytes, from the certificate itself.
    let o = Command::new(require("openssl"))
        .args(["x509", "-inform", "DER", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(der)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

#[test]
fn ocsp_staple_sni_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("mailgate OCSP test CA");
    std::fs::write(d.join("ca.pem"), &ca.cert.chain_pem).unwrap();
    std::fs::write(d.join("ca.key"), &ca.cert.key_pem).unwrap();
    let leaf = ca.issue(&["mx.local.test"]);
    std::fs::write(d.join("cert.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(d.join("key.pem"), &leaf.key_pem).unwrap();
    ocsp_response(
        d,
        &d.join("ca.pem"),
        &d.join("ca.key"),
        &d.join("cert.pem"),
        &serial_hex(&leaf.der),
        &d.join("cert.pem.ocsp"),
    );
    let other = ca.issue(&["other.test"]);
    std::fs::write(d.join("other.pem"), &other.chain_pem).unwrap();
    std::fs::write(d.join("other.key"), &other.key_pem).unwrap();
    let s = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{d}/cert.pem\"\nprivate_key = \"{d}/key.pem\"\nreload_interval = \"1s\"\n[[tls.sni]]\ncertificate = \"{d}/other.pem\"\nprivate_key = \"{d}/other.key\"\n",
            d = d.display()
        ),
    );

    // The default certificate with its staple; the SNI one without.
    let out = s_client_status(s.tls_port, "mx.local.test");
    assert!(out.contains("OCSP Response Status: successful"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    let out = s_client_status(s.tls_port, "other.test");
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    let got = |sni: &str| {
        Client::connect_tls_sni(s.tls_port, tls_config(false), sni)
            .peer_certificate()
            .unwrap()
    };
    assert_eq!(got("other.test"), other.der);
    assert_eq!(got("mx.local.test"), leaf.der);
    assert_eq!(got("unknown.test"), leaf.der);

    // A session open across the replacement goes on; the next handshake
    // gets the new certificate (and no staple: the old one is not about it).
    let mut open = Client::connect_tls(s.tls_port);
    assert!(open.cmd("EHLO client.test").starts_with("250"));
    let new = ca.issue(&["mx.local.test"]);
    std::fs::write(d.join("key.pem.new"), &new.key_pem).unwrap();
    std::fs::write(d.join("cert.pem.new"), &new.chain_pem).unwrap();
    std::fs::remove_file(d.join("cert.pem.ocsp")).unwrap();
    std::fs::rename(d.join("key.pem.new"), d.join("key.pem")).unwrap();
    std::fs::rename(d.join("cert.pem.new"), d.join("cert.pem")).unwrap();
    let start = Instant::now();
    while got("mx.local.test") != new.der {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", s.mainlog());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(open.cmd("NOOP").starts_with("250"));
    assert!(s.mainlog().contains("TLS certificates reloaded"));
    let out = s_client_status(s.tls_port, "mx.local.test");
    assert!(out.contains("OCSP response: no response sent"), "{out}");

    // A key that does not belong to the certificate: refused, logged, the
    // last good certificate stays.
    let failed = s.mainlog().matches("TLS certificate reload failed").count();
    std::fs::write(d.join("key.pem"), &other.key_pem).unwrap();
    s.wait_log("TLS certificate reload failed", failed + 1);
    assert_eq!(got("mx.local.test"), new.der);
}

/// `openssl ocsp -port` as the responder a certificate names: with
/// `tls.ocsp_fetch` the staple is fetched, written beside the certificate
/// and served.
#[test]
fn ocsp_fetched_from_the_responder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("mailgate OCSP responder test CA");
    std::fs::write(d.join("ca.pem"), &ca.cert.chain_pem).unwrap();
    std::fs::write(d.join("ca.key"), &ca.cert.key_pem).unwrap();
    let port = mailgate_tests::free_port();
    let leaf = ca.issue_with_ocsp(
        &["mx.local.test"],
        Some(&format!("http://127.0.0.1:{port}/")),
    );
    std::fs::write(d.join("cert.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(d.join("key.pem"), &leaf.key_pem).unwrap();
    std::fs::write(
        d.join("index.txt"),
        format!(
            "V\t301231235959Z\t\t{}\tunknown\t/CN=test\n",
            serial_hex(&leaf.der)
        ),
    )
    .unwrap();
    let p = |x: &str| d.join(x).display().to_string();
    let mut responder = Killed(
        Command::new(require("openssl"))
            .args([
                "ocsp",
                "-port",
                &port.to_string(),
                "-index",
                &p("index.txt"),
                "-rsigner",
                &p("ca.pem"),
                "-rkey",
                &p("ca.key"),
                "-CA",
                &p("ca.pem"),
                "-ndays",
                "7",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for it to listen by what it says: a probe connection would
    // wedge it (it serves one connection at a time and waits on it).
    {
        use std::io::BufRead;
        let mut err = std::io::BufReader::new(responder.0.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("waiting for OCSP client connections") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "openssl ocsp did not start"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    }
    let s = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{d}/cert.pem\"\nprivate_key = \"{d}/key.pem\"\nreload_interval = \"1s\"\nocsp_fetch = true\n",
            d = d.display()
        ),
    );
    let start = Instant::now();
    loop {
        let out = s_client_status(s.tls_port, "mx.local.test");
        if out.contains("Cert Status: good") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no staple (file there: {}): {out}\n{}\n{}",
            d.join("cert.pem.ocsp").exists(),
            s.mainlog(),
            std::fs::read_to_string(s.dir.path().join("stderr.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(d.join("cert.pem.ocsp").exists());
}

/// A child process killed when the test ends, passed or failed (a leaked
/// `openssl ocsp` spins on a half-open connection).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server certificate's public key type as `openssl s_client` sees it
/// when it offers `sigalgs`.
fn key_type(port: u16, sigalgs: &str) -> String {
    let o = Command::new(require("openssl"))
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-sigalgs",
            sigalgs,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    out.lines()
        .find(|l| l.starts_with("Server public key is"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

#[test]
fn rsa_and_ecdsa_by_client_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (stem, alg) in [
        ("rsa", &["-newkey", "rsa:2048"][..]),
        (
            "ec",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
    ] {
        let st = Command::new(require("openssl"))
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=mx.local.test",
            ])
            .args(alg)
            .arg("-keyout")
            .arg(d.join(format!("{stem}.key")))
            .arg("-out")
            .arg(d.join(format!("{stem}.pem")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let s = Server::start(
        "",
        &format!(
            "[tls]\ncertificate = \"{d}/rsa.pem\"\nprivate_key = \"{d}/rsa.key\"\n[[tls.alternative]]\ncertificate = \"{d}/ec.pem\"\nprivate_key = \"{d}/ec.key\"\n",
            d = d.display()
        ),
    );
    let both = key_type(s.tls_port, "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256");
    assert!(both.contains("256 bit"), "{both}");
    let rsa = key_type(s.tls_port, "RSA-PSS+SHA256:RSA+SHA256");
    assert!(rsa.contains("2048 bit"), "{rsa}");
}
