//! DANE as a client (RFC 7672) against Exim 4.96 servers, through nsd
//! serving an ldns-signed zone (and an unsigned child zone), with a DNS
//! proxy that answers SERVFAIL to, or drops, some TLSA queries. Each
//! recipient domain is one case with its own MX host and address:
//! matching DANE-EE and DANE-TA records deliver with `CV=dane`; a wrong
//! digest, a DANE-TA chain that does not name the host, a bogus
//! signature, a SERVFAIL or a timeout on the TLSA lookup, a server that
//! stops offering STARTTLS and a man in the middle holding the real
//! certificate without its key are all deferred and never delivered;
//! unusable records force unauthenticated TLS; no records or an unsigned
//! zone leave TLS opportunistic; dane-only refuses a host without TLSA;
//! a failing MX gives way to the next.

use mailgate_tests::dnssec::{DnsProxy, TestCa, corrupt_rrsig, self_signed, sha256_hex, sign_zone};
use mailgate_tests::{EximServer, Nsd, Server, free_port};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server that has Exim's certificate but not its key: it answers SMTP,
/// offers STARTTLS and signs the handshake with a key of its own. Records
/// whether anyone got as far as MAIL.
fn man_in_the_middle(addr: &str, port: u16, cert_pem: &str) -> Arc<Mutex<Vec<String>>> {
    let certs: Vec<_> = rustls_pemfile_certs(cert_pem);
    let wrong = rcgen::KeyPair::generate().unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(wrong.serialize_der()).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).unwrap();
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let ck = Arc::new(rustls::sign::CertifiedKey::new(certs, signer));
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(ck))),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind((addr, port)).unwrap();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let cfg = cfg.clone();
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let _ = w.write_all(b"220 mitm.test ESMTP\r\n");
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim().to_ascii_uppercase();
                    seen.lock().unwrap().push(format!("clear: {cmd}"));
                    if cmd.starts_with("EHLO") {
                        let _ = w.write_all(b"250-mitm.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
                    } else if cmd == "STARTTLS" {
                        let _ = w.write_all(b"220 go ahead\r\n");
                        let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                        let mut sock = c;
                        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
                        let mut tr = BufReader::new(&mut tls);
                        let mut l2 = String::new();
                        // Anything read here came over the forged session.
                        while tr.read_line(&mut l2).unwrap_or(0) > 0 {
                            seen.lock().unwrap().push(format!("tls: {}", l2.trim()));
                            l2.clear();
                        }
                        return;
                    } else {
                        let _ = w.write_all(b"250 ok\r\n");
                    }
                    line.clear();
                }
            });
        }
    });
    seen
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

#[test]
fn dane_client_against_exim() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = port;
    // Exim A: a self-signed certificate (DANE-EE). Exim B: a certificate
    // from a test CA naming mx-ta.mgtest, sent with the CA (DANE-TA).
    // Exim C: no STARTTLS.
    let a = self_signed(&["exim-a.test"]);
    let ca = TestCa::new("mailgate DANE test CA");
    let b = ca.issue(&["mx-ta.mgtest"]);
    let c = self_signed(&["exim-c.test"]);
    let ea = EximServer::start_at(
        &[
            "127.0.0.31",
            "127.0.0.32",
            "127.0.0.33",
            "127.0.0.34",
            "127.0.0.35",
            "127.0.0.36",
            "127.0.0.37",
            "127.0.0.38",
            "127.0.0.39",
            "127.0.0.40",
            "127.0.0.45",
        ],
        port,
        "",
        &a.chain_pem,
        &a.key_pem,
    );
    let eb = EximServer::start_at(
        &["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"],
        port,
        "",
        &b.chain_pem,
        &b.key_pem,
    );
    let ec = EximServer::start_at(
        &["127.0.0.51"],
        port,
        "tls_advertise_hosts =",
        &c.chain_pem,
        &c.key_pem,
    );
    let mitm = man_in_the_middle("127.0.0.61", port, &a.chain_pem);

    let ee = |cert: &mailgate_tests::dnssec::TestCert| format!("3 1 1 {}", sha256_hex(&cert.spki));
    let mut wrong = ee(&a);
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    let ta = format!("2 0 1 {}", sha256_hex(&ca.cert.der));
    let zone = format!(
        "$ORIGIN mgtest.
$TTL 300
@ IN SOA ns.mgtest. admin.mgtest. 1 3600 600 86400 300
@ IN NS ns.mgtest.
ns IN A 127.0.0.1
plain IN NS ns.mgtest.
ee IN MX 10 mx-ee
mx-ee IN A 127.0.0.31
_{p}._tcp.mx-ee IN TLSA {ee_a}
wrong IN MX 10 mx-wrong
mx-wrong IN A 127.0.0.32
_{p}._tcp.mx-wrong IN TLSA {wrong}
unusable IN MX 10 mx-unusable
mx-unusable IN A 127.0.0.33
_{p}._tcp.mx-unusable IN TLSA 1 1 1 {a_hash}
notlsa IN MX 10 mx-notlsa
mx-notlsa IN A 127.0.0.34
daneonly IN MX 10 mx-notlsa
bogus IN MX 10 mx-bogus
mx-bogus IN A 127.0.0.35
_{p}._tcp.mx-bogus IN TLSA {ee_a}
servfail IN MX 10 mx-servfail
mx-servfail IN A 127.0.0.36
_{p}._tcp.mx-servfail IN TLSA {ee_a}
timeout IN MX 10 mx-timeout
mx-timeout IN A 127.0.0.38
_{p}._tcp.mx-timeout IN TLSA {ee_a}
fallback IN MX 10 mx-fallback1
fallback IN MX 20 mx-fallback2
mx-fallback1 IN A 127.0.0.40
_{p}._tcp.mx-fallback1 IN TLSA {wrong}
mx-fallback2 IN A 127.0.0.39
_{p}._tcp.mx-fallback2 IN TLSA {ee_a}
ta IN MX 10 mx-ta
mx-ta IN A 127.0.0.41
_{p}._tcp.mx-ta IN TLSA {ta}
taname IN MX 10 mx-taname
mx-taname IN A 127.0.0.42
_{p}._tcp.mx-taname IN TLSA {ta}
nostarttls IN MX 10 mx-nostarttls
mx-nostarttls IN A 127.0.0.51
_{p}._tcp.mx-nostarttls IN TLSA {ee_c}
mitm IN MX 10 mx-mitm
mx-mitm IN A 127.0.0.61
_{p}._tcp.mx-mitm IN TLSA {ee_a}
insecure IN MX 10 mx.plain
pkix IN MX 10 mx-pkix
mx-pkix IN CNAME mx-ta2
mx-ta2 IN A 127.0.0.43
pkixbad IN MX 10 mx-ta3
mx-ta3 IN A 127.0.0.44
untrusted IN MX 10 mx-untrusted
mx-untrusted IN A 127.0.0.45
",
        ee_a = ee(&a),
        ee_c = ee(&c),
        a_hash = sha256_hex(&a.spki),
    );
    let (signed, anchor) = sign_zone(dir.path(), "mgtest.", &zone);
    let signed = corrupt_rrsig(&signed, &format!("_{p}._tcp.mx-bogus.mgtest."), "TLSA");
    // The unsigned child: its TLSA record is wrong, and must be ignored.
    let plain = format!(
        "$ORIGIN plain.mgtest.
$TTL 300
@ IN SOA ns.mgtest. admin.mgtest. 1 3600 600 86400 300
@ IN NS ns.mgtest.
mx IN A 127.0.0.37
_{p}._tcp.mx IN TLSA {wrong}
"
    );
    let nsd = Nsd::start_zones(&[("mgtest", &signed), ("plain.mgtest", &plain)]);
    let proxy = DnsProxy::start(nsd.port, &["_tcp.mx-servfail"], &["_tcp.mx-timeout"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert.chain_pem).unwrap();
    let anchors = dir.path().join("anchors");
    std::fs::write(&anchors, &anchor).unwrap();
    let s = Server::start_with(
        "",
        &format!(
            "nameservers = [\"127.0.0.1:{}\"]\ndnssec_trust_anchors = \"{}\"\nport = {port}\nretry_min = \"1h\"\npipe_connect = false\n",
            proxy.port,
            anchors.display()
        ),
        &format!(
            "[outbound.tls_policy]\n\"daneonly.mgtest\" = \"dane-only\"\n\"pkix.mgtest\" = {{ level = \"verify\", match = [\"mx-ta.mgtest\"], ca_file = \"{ca}\" }}\n\"pkixbad.mgtest\" = {{ level = \"secure\", ca_file = \"{ca}\" }}\n\"untrusted.mgtest\" = \"verify\"\n",
            ca = ca_file.display()
        ),
    );

    let cases = [
        "ee",
        "ta",
        "taname",
        "wrong",
        "unusable",
        "notlsa",
        "daneonly",
        "bogus",
        "servfail",
        "timeout",
        "fallback",
        "nostarttls",
        "mitm",
        "insecure",
        "pkix",
        "pkixbad",
        "untrusted",
    ];
    let ids: Vec<(String, String)> = cases
        .iter()
        .map(|d| {
            let to = format!("user@{d}.mgtest");
            (d.to_string(), s.submit_to(&to))
        })
        .collect();
    let id = |d: &str| ids.iter().find(|(x, _)| x == d).unwrap().1.clone();

    // Delivered and verified by DANE.
    for (d, host) in [
        ("ee", "mx-ee"),
        ("ta", "mx-ta"),
        ("fallback", "mx-fallback2"),
    ] {
        let l = s.wait_line(&id(d), " => ");
        assert!(l.contains(&format!("H={host}.mgtest")), "{d}: {l}");
        assert!(l.contains(" X=TLS") && l.contains(" CV=dane "), "{d}: {l}");
    }
    // The failed first MX of "fallback" was tried and logged.
    let log = s.mainlog();
    assert!(
        log.lines().any(|l| l.contains(&id("fallback"))
            && l.contains("mx-fallback1")
            && l.contains("no TLSA record matches")),
        "{log}"
    );
    // Delivered over TLS, not authenticated: unusable records make TLS
    // mandatory; no records or an unsigned zone leave it opportunistic
    // (and the insecure zone's wrong record is not used).
    for (d, host) in [
        ("unusable", "mx-unusable"),
        ("notlsa", "mx-notlsa"),
        ("insecure", "mx.plain"),
    ] {
        let l = s.wait_line(&id(d), " => ");
        assert!(l.contains(&format!("H={host}.mgtest")), "{d}: {l}");
        assert!(l.contains(" X=TLS") && l.contains(" CV=no "), "{d}: {l}");
    }
    // PKIX levels: a chain to the configured CA naming the policy's name
    // delivers (CV=yes); a secure level whose certificate does not name
    // the next-hop domain, or a certificate no trusted CA issued, defers.
    let l = s.wait_line(&id("pkix"), " => ");
    assert!(l.contains(" CV=yes "), "{l}");
    let l = s.wait_line(&id("pkixbad"), " == ");
    assert!(
        l.contains("certificate does not name pkixbad.mgtest or .pkixbad.mgtest"),
        "{l}"
    );
    let l = s.wait_line(&id("untrusted"), " == ");
    assert!(l.contains("certificate not trusted"), "{l}");
    // Deferred, each with the reason, and never delivered.
    for (d, why) in [
        ("wrong", "no TLSA record matches"),
        ("taname", "does not name"),
        ("bogus", "TLSA lookup for mx-bogus.mgtest failed"),
        ("servfail", "TLSA lookup for mx-servfail.mgtest failed"),
        ("timeout", "TLSA lookup for mx-timeout.mgtest failed"),
        ("daneonly", "no DNSSEC-secure TLSA records (dane-only)"),
        ("nostarttls", "did not offer STARTTLS"),
        ("mitm", "TLS handshake failed"),
    ] {
        let l = s.wait_line(&id(d), " == ");
        assert!(l.contains(why), "{d}: {l}");
        assert!(l.contains("DANE"), "{d}: {l}");
    }
    let log = s.mainlog();
    for d in [
        "wrong",
        "taname",
        "bogus",
        "servfail",
        "timeout",
        "daneonly",
        "nostarttls",
        "mitm",
    ] {
        assert!(
            !log.lines()
                .any(|l| l.contains(&id(d)) && l.contains(" => ")),
            "{d} delivered:\n{log}"
        );
    }
    // TLS reports (RFC 8460) count each connection under the host's TLSA
    // policy, with the failure's type; hosts without secure TLSA count as
    // no-policy-found. (Deferred recipients wait an hour: one attempt each.)
    for (d, want) in [
        ("ee", "tlsa mx-ee.mgtest ok=1"),
        ("wrong", "tlsa mx-wrong.mgtest ok=0 tlsa-invalid=1"),
        (
            "taname",
            "tlsa mx-taname.mgtest ok=0 certificate-host-mismatch=1",
        ),
        ("servfail", "tlsa mx-servfail.mgtest ok=0 dnssec-invalid=1"),
        ("bogus", "tlsa mx-bogus.mgtest ok=0 dnssec-invalid=1"),
        ("daneonly", "no-policy-found ok=0 dane-required=1"),
        (
            "nostarttls",
            "tlsa mx-nostarttls.mgtest ok=0 starttls-not-supported=1",
        ),
        ("mitm", "tlsa mx-mitm.mgtest ok=0 validation-failure=1"),
        ("insecure", "no-policy-found ok=1"),
    ] {
        let r = s.tls_report(&format!("{d}.mgtest"));
        assert_eq!(
            mailgate_tests::tls_summary(&r),
            vec![want.to_string()],
            "{d}: {r}"
        );
    }
    let r = s.tls_report("ee.mgtest");
    let policy = &r["policies"][0]["policy"];
    assert!(
        policy["policy-string"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("3 1 1 ")),
        "{r}"
    );
    let r = s.tls_report("wrong.mgtest");
    let f = &r["policies"][0]["failure-details"][0];
    assert_eq!(f["receiving-mx-hostname"], "mx-wrong.mgtest", "{r}");
    assert!(
        f["receiving-ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127.")),
        "{r}"
    );
    assert!(
        f["failure-reason-code"]
            .as_str()
            .is_some_and(|t| t.contains("no TLSA record matches")),
        "{r}"
    );
    // A second delivery to a DANE domain asks DNS nothing new: the
    // answers, the TLSA records and the validated denial of the MX
    // host's AAAA are cached.
    let aaaa = proxy.asked("mx-ee.mgtest AAAA");
    let tlsa = proxy.asked(&format!("_{p}._tcp.mx-ee.mgtest TLSA"));
    assert!(aaaa >= 1 && tlsa >= 1, "aaaa {aaaa} tlsa {tlsa}");
    let again = s.submit_to("other@ee.mgtest");
    let l = s.wait_line(&again, " => ");
    assert!(l.contains(" CV=dane "), "{l}");
    assert_eq!(proxy.asked("mx-ee.mgtest AAAA"), aaaa);
    assert_eq!(proxy.asked(&format!("_{p}._tcp.mx-ee.mgtest TLSA")), tlsa);
    // The servers saw exactly the deliveries above.
    let count = |e: &EximServer| e.lines(" <= a@local.test").len();
    assert_eq!(count(&ea), 6, "{}", ea.mainlog());
    assert_eq!(count(&eb), 2, "{}", eb.mainlog());
    assert_eq!(count(&ec), 0, "{}", ec.mainlog());
    // The man in the middle got a handshake attempt, and nothing over it.
    let seen = mitm.lock().unwrap().clone();
    assert!(seen.iter().any(|l| l == "clear: STARTTLS"), "{seen:?}");
    assert!(!seen.iter().any(|l| l.starts_with("tls:")), "{seen:?}");
    drop(proxy);
}
