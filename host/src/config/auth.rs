//! `[auth]`: message authentication checks at acceptance (SPF, iprev, DKIM
//! verification) and the Authentication-Results header they produce.

use serde::Deserialize;

/// What to do with a message whose SPF MAIL FROM result is `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfFail {
    /// Record it only.
    Accept,
    /// Refuse MAIL FROM with 550 5.7.23.
    Reject,
}

/// What to do on an SPF `temperror` (DNS trouble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfTempError {
    /// Record it only.
    Accept,
    /// Answer MAIL FROM with 451 4.7.24.
    Defer,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Run the checks and write Authentication-Results.
    pub enabled: bool,
    /// Our authserv-id (default: the host name). Incoming
    /// Authentication-Results headers with it are removed.
    pub authserv_id: Option<String>,
    /// SPF `fail` for MAIL FROM.
    pub spf_fail: SpfFail,
    /// SPF `temperror`.
    pub spf_temperror: SpfTempError,
    /// Also add a Received-SPF header.
    pub received_spf: bool,
    /// DKIM signatures checked per message (the first ones).
    pub dkim_max_signatures: usize,
    /// Time each check (iprev, SPF for one identity, DKIM of one message)
    /// may take; one that runs out is a `temperror`.
    pub timeout: super::Seconds,
    /// Count what the DMARC plugin decides for domains that ask for
    /// aggregate reports (`rua`) and mail them each day (RFC 7489 §7.2).
    pub dmarc_reports: bool,
    /// `org_name` of the reports (default: the host name).
    pub report_organization: Option<String>,
    /// `email` of the reports and their From (default
    /// `postmaster@HOSTNAME`).
    pub report_contact: Option<String>,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            enabled: true,
            authserv_id: None,
            spf_fail: SpfFail::Accept,
            spf_temperror: SpfTempError::Accept,
            received_spf: false,
            dkim_max_signatures: 10,
            timeout: super::Seconds(20),
            dmarc_reports: false,
            report_organization: None,
            report_contact: None,
        }
    }
}

/// The default list of header fields a DKIM signature covers: those a
/// reader sees and those that say what the message is (RFC 6376 §5.4.1),
/// without the ones relays add or change in transit.
pub const DKIM_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Sender",
];

/// `[[dkim]]`: one signing key. Mail from relay clients whose From domain
/// is `domain` or one of its subdomains is signed with every key of the
/// most specific such domain (an RSA and an Ed25519 key of one domain give
/// two signatures).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`): the key is published at
    /// `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// PEM private key: RSA (PKCS#1 or PKCS#8) gives rsa-sha256, Ed25519
    /// (PKCS#8) ed25519-sha256. `mailgate dkim keygen` writes one.
    pub key: std::path::PathBuf,
    /// Header fields to sign (default [`DKIM_HEADERS`]); `From` is always
    /// signed.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Sign each listed field once more than it occurs, so that nobody can
    /// add another (RFC 6376 §8.15).
    #[serde(default = "yes")]
    pub oversign: bool,
    /// Signature lifetime (`x=`); none by default.
    #[serde(default)]
    pub expire: Option<super::Seconds>,
}

fn yes() -> bool {
    true
}

/// A signing key as read from its PEM file.
pub enum KeyMaterial {
    /// RSA, PKCS#1 or PKCS#8 DER.
    Rsa(rustls::pki_types::PrivateKeyDer<'static>),
    /// Ed25519, PKCS#8 DER (v1 as OpenSSL writes it, or v2).
    Ed25519(Vec<u8>),
}

impl DkimKey {
    /// Read and check the key file: an RSA key of 2048 to 8192 bits or
    /// an Ed25519 key; otherwise a reason naming the file.
    pub fn read_key(&self) -> Result<KeyMaterial, String> {
        read_signing_key(&self.key)
    }

    /// Problems with the entry itself (before the key file is read).
    pub fn problem(&self) -> Option<String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !name_ok(&self.domain) {
            return Some(format!(
                "dkim domain {:?} is not a domain name",
                self.domain
            ));
        }
        if !name_ok(&self.selector) {
            return Some(format!(
                "dkim selector {:?} is not a valid selector",
                self.selector
            ));
        }
        if let Some(h) = &self.headers
            && let Some(bad) = h
                .iter()
                .find(|n| n.is_empty() || n.bytes().any(|b| !(33..=126).contains(&b) || b == b':'))
        {
            return Some(format!("dkim header name {bad:?} is not a field name"));
        }
        None
    }
}

/// Read and check a signing key file (DKIM, ARC): an RSA key of 2048 to 8192 bits or
/// an Ed25519 key; otherwise a reason naming the file.
pub fn read_signing_key(key: &std::path::Path) -> Result<KeyMaterial, String> {
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let path = key.display();
    let pem = std::fs::read(key).map_err(|e| format!("key {path}: {e}"))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("key {path}: not a PEM private key ({e})"))?;
    let bytes = der.secret_der();
    let rsa = match &der {
        PrivateKeyDer::Pkcs1(_) => ring::rsa::KeyPair::from_der(bytes),
        _ => ring::rsa::KeyPair::from_pkcs8(bytes),
    };
    match rsa {
        Ok(_) => return Ok(KeyMaterial::Rsa(der.clone_key())),
        // ring signs with RSA keys of 2048 to 8192 bits only.
        Err(e) if matches!(e.to_string().as_str(), "TooSmall" | "TooLarge") => {
            return Err(format!(
                "key {path}: RSA keys must have 2048 to 8192 bits ({e})"
            ));
        }
        Err(_) => {}
    }
    if matches!(der, PrivateKeyDer::Pkcs8(_))
        && ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes).is_ok()
    {
        return Ok(KeyMaterial::Ed25519(bytes.to_vec()));
    }
    Err(format!(
        "key {path}: neither an RSA nor an Ed25519 private key"
    ))
}
