//! ARC chain validation (RFC 8617 §5.2), free of host calls: signatures,
//! body hashes and key records come through [`Crypto`], so that the rules
//! are tested natively.

use crate::fields::{self, Field, tag, tags};

/// The most ARC sets a chain may have (RFC 8617 §4.2.1).
pub const MAX_INSTANCES: u32 = 50;

/// Signature algorithms ARC uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RsaSha256,
    Ed25519Sha256,
}

impl Alg {
    /// Parse an `a=` value (rsa-sha1 is not allowed in ARC).
    pub fn parse(s: &str) -> Option<Alg> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rsa-sha256" => Some(Alg::RsaSha256),
            "ed25519-sha256" => Some(Alg::Ed25519Sha256),
            _ => None,
        }
    }

    /// The `a=` value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RsaSha256 => "rsa-sha256",
            Alg::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Alg::RsaSha256 => "rsa",
            Alg::Ed25519Sha256 => "ed25519",
        }
    }
}

/// What validation needs from the host.
pub trait Crypto {
    /// The TXT records at `name` (texts); an error is a failed lookup.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, String>;
    /// Verify `sig` over `data` with a DKIM public key.
    fn verify(&mut self, alg: Alg, key: &[u8], data: &[u8], sig: &[u8]) -> Result<bool, String>;
    /// The message's canonical body hash.
    fn body_hash(&mut self, relaxed: bool, alg: Alg) -> Result<Vec<u8>, String>;
}

/// The chain validation status (`cv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cv {
    None,
    Pass,
    Fail,
}

impl Cv {
    /// As `cv=` and `arc=` write it.
    pub fn name(self) -> &'static str {
        match self {
            Cv::None => "none",
            Cv::Pass => "pass",
            Cv::Fail => "fail",
        }
    }
}

/// One ARC set.
#[derive(Debug, Clone)]
pub struct Set<'a> {
    pub instance: u32,
    pub aar: &'a Field,
    pub ams: &'a Field,
    pub seal: &'a Field,
}

/// The result of validating a message's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub cv: Cv,
    /// The number of ARC sets (0 for none).
    pub instances: u32,
    /// The sealing domains (`d=` of each ARC-Seal), newest first.
    pub domains: Vec<String>,
    /// The oldest instance whose AMS still verifies (0: all do), for a
    /// passing chain.
    pub oldest_pass: u32,
    /// Why the chain failed.
    pub reason: Option<String>,
}

impl Validation {
    fn fail(instances: u32, reason: String) -> Validation {
        Validation {
            cv: Cv::Fail,
            instances,
            domains: vec![],
            oldest_pass: 0,
            reason: Some(reason),
        }
    }
}

/// A parsed tag list.
type Tags = Vec<(String, String)>;

/// The instance of an ARC field and its tags (of an AAR, only its first
/// part, "i=N", is a tag list).
fn instance_of(f: &Field, aar: bool) -> Result<(u32, Tags), String> {
    let v = f.value();
    let t = if aar {
        tags(v.split(';').next().unwrap_or("")).map_err(|e| e.0)?
    } else {
        tags(&v).map_err(|e| e.0)?
    };
    let i = tag(&t, "i").ok_or_else(|| format!("{} without i=", f.name.trim()))?;
    let i = i
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_INSTANCES).contains(n))
        .ok_or_else(|| format!("{}: bad instance {i:?}", f.name.trim()))?;
    Ok((i, t))
}

/// A set with the tags of its AMS and seal, parsed once for every check.
struct Parsed<'a> {
    set: Set<'a>,
    ams: Tags,
    seal: Tags,
}

/// Group the message's ARC fields into sets, in instance order, checking
/// the structure (RFC 8617 §5.2 steps 1-3): one of each field per
/// instance, no gaps, at most 50.
pub fn sets(fields: &[Field]) -> Result<Vec<Set<'_>>, String> {
    Ok(parsed(fields)?.into_iter().map(|p| p.set).collect())
}

fn parsed(fields: &[Field]) -> Result<Vec<Parsed<'_>>, String> {
    let mut aar: Vec<(u32, &Field, Tags)> = vec![];
    let mut ams: Vec<(u32, &Field, Tags)> = vec![];
    let mut seal: Vec<(u32, &Field, Tags)> = vec![];
    for f in fields {
        let n = f.name.trim();
        let is_aar = n.eq_ignore_ascii_case("ARC-Authentication-Results");
        let list = if is_aar {
            &mut aar
        } else if n.eq_ignore_ascii_case("ARC-Message-Signature") {
            &mut ams
        } else if n.eq_ignore_ascii_case("ARC-Seal") {
            &mut seal
        } else {
            continue;
        };
        if list.len() >= MAX_INSTANCES as usize {
            return Err(format!("more than {MAX_INSTANCES} ARC sets"));
        }
        let (i, t) = instance_of(f, is_aar)?;
        if list.iter().any(|(j, ..)| *j == i) {
            return Err(format!("two {} fields with i={i}", f.name.trim()));
        }
        list.push((i, f, t));
    }
    let n = seal.len().max(aar.len()).max(ams.len()) as u32;
    let mut out = vec![];
    for i in 1..=n {
        fn find<'f>(
            l: &mut [(u32, &'f Field, Tags)],
            i: u32,
            what: &str,
        ) -> Result<(&'f Field, Tags), String> {
            l.iter_mut()
                .find(|(j, ..)| *j == i)
                .map(|(_, f, t)| (*f, std::mem::take(t)))
                .ok_or_else(|| format!("ARC set {i} has no {what}"))
        }
        let (aar_f, _) = find(&mut aar, i, "ARC-Authentication-Results")?;
        let (ams_f, ams_t) = find(&mut ams, i, "ARC-Message-Signature")?;
        let (seal_f, seal_t) = find(&mut seal, i, "ARC-Seal")?;
        out.push(Parsed {
            set: Set {
                instance: i,
                aar: aar_f,
                ams: ams_f,
                seal: seal_f,
            },
            ams: ams_t,
            seal: seal_t,
        });
    }
    Ok(out)
}

/// A DKIM key record for `s=`/`d=` (RFC 6376 §3.6.1) of algorithm `alg`.
fn key(c: &mut dyn Crypto, t: &[(String, String)], alg: Alg) -> Result<Vec<u8>, String> {
    let d = tag(t, "d").ok_or("no d=")?;
    let s = tag(t, "s").ok_or("no s=")?;
    let name = format!("{s}._domainkey.{d}");
    let records = c.txt(&name)?;
    let rec = records
        .iter()
        .find_map(|r| tags(r).ok())
        .ok_or_else(|| format!("no key record at {name}"))?;
    if tag(&rec, "v").is_some_and(|v| v != "DKIM1") {
        return Err(format!("{name}: not a DKIM1 key record"));
    }
    let k = tag(&rec, "k").unwrap_or("rsa");
    if !k.eq_ignore_ascii_case(alg.key_type()) {
        return Err(format!("{name}: a k={k} key cannot verify {}", alg.name()));
    }
    let p = tag(&rec, "p").ok_or_else(|| format!("{name}: no p="))?;
    if p.is_empty() {
        return Err(format!("{name}: the key is revoked"));
    }
    fields::base64(p).ok_or_else(|| format!("{name}: p= is not base64"))
}

/// Verify an ARC-Message-Signature (a DKIM signature without `v=`).
pub fn verify_ams(c: &mut dyn Crypto, all: &[Field], ams: &Field) -> Result<(), String> {
    let t = tags(&ams.value()).map_err(|e| e.0)?;
    verify_ams_tagged(c, all, ams, &t)
}

/// [`verify_ams`] with the AMS's tags already parsed.
fn verify_ams_tagged(
    c: &mut dyn Crypto,
    all: &[Field],
    ams: &Field,
    t: &[(String, String)],
) -> Result<(), String> {
    let alg = Alg::parse(tag(t, "a").unwrap_or("")).ok_or("AMS: unsupported a=")?;
    if tag(t, "l").is_some() {
        return Err("AMS with l= (a partial body) is not accepted".into());
    }
    let (ch, cb) = match tag(t, "c").unwrap_or("simple/simple").split_once('/') {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (tag(t, "c").unwrap_or("simple").to_string(), "simple".into()),
    };
    let relaxed = |s: &str| match s.trim() {
        "relaxed" => Ok(true),
        "simple" => Ok(false),
        o => Err(format!("AMS: unknown canonicalization {o:?}")),
    };
    let (rh, rb) = (relaxed(&ch)?, relaxed(&cb)?);
    let h: Vec<String> = tag(t, "h")
        .ok_or("AMS: no h=")?
        .split(':')
        .map(|s| s.trim().to_string())
        .collect();
    if h.iter().any(|n| n.eq_ignore_ascii_case("ARC-Seal")) {
        return Err("AMS signs ARC-Seal (RFC 8617 §4.1.2 forbids it)".into());
    }
    let bh = fields::base64(tag(t, "bh").ok_or("AMS: no bh=")?).ok_or("AMS: bad bh=")?;
    if c.body_hash(rb, alg)? != bh {
        return Err("AMS body hash does not match".into());
    }
    let sig = fields::base64(tag(t, "b").ok_or("AMS: no b=")?).ok_or("AMS: bad b=")?;
    let mut data = vec![];
    for f in fields::select(all, &h) {
        data.extend(f.canonical(rh));
    }
    data.extend(fields::without_b(ams, rh));
    let k = key(c, t, alg)?;
    if c.verify(alg, &k, &data, &sig)? {
        Ok(())
    } else {
        Err("AMS signature does not verify".into())
    }
}

/// The data an ARC-Seal of instance `upto` signs: every ARC set up to it,
/// AAR, AMS, AS each, relaxed, the last seal with `b=` empty (RFC 8617
/// §5.1.1).
pub fn seal_input(sets: &[Set<'_>], upto: u32, seal: &Field) -> Vec<u8> {
    let mut data = vec![];
    for s in sets.iter().filter(|s| s.instance < upto) {
        data.extend(s.aar.canonical(true));
        data.extend(s.ams.canonical(true));
        data.extend(s.seal.canonical(true));
    }
    if let Some(s) = sets.iter().find(|s| s.instance == upto) {
        data.extend(s.aar.canonical(true));
        data.extend(s.ams.canonical(true));
    }
    data.extend(fields::without_b(seal, true));
    data
}

fn verify_seal(
    c: &mut dyn Crypto,
    sets: &[Set<'_>],
    s: &Set<'_>,
    t: &[(String, String)],
) -> Result<String, String> {
    if tag(t, "h").is_some() {
        return Err(format!(
            "ARC-Seal {} has h=, which is not allowed",
            s.instance
        ));
    }
    let alg = Alg::parse(tag(t, "a").unwrap_or("")).ok_or("ARC-Seal: unsupported a=")?;
    let sig = fields::base64(tag(t, "b").ok_or("ARC-Seal: no b=")?).ok_or("ARC-Seal: bad b=")?;
    let data = seal_input(sets, s.instance, s.seal);
    let k = key(c, t, alg)?;
    if c.verify(alg, &k, &data, &sig)? {
        Ok(tag(t, "d").unwrap_or("").to_ascii_lowercase())
    } else {
        Err(format!("ARC-Seal {} does not verify", s.instance))
    }
}

/// The `cv=` of an ARC-Seal.
pub fn cv_of(seal: &Field) -> Option<Cv> {
    cv_in(&tags(&seal.value()).ok()?)
}

fn cv_in(t: &[(String, String)]) -> Option<Cv> {
    match tag(t, "cv")?.to_ascii_lowercase().as_str() {
        "none" => Some(Cv::None),
        "pass" => Some(Cv::Pass),
        "fail" => Some(Cv::Fail),
        _ => None,
    }
}

/// Validate the chain of a message whose header fields are `all`.
pub fn validate(c: &mut dyn Crypto, all: &[Field]) -> Validation {
    let parsed = match parsed(all) {
        Ok(s) => s,
        Err(e) => {
            let n = all
                .iter()
                .filter(|f| f.name.trim().eq_ignore_ascii_case("ARC-Seal"))
                .count() as u32;
            return Validation::fail(n, e);
        }
    };
    let n = parsed.len() as u32;
    if n == 0 {
        return Validation {
            cv: Cv::None,
            instances: 0,
            domains: vec![],
            oldest_pass: 0,
            reason: None,
        };
    }
    // The newest seal's cv first: a chain already marked failed stays so.
    for p in parsed.iter().rev() {
        let s = &p.set;
        let want = if s.instance == 1 { Cv::None } else { Cv::Pass };
        match cv_in(&p.seal) {
            Some(cv) if cv == want => {}
            Some(cv) => {
                return Validation::fail(
                    n,
                    format!("ARC-Seal {} says cv={}", s.instance, cv.name()),
                );
            }
            None => {
                return Validation::fail(n, format!("ARC-Seal {} has no valid cv=", s.instance));
            }
        }
    }
    let newest = &parsed[parsed.len() - 1];
    if let Err(e) = verify_ams_tagged(c, all, newest.set.ams, &newest.ams) {
        return Validation::fail(n, format!("i={n}: {e}"));
    }
    let sets: Vec<Set<'_>> = parsed.iter().map(|p| p.set.clone()).collect();
    let mut domains = vec![];
    for p in parsed.iter().rev() {
        let s = &p.set;
        match verify_seal(c, &sets, s, &p.seal) {
            Ok(d) => domains.push(d),
            Err(e) => return Validation::fail(n, format!("i={}: {e}", s.instance)),
        }
    }
    // Oldest pass (RFC 8617 §5.2 step 5): how far back the message is
    // unchanged.
    let mut oldest_pass = 0;
    for p in parsed.iter().rev().skip(1) {
        if verify_ams_tagged(c, all, p.set.ams, &p.ams).is_err() {
            oldest_pass = p.set.instance + 1;
            break;
        }
    }
    Validation {
        cv: Cv::Pass,
        instances: n,
        domains,
        oldest_pass,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that always verify and a body that always matches, so that
    /// only the chain's structure decides.
    struct Lenient;
    impl Crypto for Lenient {
        fn txt(&mut self, _: &str) -> Result<Vec<String>, String> {
            Ok(vec!["v=DKIM1; k=rsa; p=AAAA".into()])
        }
        fn verify(&mut self, _: Alg, _: &[u8], _: &[u8], _: &[u8]) -> Result<bool, String> {
            Ok(true)
        }
        fn body_hash(&mut self, _: bool, _: Alg) -> Result<Vec<u8>, String> {
            Ok(vec![0; 3])
        }
    }

    fn set(i: u32, cv: &str) -> String {
        format!(
            "ARC-Seal: i={i}; a=rsa-sha256; cv={cv}; d=s{i}.test; s=x; b=AAAA\r\n\
             ARC-Message-Signature: i={i}; a=rsa-sha256; d=s{i}.test; s=x; h=from; bh=AAAA; b=AAAA\r\n\
             ARC-Authentication-Results: i={i}; s{i}.test; spf=pass\r\n"
        )
    }

    fn run(head: &str) -> Validation {
        let fields = fields::parse(format!("{head}From: a@b\r\n\r\n").as_bytes());
        validate(&mut Lenient, &fields)
    }

    #[test]
    fn none_pass_and_the_domains_newest_first() {
        assert_eq!(run("").cv, Cv::None);
        let v = run(&(set(2, "pass") + &set(1, "none")));
        assert_eq!(v.cv, Cv::Pass, "{v:?}");
        assert_eq!(v.instances, 2);
        assert_eq!(v.domains, ["s2.test", "s1.test"]);
    }

    #[test]
    fn structure_errors_fail() {
        // A gap, a wrong cv, a failed chain, a duplicate, a missing field.
        for (head, why) in [
            (set(3, "pass") + &set(1, "none"), "ARC set 2 has no"),
            (set(2, "none") + &set(1, "none"), "cv=none"),
            (set(2, "fail") + &set(1, "none"), "cv=fail"),
            (set(1, "none") + &set(1, "none"), "two"),
            (set(1, "pass"), "cv=pass"),
            (
                set(1, "none").replace("ARC-Seal: i=1", "X-Not: i=1"),
                "no ARC-Seal",
            ),
        ] {
            let v = run(&head);
            assert_eq!(v.cv, Cv::Fail, "{head}");
            assert!(v.reason.as_deref().unwrap().contains(why), "{v:?} {why}");
        }
    }

    #[test]
    fn more_than_fifty_instances_fail() {
        let mut head = String::new();
        for i in (1..=51).rev() {
            head.push_str(&set(i, if i == 1 { "none" } else { "pass" }));
        }
        let v = run(&head);
        assert_eq!(v.cv, Cv::Fail);
        let mut head = String::new();
        for i in (1..=50).rev() {
            head.push_str(&set(i, if i == 1 { "none" } else { "pass" }));
        }
        assert_eq!(run(&head).cv, Cv::Pass);
    }

    #[test]
    fn seal_input_orders_sets_and_empties_the_last_b() {
        let fields = fields::parse((set(2, "pass") + &set(1, "none") + "\r\n").as_bytes());
        let sets = sets(&fields).unwrap();
        let data = String::from_utf8(seal_input(&sets, 2, sets[1].seal)).unwrap();
        let lines: Vec<&str> = data.split("\r\n").collect();
        assert!(lines[0].starts_with("arc-authentication-results:i=1"));
        assert!(lines[2].starts_with("arc-seal:i=1"));
        assert!(lines[4].starts_with("arc-message-signature:i=2"));
        assert!(lines[5].starts_with("arc-seal:i=2") && lines[5].ends_with("b="));
        assert_eq!(lines.len(), 6);
    }
}
