//! CPU per outbound TLS connection by certificate check: a full TLS 1.3
//! handshake in memory (client and server in one thread, the same
//! ECDSA P-256 leaf from a test CA) with no check (opportunistic), a PKIX
//! check (`verify`: chain to the CA, name) and a DANE-EE `3 1 1` check,
//! plus the checks alone. The DANE-verified connection's extra cost is the
//! difference between the handshakes. Then the server's side of the
//! cost: handshakes with an RSA-2048 and an ECDSA P-256 certificate, and
//! one CertificateVerify signature with each key (the RSA key is made by
//! `openssl genpkey`; ring cannot generate RSA keys).
//!
//!     cargo bench -p mailgate --bench tls_verify

use criterion::{Criterion, criterion_group, criterion_main};
use mailgate::config::{TlsLevel, TlsPolicy};
use mailgate::dns::Tlsa;
use mailgate::outbound::policy::Auth;
use mailgate::outbound::tls::{ClientTls, Verification};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;

struct Setup {
    server: Arc<rustls::ServerConfig>,
    tls: ClientTls,
    chain: Vec<CertificateDer<'static>>,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    spki_sha256: Vec<u8>,
}

fn setup() -> Setup {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["mx.bench.test".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let chain = vec![leaf.der().clone(), ca.der().clone()];
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        chain.clone(),
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    Setup {
        server: Arc::new(server),
        tls: ClientTls::new(false, None),
        chain,
        _dir: dir,
        spki_sha256: ring::digest::digest(&ring::digest::SHA256, &spki)
            .as_ref()
            .to_vec(),
        ca_file,
    }
}

fn verification(s: &Setup, kind: &str) -> Verification {
    let mut policy = TlsPolicy::level(TlsLevel::Verify);
    policy.ca_file = Some(s.ca_file.clone());
    let auth = match kind {
        "none" => Auth::None,
        "pkix" => Auth::Pkix,
        _ => Auth::Dane(vec![Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: s.spki_sha256.clone(),
        }]),
    };
    s.tls.verification(
        &auth,
        &policy,
        "mx.bench.test",
        "bench.test",
        &["mx.bench.test".to_string()],
    )
}

/// One full handshake, both sides; panics if it fails.
fn handshake(server: &Arc<rustls::ServerConfig>, client: &Arc<rustls::ClientConfig>) {
    let mut c = rustls::ClientConnection::new(
        Arc::clone(client),
        ServerName::try_from("mx.bench.test").unwrap(),
    )
    .unwrap();
    let mut s = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
}

fn bench(cr: &mut Criterion) {
    let s = setup();
    let addr = "192.0.2.1:25".parse().unwrap();
    let mut g = cr.benchmark_group("outbound TLS handshake");
    for kind in ["none", "pkix", "dane"] {
        let cfg = s
            .tls
            .config_for(addr, "mx.bench.test", verification(&s, kind));
        handshake(&s.server, &cfg);
        g.bench_function(kind, |b| b.iter(|| handshake(&s.server, &cfg)));
    }
    g.finish();
    let mut g = cr.benchmark_group("certificate check alone");
    let name = ServerName::try_from("mx.bench.test").unwrap();
    for kind in ["pkix", "dane"] {
        let v = verification(&s, kind);
        use rustls::client::danger::ServerCertVerifier;
        v.verifier
            .verify_server_cert(&s.chain[0], &s.chain[1..], &name, &[], UnixTime::now())
            .unwrap();
        g.bench_function(kind, |b| {
            b.iter(|| {
                v.verifier
                    .verify_server_cert(&s.chain[0], &s.chain[1..], &name, &[], UnixTime::now())
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// A server configuration with a self-signed certificate for `key`.
fn server_with(key: rcgen::KeyPair) -> (Arc<rustls::ServerConfig>, PrivateKeyDer<'static>) {
    let cert = rcgen::CertificateParams::new(vec!["mx.bench.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der.clone_key())
    .unwrap();
    (Arc::new(cfg), der)
}

fn rsa_key() -> rcgen::KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    let pem = String::from_utf8(out.stdout).unwrap();
    rcgen::KeyPair::from_pem(&pem).unwrap()
}

fn bench_server(cr: &mut Criterion) {
    let s = setup();
    let addr = "192.0.2.1:25".parse().unwrap();
    let client = s
        .tls
        .config_for(addr, "mx.bench.test", verification(&s, "none"));
    let mut g = cr.benchmark_group("server key");
    for (name, key) in [
        ("rsa2048", rsa_key()),
        ("ecdsa-p256", rcgen::KeyPair::generate().unwrap()),
    ] {
        let (server, der) = server_with(key);
        handshake(&server, &client);
        g.bench_function(format!("handshake {name}"), |b| {
            b.iter(|| handshake(&server, &client))
        });
        let signer = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .unwrap()
            .choose_scheme(&[
                rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
                rustls::SignatureScheme::RSA_PSS_SHA256,
            ])
            .unwrap();
        let msg = [7u8; 130];
        g.bench_function(format!("sign {name}"), |b| {
            b.iter(|| signer.sign(&msg).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_server);
criterion_main!(benches);
