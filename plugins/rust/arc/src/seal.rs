//! A new ARC set for an outgoing copy (RFC 8617 §5.1): the
//! ARC-Authentication-Results copied from our Authentication-Results, an
//! ARC-Message-Signature over the header fields present and the body, and
//! an ARC-Seal over every set. Signing goes through [`Signer`] (the host
//! holds the key).

use crate::chain::{self, Alg, Crypto, Cv, MAX_INSTANCES};
use crate::fields::{self, Field};
use base64::Engine;

/// The header fields an AMS signs when present (never ARC-Seal).
pub const AMS_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-post",
    "dkim-signature",
];

/// Sealing settings.
#[derive(Debug, Clone)]
pub struct Sealer {
    /// `d=`: the ADMD that seals.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The algorithm of the host-held key.
    pub alg: Alg,
    /// `t=` now, in seconds since the epoch (none: no `t=`).
    pub now: Option<u64>,
    /// `x=` this many seconds after `t=`.
    pub expire: Option<u64>,
    /// Our authserv-id: the Authentication-Results field to copy.
    pub authserv_id: String,
}

/// Signing with the host-held key.
pub trait Signer {
    fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>, String>;
}

/// Why no set is added.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSeal {
    /// The chain is already marked failed (RFC 8617 §5.1.2: only one
    /// set with cv=fail).
    ChainFailed,
    /// 50 sets already.
    Full,
    /// No Authentication-Results field with our authserv-id.
    NoResults,
    /// Signing or hashing failed.
    Error(String),
}

fn authserv_id(value: &str) -> &str {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
}

/// The `arc=` result our Authentication-Results recorded at reception.
pub fn recorded_arc(ar: &str) -> Option<Cv> {
    ar.split(';').skip(1).find_map(|e| {
        let r = e.trim().strip_prefix("arc=")?;
        let word: String = r.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        Some(match word.as_str() {
            "pass" => Cv::Pass,
            "none" => Cv::None,
            _ => Cv::Fail,
        })
    })
}

/// Build the new set: the three fields (name, value) in the order they go
/// on top of the message (ARC-Seal first). `received_cv` is the chain's
/// state at reception; none: validate it now.
pub fn seal(
    s: &Sealer,
    all: &[Field],
    received_cv: Option<Cv>,
    c: &mut dyn Crypto,
    signer: &mut dyn Signer,
) -> Result<Vec<(String, String)>, NoSeal> {
    let sets = chain::sets(all).unwrap_or_default();
    let n = sets.len() as u32;
    if let Some(last) = sets.last()
        && chain::cv_of(last.seal) == Some(Cv::Fail)
    {
        return Err(NoSeal::ChainFailed);
    }
    if n >= MAX_INSTANCES {
        return Err(NoSeal::Full);
    }
    let ar = all
        .iter()
        .filter(|f| f.name.trim().eq_ignore_ascii_case("Authentication-Results"))
        .map(|f| f.value().split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|v| authserv_id(v).eq_ignore_ascii_case(&s.authserv_id))
        .ok_or(NoSeal::NoResults)?;
    let cv = match (n, received_cv.or_else(|| recorded_arc(&ar))) {
        (0, _) => Cv::None,
        (_, Some(Cv::Pass)) => Cv::Pass,
        (_, Some(_)) => Cv::Fail,
        (_, None) => match chain::validate(c, all).cv {
            Cv::Pass => Cv::Pass,
            _ => Cv::Fail,
        },
    };
    let i = n + 1;
    let b64 = base64::engine::general_purpose::STANDARD;
    let err = NoSeal::Error;
    let aar = Field {
        name: "ARC-Authentication-Results".into(),
        raw_value: if ar.len() > 900 {
            format!(" i={i};\r\n\t{}", ar.replace("; ", ";\r\n\t"))
        } else {
            format!(" i={i}; {ar}")
        },
    };
    let mut times = String::new();
    if let Some(t) = s.now {
        times.push_str(&format!("; t={t}"));
        if let Some(x) = s.expire {
            times.push_str(&format!("; x={}", t + x));
        }
    }
    let names: Vec<String> = AMS_HEADERS
        .iter()
        .filter(|n| all.iter().any(|f| f.name.trim().eq_ignore_ascii_case(n)))
        .map(|n| n.to_string())
        .collect();
    let bh = b64.encode(c.body_hash(true, s.alg).map_err(err)?);
    let ams_head = format!(
        " i={i}; a={}; c=relaxed/relaxed; d={}; s={}{times};\r\n\th={};\r\n\tbh={bh}; b=",
        s.alg.name(),
        s.domain,
        s.selector,
        names.join(":")
    );
    let mut ams = Field {
        name: "ARC-Message-Signature".into(),
        raw_value: ams_head.clone(),
    };
    let mut data = vec![];
    for f in fields::select(all, &names) {
        data.extend(f.canonical(true));
    }
    data.extend(fields::without_b(&ams, true));
    ams.raw_value = format!(
        "{ams_head}{}",
        fold(&b64.encode(signer.sign(&data).map_err(err)?))
    );
    let seal_head = format!(
        " i={i}; a={}; cv={}; d={}; s={}{};\r\n\tb=",
        s.alg.name(),
        cv.name(),
        s.domain,
        s.selector,
        s.now.map(|t| format!("; t={t}")).unwrap_or_default()
    );
    let mut new = Field {
        name: "ARC-Seal".into(),
        raw_value: seal_head.clone(),
    };
    let mut with_new: Vec<chain::Set<'_>> = sets.clone();
    with_new.push(chain::Set {
        instance: i,
        aar: &aar,
        ams: &ams,
        seal: &new,
    });
    let input = chain::seal_input(&with_new, i, &new);
    drop(with_new);
    new.raw_value = format!(
        "{seal_head}{}",
        fold(&b64.encode(signer.sign(&input).map_err(err)?))
    );
    Ok([new, ams, aar]
        .into_iter()
        .map(|f| (f.name, f.raw_value.trim_start().to_string()))
        .collect())
}

/// Base64 folded into lines of 72 characters.
fn fold(b64: &str) -> String {
    b64.as_bytes()
        .chunks(72)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\r\n\t")
}
