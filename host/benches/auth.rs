//! CPU per message of the host's authentication checks, on a 1 KiB
//! message: DKIM signing and verification with an RSA-2048 and an Ed25519
//! key, SPF for a MAIL FROM domain (`ip4:` pass, one TXT lookup), iprev,
//! removing forged Authentication-Results, and the whole end-of-data step
//! (`Checks::at_data`: strip, verify one signature). DNS answers come from
//! an in-process zone server and then from the resolver's cache, as for a
//! busy gateway; the first lookup of each name is not measured.
//!
//!     cargo bench -p mailgate --bench auth

use criterion::{Criterion, criterion_group, criterion_main};
use mailgate::config::auth::{Auth, DkimKey};
use mailgate::dns::{Dns, serve, zone::Zone};
use mailgate::inbound::auth::sign::Signer;
use mailgate::inbound::auth::{Authenticator, Checks, keygen, results};
use std::net::IpAddr;
use std::sync::Arc;

struct Setup {
    rt: tokio::runtime::Runtime,
    auth: Authenticator,
    rsa: Signer,
    ed: Signer,
    message: Vec<u8>,
    _server: serve::ZoneServer,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rsa_key = keygen::generate(false, 2048).unwrap();
    let ed_key = keygen::generate(true, 0).unwrap();
    std::fs::write(dir.path().join("rsa.pem"), &rsa_key.pem).unwrap();
    std::fs::write(dir.path().join("ed.pem"), &ed_key.pem).unwrap();
    let zone = format!(
        "$ORIGIN bench.test.\n$TTL 3600\n@ IN SOA ns admin 1 60 60 60 60\n@ IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\nmx IN A 192.0.2.5\n5.2.0.192.in-addr.arpa. IN PTR mx.bench.test.\n{}\n{}\n",
        keygen::zone_line("bench.test", "rsa", &rsa_key.record),
        keygen::zone_line("bench.test", "ed", &ed_key.record)
    );
    let zone = Arc::new(Zone::parse(&zone, "bench").unwrap());
    let server = rt.block_on(serve::start(zone)).unwrap();
    let dns = Dns::new(&[server.addr], None).unwrap();
    let auth = Authenticator::new(dns.shared_resolver(), "mx.gateway.test".into(), 10);
    let key = |sel: &str, file: &str| DkimKey {
        domain: "bench.test".into(),
        selector: sel.into(),
        key: dir.path().join(file),
        headers: None,
        oversign: true,
        expire: None,
    };
    let rsa = Signer::new(&[key("rsa", "rsa.pem")]).unwrap();
    let ed = Signer::new(&[key("ed", "ed.pem")]).unwrap();
    let body: String = (0..14)
        .map(|i| format!("Line {i:02} of a message body of about one kilobyte in all.\r\n"))
        .collect();
    let message = format!(
        "From: Alice <alice@bench.test>\r\nTo: bob@rcpt.test\r\nSubject: a benchmark message\r\nDate: Tue, 1 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bench@bench.test>\r\nAuthentication-Results: mx.gateway.test; spf=pass (forged)\r\n\r\n{body}"
    )
    .into_bytes();
    Setup {
        rt,
        auth,
        rsa,
        ed,
        message,
        _server: server,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let ip: IpAddr = "192.0.2.5".parse().unwrap();
    let cfg = Auth::default();
    let signed = |signer: &Signer| {
        let mut m = s.message.clone();
        signer.sign_into(&mut m).unwrap();
        m
    };
    let by_rsa = signed(&s.rsa);
    let by_ed = signed(&s.ed);
    // Warm the resolver cache (and check that the signatures verify).
    for m in [&by_rsa, &by_ed] {
        let msg = s.auth.parse(m).unwrap();
        let out = s.rt.block_on(s.auth.dkim(&msg));
        assert!(
            matches!(out[0].result(), mail_auth::DkimResult::Pass),
            "{:?}",
            out[0].result()
        );
    }
    let spf =
        s.rt.block_on(s.auth.spf_mail(ip, "mx.bench.test", "alice@bench.test"));
    assert_eq!(spf.result(), mail_auth::SpfResult::Pass);
    let _ = s.rt.block_on(s.auth.iprev(ip));

    let mut g = c.benchmark_group("dkim");
    g.bench_function("sign rsa-2048", |b| {
        b.iter(|| s.rsa.sign(&s.message, "bench.test").unwrap())
    });
    g.bench_function("sign ed25519", |b| {
        b.iter(|| s.ed.sign(&s.message, "bench.test").unwrap())
    });
    for (name, m) in [("verify rsa-2048", &by_rsa), ("verify ed25519", &by_ed)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let msg = s.auth.parse(m).unwrap();
                s.rt.block_on(s.auth.dkim(&msg)).len()
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("checks");
    g.bench_function("spf mail from (ip4 pass)", |b| {
        b.iter(|| {
            s.rt.block_on(s.auth.spf_mail(ip, "mx.bench.test", "alice@bench.test"))
        })
    });
    g.bench_function("iprev", |b| b.iter(|| s.rt.block_on(s.auth.iprev(ip))));
    g.bench_function("strip forged A-R", |b| {
        b.iter(|| results::strip_own(&by_rsa, "mx.gateway.test"))
    });
    g.bench_function("at_data (strip + verify rsa-2048)", |b| {
        b.iter(|| {
            let mut ch = Checks::default();
            s.rt.block_on(ch.at_data(&s.auth, &cfg, &by_rsa)).removed
        })
    });
    g.finish();
}

/// The plugins' `crypto` capability on its own: what ARC's two
/// verifications and a body hash cost in the host.
fn crypto(c: &mut Criterion) {
    use base64::Engine;
    use mailgate::plugin::bindings::mailgate::plugin::crypto::{Algorithm, Canonicalization};
    use mailgate::plugin::host::crypto;
    let key = mailgate::inbound::auth::keygen::generate(false, 2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    std::fs::write(&pem, &key.pem).unwrap();
    let keys = crypto::load_keys(&[("k".to_string(), pem)].into_iter().collect()).unwrap();
    let data = vec![b'x'; 600];
    let sig = keys["k"].sign(&data).unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(key.record.split("p=").nth(1).unwrap())
        .unwrap();
    let body = vec![b'y'; 1024];
    let mut g = c.benchmark_group("plugin crypto capability");
    g.bench_function("verify rsa-sha256 2048 (SPKI key)", |b| {
        b.iter(|| assert!(crypto::verify(Algorithm::RsaSha256, &spki, &data, &sig).unwrap()))
    });
    g.bench_function("body hash relaxed 1 KiB", |b| {
        b.iter(|| crypto::body_hash(&body, Canonicalization::Relaxed, Algorithm::RsaSha256))
    });
    g.finish();
}

criterion_group!(benches, bench, crypto);
criterion_main!(benches);
