//! `mailgate dkim keygen`: a new signing key as PEM and the DNS TXT record
//! that publishes it (RFC 6376 §3.6.1; Ed25519 per RFC 8463 §4).

use base64::Engine;

/// A new key: the private key PEM and the TXT record text.
pub struct NewKey {
    /// PEM (`RSA PRIVATE KEY` for RSA, `PRIVATE KEY` PKCS#8 for Ed25519).
    pub pem: String,
    /// `v=DKIM1; k=...; p=...`
    pub record: String,
    /// "rsa 2048" or "ed25519".
    pub kind: String,
}

/// Generate an RSA key of `bits` bits, or an Ed25519 key.
pub fn generate(ed25519: bool, bits: usize) -> Result<NewKey, String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    let b64 = base64::engine::general_purpose::STANDARD;
    if ed25519 {
        let k = DkimKeyPair::generate_ed25519().map_err(|e| e.to_string())?;
        return Ok(NewKey {
            pem: pem("PRIVATE KEY", &pkcs8_v1(k.private_key())?),
            record: format!("v=DKIM1; k=ed25519; p={}", b64.encode(k.public_key())),
            kind: "ed25519".into(),
        });
    }
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "RSA keys of {bits} bits are not supported: use 2048 to 8192 (2048 is usual)"
        ));
    }
    let k = DkimKeyPair::generate_rsa(bits).map_err(|e| e.to_string())?;
    Ok(NewKey {
        pem: pem("RSA PRIVATE KEY", k.private_key()),
        record: format!("v=DKIM1; k=rsa; p={}", b64.encode(rsa_spki(k.public_key()))),
        kind: format!("rsa {bits}"),
    })
}

/// The record as a zone file line: strings of at most 255 octets
/// (RFC 1035 §3.3), which resolvers join again.
pub fn zone_line(domain: &str, selector: &str, record: &str) -> String {
    let parts: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{}. IN TXT ( {} )",
        domain.trim_end_matches('.'),
        parts.join(" ")
    )
}

/// ring writes PKCS#8 v2 (seed and public key), which OpenSSL 3.0 does
/// not read; other tools get the RFC 8410 v1 form (the seed only).
fn pkcs8_v1(v2: &[u8]) -> Result<Vec<u8>, String> {
    const V1: &[u8] = &[
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    // v2: SEQUENCE, version 1, the same AlgorithmIdentifier, then the
    // seed as OCTET STRING in OCTET STRING at offset 16.
    match v2.get(16..48) {
        Some(seed) if v2.get(5..16) == Some(&V1[5..16]) => {
            let mut out = V1.to_vec();
            out.extend_from_slice(seed);
            Ok(out)
        }
        _ => Err("unexpected Ed25519 key encoding".into()),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// An RSA public key (PKCS#1 DER) as SubjectPublicKeyInfo, the form
/// verifiers expect in `p=`.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut inner = ALG.to_vec();
    inner.extend(tlv(0x03, &bits));
    tlv(0x30, &inner)
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_key_signs_and_record_has_the_raw_key() {
        let k = generate(true, 0).unwrap();
        assert!(k.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let p = k.record.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn rsa_record_is_spki_that_ring_reads() {
        let k = generate(false, 2048).unwrap();
        assert!(k.pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let p = k.record.strip_prefix("v=DKIM1; k=rsa; p=").unwrap();
        let spki = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        // The SPKI's BIT STRING holds the PKCS#1 key ring can parse.
        assert_eq!(&spki[..5], &[0x30, 0x82, 0x01, 0x22, 0x30]);
        assert_eq!(
            zone_line("example.com", "s1", "x"),
            "s1._domainkey.example.com. IN TXT ( \"x\" )"
        );
        let long = "a".repeat(300);
        assert!(zone_line("e.test.", "s", &long).ends_with(&format!(
            "\"{}\" \"{}\" )",
            "a".repeat(255),
            "a".repeat(45)
        )));
        assert!(generate(false, 1024).is_err());
    }
}
