//! ARC (RFC 8617) as a mailgate plugin.
//!
//! At end of data (`data` hook) it validates the message's chain: the
//! structure of every set (one AAR, AMS and AS per instance, no gaps, at
//! most 50), the `cv=` of every seal, the newest ARC-Message-Signature and
//! every ARC-Seal. The result goes into our Authentication-Results
//! (`arc=pass (i=2) header.oldest-pass=0 smtp.remote-ip=...`) and into
//! variables for later plugins (the DMARC plugin's trusted-sealer
//! override) and the offline checker: `arc.cv`, `arc.instances`,
//! `arc.domains` (sealing domains, newest first), `arc.oldest-pass`.
//!
//! With `seal` configured, every outgoing copy (`deliver` hook) gets a new
//! ARC set: the ARC-Authentication-Results copied from our
//! Authentication-Results (the one with `authserv_id`), an AMS over the
//! header fields present and the body, and an ARC-Seal whose `cv=` is the
//! chain's state at reception. A chain already sealed with `cv=fail` or
//! holding 50 sets is passed on unsealed.
//!
//! The host does the arithmetic (capability `crypto`: body hashes, RSA
//! and Ed25519 with ring); the key stays in the host, named in the
//! plugin's `keys` table. Key records come through `dns`. Grant `dns`,
//! `crypto` and `clock`: the plugin imports them and does not load
//! without them.
//!
//! Config:
//! - `authserv_id`: our Authentication-Results identifier (the host's
//!   `[auth] authserv_id`, by default `server.hostname`); needed to seal.
//! - `seal`: `{ domain, selector, key, expire }`: the sealing ADMD
//!   (`d=`), selector, the name of the key in the plugin's `keys` (an RSA
//!   key: RFC 8617 seals with rsa-sha256 only), and an optional lifetime
//!   in seconds (`x=`). Without it nothing is sealed.
//! - `timestamp` (true): write `t=`.

pub mod chain;
pub mod fields;
pub mod seal;

use chain::{Alg, Crypto, Cv};
use mailgate_plugin_sdk::*;
use std::sync::OnceLock;

struct ArcPlugin;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SealConfig {
    domain: String,
    selector: String,
    key: String,
    #[serde(default)]
    expire: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    authserv_id: Option<String>,
    #[serde(default)]
    seal: Option<SealConfig>,
    #[serde(default = "yes")]
    timestamp: bool,
}

fn yes() -> bool {
    true
}

static SETTINGS: OnceLock<Config> = OnceLock::new();

/// The host's DNS and crypto for one message.
struct Host<'a> {
    msg: &'a Message,
}

fn alg_of(a: Alg) -> crypto::Algorithm {
    match a {
        Alg::RsaSha256 => crypto::Algorithm::RsaSha256,
        Alg::Ed25519Sha256 => crypto::Algorithm::Ed25519Sha256,
    }
}

/// A capability error as a reason. (Without the `dns`, `crypto` and
/// `clock` grants the plugin does not load: it imports them.)
fn failed(e: CapError, what: &str) -> String {
    format!("{what}: {}", e.reason())
}

impl Crypto for Host<'_> {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, String> {
        txt_records(name).map_err(|e| failed(e, &format!("dns {name} TXT")))
    }
    fn verify(&mut self, alg: Alg, key: &[u8], data: &[u8], sig: &[u8]) -> Result<bool, String> {
        crypto::verify(alg_of(alg), key, data, sig).map_err(|e| failed(e, "crypto verify"))
    }
    fn body_hash(&mut self, relaxed: bool, alg: Alg) -> Result<Vec<u8>, String> {
        let c = if relaxed {
            crypto::Canonicalization::Relaxed
        } else {
            crypto::Canonicalization::Simple
        };
        crypto::body_hash(self.msg, c, alg_of(alg)).map_err(|e| failed(e, "crypto body-hash"))
    }
}

struct HostKey<'a>(&'a str);

impl seal::Signer for HostKey<'_> {
    fn sign(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        crypto::sign(self.0, data).map_err(|e| format!("sign with key {}: {}", self.0, e.reason()))
    }
}

/// The header fields of `msg`, raw.
fn header_fields(msg: &Message) -> Vec<fields::Field> {
    let head_len = msg.size().saturating_sub(msg.body_size());
    let head = msg.read_raw(0, head_len.min(u32::MAX as u64) as u32);
    fields::parse(&head)
}

/// A comment's text: no parentheses or line breaks.
fn comment(s: &str) -> String {
    s.replace(['(', ')', '\\', '\r', '\n'], " ")
}

impl Plugin for ArcPlugin {
    const NAME: &'static str = "arc";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        if c.seal.is_some() && c.authserv_id.as_deref().unwrap_or("").is_empty() {
            return Err("seal needs authserv_id (the host's [auth] authserv_id)".into());
        }
        if let Some(sc) = &c.seal {
            // RFC 8617 §4.1.3 admits rsa-sha256 only (dkimpy refuses
            // ed25519-sha256 seals): refuse any other key at load.
            match crypto::key_algorithm(&sc.key) {
                Ok(crypto::Algorithm::RsaSha256) => {}
                Ok(_) => return Err(format!("key {}: ARC seals with RSA keys only", sc.key)),
                Err(e) => {
                    return Err(format!(
                        "key {}: {e:?} (grant crypto and name the key in the plugin's keys)",
                        sc.key
                    ));
                }
            }
        }
        let _ = SETTINGS.set(c);
        Ok(())
    }

    fn on_data(ctx: &Context, msg: &Message) -> Response {
        let all = header_fields(msg);
        let v = chain::validate(&mut Host { msg }, &all);
        let mut entry = format!("arc={}", v.cv.name());
        if v.instances > 0 {
            match &v.reason {
                Some(r) => entry.push_str(&format!(" (i={}: {})", v.instances, comment(r))),
                None => entry.push_str(&format!(" (i={})", v.instances)),
            }
        }
        if v.cv == Cv::Pass {
            entry.push_str(&format!(" header.oldest-pass={}", v.oldest_pass));
        }
        if v.instances > 0 {
            entry.push_str(&format!(" smtp.remote-ip={}", ctx.client_ip));
        }
        if let Some(r) = &v.reason {
            log::write(log::Level::Info, &format!("ARC chain fails: {r}"));
        }
        Response::next()
            .with(Action::AddAuthResult(entry))
            .with(Action::SetVar(("arc.cv".into(), v.cv.name().into())))
            .with(Action::SetVar((
                "arc.instances".into(),
                v.instances.to_string(),
            )))
            .with(Action::SetVar(("arc.domains".into(), v.domains.join(","))))
            .with(Action::SetVar((
                "arc.oldest-pass".into(),
                v.oldest_pass.to_string(),
            )))
    }

    fn on_deliver(ctx: &Context, d: &Delivery, msg: &Message) -> Response {
        let Some(c) = SETTINGS.get() else {
            return Response::next();
        };
        let Some(sc) = &c.seal else {
            return Response::next();
        };
        // init made sure the key is an RSA one.
        let alg = Alg::RsaSha256;
        let now = c.timestamp.then(clock::now);
        let sealer = seal::Sealer {
            domain: sc.domain.clone(),
            selector: sc.selector.clone(),
            alg,
            now,
            expire: sc.expire,
            authserv_id: c.authserv_id.clone().unwrap_or_default(),
        };
        let all = header_fields(msg);
        // The chain's state at reception, as this plugin's data hook found
        // it (the host keeps it with the message).
        let received = ctx.checks.arc.as_ref().and_then(|a| match a.outcome {
            CheckOutcome::Pass => Some(Cv::Pass),
            CheckOutcome::None => Some(Cv::None),
            CheckOutcome::Fail => Some(Cv::Fail),
            _ => None,
        });
        match seal::seal(
            &sealer,
            &all,
            received,
            &mut Host { msg },
            &mut HostKey(&sc.key),
        ) {
            Ok(fields) => {
                let mut r = Response::next();
                for (name, value) in fields {
                    r = r.add_header(&name, &value);
                }
                r
            }
            Err(why) => {
                log::write(
                    log::Level::Info,
                    &format!("{}: not sealed: {why:?}", d.message_id),
                );
                Response::next()
            }
        }
    }
}

export_plugin!(ArcPlugin: data, deliver);
