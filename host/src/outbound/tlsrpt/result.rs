//! What one outbound connection contributes to a TLS report (RFC 8460
//! §4.3): the policy it was made under (type, the policy text or TLSA
//! records, the MX hosts) and whether it succeeded or which failure it met.

use serde::{Deserialize, Serialize};

/// RFC 8460 §4.3's failure types, with their report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    /// The MX did not offer STARTTLS (or refused it) where TLS was due.
    StarttlsNotSupported,
    /// The certificate does not name the host the policy requires.
    CertificateHostMismatch,
    /// The certificate (or one in its chain) is out of date.
    CertificateExpired,
    /// The chain does not lead to a trusted CA.
    CertificateNotTrusted,
    /// Any other TLS or validation failure.
    ValidationFailure,
    /// No TLSA record matched the server's chain.
    TlsaInvalid,
    /// The TLSA lookup failed or did not validate (SERVFAIL, bogus).
    DnssecInvalid,
    /// The policy demands DANE and the host has no secure TLSA records.
    DaneRequired,
    /// The MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// The MTA-STS record or policy could not be parsed.
    StsPolicyInvalid,
    /// The MTA-STS policy host's certificate did not validate.
    StsWebpkiInvalid,
}

impl ResultType {
    /// The name in reports (`certificate-expired`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// The class of a webpki certificate error.
    pub fn of_webpki(e: &webpki::Error) -> ResultType {
        match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                ResultType::CertificateExpired
            }
            webpki::Error::UnknownIssuer => ResultType::CertificateNotTrusted,
            webpki::Error::CertNotValidForName(_) => ResultType::CertificateHostMismatch,
            _ => ResultType::ValidationFailure,
        }
    }
}

/// Which kind of policy a connection was made under (RFC 8460 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    /// DANE: the MX host's secure TLSA records.
    Tlsa,
    /// The domain's MTA-STS policy (enforce or testing).
    Sts,
    /// Neither.
    NoPolicyFound,
}

impl PolicyType {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyType::Tlsa => "tlsa",
            PolicyType::Sts => "sts",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

/// One policy as a report names it: sessions under equal policies are
/// counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyId {
    /// The kind.
    pub kind: PolicyType,
    /// The MTA-STS policy's lines, or the TLSA records in presentation
    /// form (empty for `no-policy-found` or a set that could not be read).
    pub strings: Vec<String>,
    /// The MTA-STS policy's `mx` patterns, or the MX host of a TLSA set.
    pub mx_host: Vec<String>,
}

impl PolicyId {
    /// No policy.
    pub fn none() -> PolicyId {
        PolicyId {
            kind: PolicyType::NoPolicyFound,
            strings: vec![],
            mx_host: vec![],
        }
    }

    /// The TLSA policy of MX host `host` (records in presentation form).
    pub fn tlsa(host: &str, records: &[crate::dns::Tlsa]) -> PolicyId {
        let mut strings: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {} {}", r.usage, r.selector, r.matching, hex(&r.data)))
            .collect();
        strings.sort();
        PolicyId {
            kind: PolicyType::Tlsa,
            strings,
            mx_host: vec![host.trim_end_matches('.').to_ascii_lowercase()],
        }
    }

    /// An MTA-STS policy (`None`: one that could not be obtained).
    pub fn sts(p: Option<&crate::outbound::mta_sts::Policy>) -> PolicyId {
        match p {
            Some(p) => PolicyId {
                kind: PolicyType::Sts,
                strings: p.lines(),
                mx_host: p.mx.clone(),
            },
            None => PolicyId {
                kind: PolicyType::Sts,
                strings: vec![],
                mx_host: vec![],
            },
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A failure as a report groups it: sessions with equal details are
/// counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FailureDetail {
    /// The failure type.
    pub result: ResultType,
    /// Our address on the connection, when one was made.
    pub sending_ip: Option<String>,
    /// The MX host's name.
    pub receiving_mx: Option<String>,
    /// The MX host's address.
    pub receiving_ip: Option<String>,
    /// A short reason (the verifier's or the server's words).
    pub reason: Option<String>,
}

/// What one connection (or one attempt that did not get as far) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// TLS was established as the policy asks.
    Success,
    /// It failed thus.
    Failure(FailureDetail),
}

/// Shorten a failure text to something fit for a report's
/// `failure-reason-code` (one line, at most 200 characters).
pub fn reason_code(text: &str) -> String {
    let one: String = text
        .split(['\r', '\n'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    one.trim().to_string()
}
