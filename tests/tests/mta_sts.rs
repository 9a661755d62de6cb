//! MTA-STS (RFC 8461) against Exim 4.96 MX hosts, with policies served
//! over HTTPS on a loopback address by a small rustls server holding a
//! certificate from a test CA, and every name resolved through nsd:
//! enforce with a listed MX delivers verified (`CV=yes`); enforce with an
//! MX the policy does not list, or whose certificate no trusted CA issued,
//! defers; testing delivers; a redirect is not followed and an oversized
//! policy is refused (both as if no policy); a cached policy is not
//! fetched again, a changed id is; the cache survives a restart while the
//! policy host is down.

use mailgate_tests::dnssec::{TestCa, self_signed};
use mailgate_tests::{EximServer, Nsd, Server, free_port};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Requests = Arc<Mutex<Vec<String>>>;
/// Bodies of POST requests.
type Posts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
/// Status line, content type and body by `host` + `path`.
type Pages = Arc<Mutex<HashMap<String, (String, String, String)>>>;

/// An HTTPS server answering by Host and path from `pages` (status line,
/// content type, body); records `host path` of each request and the
/// content type and body of each POST.
fn https_server(
    addr: &str,
    port: u16,
    cert: &mailgate_tests::dnssec::TestCert,
    pages: Pages,
    posts: Posts,
) -> Requests {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> =
        rustls::pki_types::CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let seen: Requests = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind((addr, port)).unwrap();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (cfg, pages, seen, posts) =
                (cfg.clone(), pages.clone(), seen2.clone(), posts.clone());
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut sock = c;
                let mut tls = rustls::Stream::new(&mut conn, &mut sock);
                let mut r = BufReader::new(&mut tls);
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut host = String::new();
                let (mut length, mut ctype) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    let Some((k, v)) = h.split_once(':') else {
                        continue;
                    };
                    match k.to_ascii_lowercase().as_str() {
                        "host" => host = v.trim().to_string(),
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        "content-type" => ctype = v.trim().to_string(),
                        _ => {}
                    }
                }
                if line.starts_with("POST ") {
                    let mut body = vec![0; length.min(1 << 20)];
                    if std::io::Read::read_exact(&mut r, &mut body).is_err() {
                        return;
                    }
                    posts.lock().unwrap().push((ctype, body));
                }
                seen.lock().unwrap().push(format!("{host} {path}"));
                let page = pages.lock().unwrap().get(&format!("{host}{path}")).cloned();
                let (status, ctype, body) =
                    page.unwrap_or(("404 Not Found".into(), "text/plain".into(), String::new()));
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nLocation: https://{host}/elsewhere\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                drop(r);
                let _ = tls.write_all(resp.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    seen
}

fn policy(mode: &str, mx: &str) -> (String, String, String) {
    (
        "200 OK".into(),
        "text/plain; charset=utf-8".into(),
        format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"),
    )
}

fn zone(good_id: &str, https_port: u16) -> String {
    let mut z = String::from(
        "$ORIGIN ststest.\n$TTL 300\n@ IN SOA ns.ststest. admin.ststest. 1 3600 600 86400 1\n@ IN NS ns.ststest.\nns IN A 127.0.0.1\n",
    );
    for (d, mx_ip) in [
        ("good", "127.0.0.91"),
        ("nomatch", "127.0.0.91"),
        ("badcert", "127.0.0.92"),
        ("testing", "127.0.0.93"),
        ("redirect", "127.0.0.91"),
        ("oversized", "127.0.0.91"),
    ] {
        let id = if d == "good" { good_id } else { "1" };
        z.push_str(&format!(
            "{d} IN MX 10 mx.{d}\nmx.{d} IN A {mx_ip}\n_mta-sts.{d} 1 IN TXT \"v=STSv1; id={id}\"\nmta-sts.{d} IN A 127.0.0.81\n"
        ));
    }
    // TLS reports for good.ststest: by mail to an Exim, and by POST.
    z.push_str(&format!(
        "_smtp._tls.good IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@reports.ststest,https://rua.ststest:{https_port}/report\"\nreports IN MX 10 mx.reports\nmx.reports IN A 127.0.0.91\nrua IN A 127.0.0.81\n"
    ));
    z
}

#[test]
fn mta_sts_policies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mailgate MTA-STS test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert.chain_pem).unwrap();
    let port = free_port();
    let https_port = free_port();
    // MX hosts: one with a certificate from the CA for the listed names,
    // one with a self-signed certificate.
    let good = ca.issue(&[
        "mx.good.ststest",
        "mx.nomatch.ststest",
        "mx.redirect.ststest",
        "mx.oversized.ststest",
    ]);
    let ea = EximServer::start_at(&["127.0.0.91"], port, "", &good.chain_pem, &good.key_pem);
    let bad = self_signed(&["mx.badcert.ststest", "mx.testing.ststest"]);
    let eb = EximServer::start_at(
        &["127.0.0.92", "127.0.0.93"],
        port,
        "",
        &bad.chain_pem,
        &bad.key_pem,
    );
    let names: Vec<String> = [
        "good",
        "nomatch",
        "badcert",
        "testing",
        "redirect",
        "oversized",
    ]
    .iter()
    .map(|d| format!("mta-sts.{d}.ststest"))
    .chain(std::iter::once("rua.ststest".to_string()))
    .collect();
    let web_cert = ca.issue(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let pages = Arc::new(Mutex::new(HashMap::new()));
    {
        let mut p = pages.lock().unwrap();
        let path = "/.well-known/mta-sts.txt";
        p.insert(
            format!("mta-sts.good.ststest{path}"),
            policy("enforce", "mx.good.ststest"),
        );
        p.insert(
            format!("mta-sts.nomatch.ststest{path}"),
            policy("enforce", "other.nomatch.ststest"),
        );
        p.insert(
            format!("mta-sts.badcert.ststest{path}"),
            policy("enforce", "*.badcert.ststest"),
        );
        p.insert(
            format!("mta-sts.testing.ststest{path}"),
            policy("testing", "other.testing.ststest"),
        );
        p.insert(
            format!("mta-sts.redirect.ststest{path}"),
            (
                "301 Moved Permanently".into(),
                "text/plain".into(),
                String::new(),
            ),
        );
        p.insert(
            "mta-sts.redirect.ststest/elsewhere".to_string(),
            policy("enforce", "other.redirect.ststest"),
        );
        let (s, t, mut body) = policy("enforce", "other.oversized.ststest");
        body.push_str(&format!("x-padding: {}\r\n", "x".repeat(70 * 1024)));
        p.insert(format!("mta-sts.oversized.ststest{path}"), (s, t, body));
    }
    pages.lock().unwrap().insert(
        format!("rua.ststest:{https_port}/report"),
        ("200 OK".into(), "text/plain".into(), String::new()),
    );
    let posts: Posts = Arc::new(Mutex::new(Vec::new()));
    let requests = https_server(
        "127.0.0.81",
        https_port,
        &web_cert,
        pages.clone(),
        posts.clone(),
    );
    let mut nsd = Nsd::start("ststest", &zone("1", https_port));
    let mut s = Server::start_with(
        "",
        &format!(
            "nameservers = [\"127.0.0.1:{}\"]\nport = {port}\nmta_sts_port = {https_port}\ntls_ca_file = \"{}\"\nretry_min = \"1h\"\npipe_connect = false\n",
            nsd.port,
            ca_file.display()
        ),
        "",
    );
    let count = |host: &str| {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(host))
            .count()
    };

    let id = s.submit_to("u@good.ststest");
    let l = s.wait_line(&id, " => ");
    assert!(
        l.contains("H=mx.good.ststest") && l.contains(" CV=yes "),
        "{l}"
    );
    let id = s.submit_to("u@nomatch.ststest");
    let l = s.wait_line(&id, " == ");
    assert!(
        l.contains("MTA-STS: mx.nomatch.ststest is not an MX host"),
        "{l}"
    );
    let id = s.submit_to("u@badcert.ststest");
    let l = s.wait_line(&id, " == ");
    assert!(
        l.contains("certificate not trusted") && l.contains("MTA-STS"),
        "{l}"
    );
    let id = s.submit_to("u@testing.ststest");
    let l = s.wait_line(&id, " => ");
    assert!(l.contains(" CV=no "), "{l}");
    // Refused policies count as none: the message goes to the MX the
    // refused policy does not list.
    for d in ["redirect", "oversized"] {
        let id = s.submit_to(&format!("u@{d}.ststest"));
        let l = s.wait_line(&id, " => ");
        assert!(l.contains(" CV=no "), "{d}: {l}");
    }
    assert_eq!(
        count("mta-sts.redirect.ststest /elsewhere"),
        0,
        "{:?}",
        requests.lock().unwrap()
    );
    assert_eq!(eb.lines(" <= a@local.test").len(), 1, "{}", eb.mainlog());

    tls_reports(&s, &ea, &posts, https_port);

    // Cached: no second fetch for the same id.
    assert_eq!(count("mta-sts.good.ststest"), 1);
    let id = s.submit_to("v@good.ststest");
    s.wait_line(&id, " => ");
    assert_eq!(count("mta-sts.good.ststest"), 1);
    // A new id fetches again, and the new policy applies.
    pages.lock().unwrap().insert(
        "mta-sts.good.ststest/.well-known/mta-sts.txt".into(),
        policy("enforce", "elsewhere.good.ststest"),
    );
    nsd.replace_zone(0, &zone("2", https_port));
    std::thread::sleep(Duration::from_secs(2));
    let id = s.submit_to("w@good.ststest");
    let l = s.wait_line(&id, " == ");
    assert!(l.contains("is not an MX host"), "{l}");
    assert_eq!(count("mta-sts.good.ststest"), 2);

    // After a restart, with the policy host answering nothing, the cached
    // policy still applies.
    pages.lock().unwrap().clear();
    s.restart();
    let id = s.submit_to("x@nomatch.ststest");
    let l = s.wait_line(&id, " == ");
    assert!(l.contains("is not an MX host"), "{l}");
    assert_eq!(ea.lines(" <= a@local.test").len(), 4, "{}", ea.mainlog());
}

/// TLS reports (RFC 8460) of the sessions above: each domain's sessions
/// under its MTA-STS policy with the failure's type (a testing policy's
/// failures count though the mail went); then good.ststest's report sent
/// by mail (accepted by Exim) and by POST, both read by parsedmarc.
fn tls_reports(s: &Server, ea: &EximServer, posts: &Posts, https_port: u16) {
    use mailgate_tests::tls_summary;
    for (d, want) in [
        ("good", "sts mx.good.ststest ok=1"),
        (
            "nomatch",
            "sts other.nomatch.ststest ok=0 validation-failure=1",
        ),
        (
            "badcert",
            "sts *.badcert.ststest ok=0 certificate-not-trusted=1",
        ),
        (
            "testing",
            "sts other.testing.ststest ok=0 validation-failure=1",
        ),
        ("redirect", "sts ok=0 sts-policy-fetch-error=1"),
        ("oversized", "sts ok=0 sts-policy-fetch-error=1"),
    ] {
        let r = s.tls_report(&format!("{d}.ststest"));
        assert_eq!(tls_summary(&r), vec![want.to_string()], "{d}: {r}");
    }
    let r = s.tls_report("good.ststest");
    let strings = r["policies"][0]["policy"]["policy-string"].to_string();
    assert!(
        strings.contains("mode: enforce") && strings.contains("mx: mx.good.ststest"),
        "{r}"
    );

    let (ok, out) = s.cli(&["report", "tls", "--domain", "good.ststest", "--send"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "good.ststest: sent to mailto:tlsrpt@reports.ststest, https://rua.ststest:{https_port}/report"
        )),
        "{out}"
    );
    // The report message reached Exim from our queue.
    let start = std::time::Instant::now();
    let line = loop {
        if let Some(l) = ea
            .lines(" <= postmaster@")
            .into_iter()
            .find(|l| l.contains("tlsrpt@reports.ststest"))
        {
            break l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}\n{}",
            ea.mainlog(),
            s.mainlog()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let exim_id = line.split_whitespace().nth(2).unwrap().to_string();
    let msg = ea.message(&exim_id);
    assert!(msg.contains("TLS-Report-Domain: good.ststest"), "{msg}");
    assert!(msg.contains("TLS-Report-Submitter: "), "{msg}");
    assert!(
        msg.contains("Content-Type: application/tlsrpt+gzip"),
        "{msg}"
    );
    let post = posts
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("a report POSTed");
    assert_eq!(post.0, "application/tlsrpt+gzip");

    // parsedmarc reads both.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.eml"), &msg).unwrap();
    std::fs::write(dir.path().join("report.json.gz"), &post.1).unwrap();
    let py = mailgate_tests::parsedmarc_python();
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(
            "import gzip, json, sys, parsedmarc\n\
             e = parsedmarc.parse_report_email(open(sys.argv[1]).read())\n\
             p = parsedmarc.parse_smtp_tls_report_json(gzip.decompress(open(sys.argv[2], 'rb').read()))\n\
             print(json.dumps({'email': e, 'post': p}, default=str))",
        )
        .arg(dir.path().join("report.eml"))
        .arg(dir.path().join("report.json.gz"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["email"]["report_type"], "smtp_tls", "{v}");
    for r in [&v["email"]["report"], &v["post"]] {
        let p = &r["policies"][0];
        assert_eq!(p["policy_domain"], "good.ststest", "{v}");
        assert_eq!(p["policy_type"], "sts", "{v}");
        assert_eq!(p["successful_session_count"], 1, "{v}");
        assert_eq!(p["failed_session_count"], 0, "{v}");
        assert!(
            r["report_id"]
                .as_str()
                .is_some_and(|id| id.contains("_good.ststest@")),
            "{v}"
        );
    }
}
