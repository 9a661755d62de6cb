//! The SRS plugin: Sender Rewriting Scheme for forwarded mail.
//!
//! * Forward (route hook): a recipient that an alias or redirect sent to
//!   another host gets the envelope sender rewritten into the SRS domain,
//!   SRS0 (or SRS1 when the sender already is an SRS address of someone
//!   else, mail-srs scheme). Relayed mail, local deliveries and the null
//!   sender are left alone.
//! * Reverse (RCPT hook): `SRS0=...@<domain>` and `SRS1=...@<domain>` are
//!   decoded and redirected to the address they stand for, so bounces come
//!   home; a bad hash or an expired timestamp gets a 550 that says which.
//!
//! ```toml
//! [[plugin]]
//! name = "srs"
//! path = "plugins/target/wasm32-wasip2/release/srs.wasm"
//! capabilities = ["log", "clock"]
//! [plugin.config]
//! domain = "fwd.example.org"    # the SRS domain (one of our local domains)
//! secrets = ["new", "older"]    # the first signs; all verify
//! scheme = "mail-srs"           # or "exim" (HMAC-MD5, SRS0 only, 10 days)
//! max_age_days = 21             # default 21 (mail-srs), 10 (exim)
//! hash_length = 4               # mail-srs only
//! bounces_only = false          # reverse only for the null sender
//! ```

pub mod scheme;

use mailgate_plugin_sdk::*;
use scheme::{Scheme, Srs};
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    domain: String,
    secrets: Vec<String>,
    #[serde(default = "default_scheme")]
    scheme: String,
    max_age_days: Option<u32>,
    #[serde(default = "default_hash_length")]
    hash_length: usize,
    #[serde(default)]
    bounces_only: bool,
}

fn default_scheme() -> String {
    "mail-srs".into()
}
fn default_hash_length() -> usize {
    4
}

struct Settings {
    domain: String,
    srs: Srs,
    bounces_only: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get().expect("init ran")
}

struct SrsPlugin;

impl Plugin for SrsPlugin {
    const NAME: &'static str = "srs";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        let scheme = match c.scheme.as_str() {
            "mail-srs" => Scheme::MailSrs,
            "exim" => Scheme::Exim,
            other => {
                return Err(format!(
                    "scheme {other:?}: expected \"mail-srs\" or \"exim\""
                ));
            }
        };
        if c.secrets.is_empty() || c.secrets.iter().any(String::is_empty) {
            return Err("secrets: give at least one, none empty".into());
        }
        if c.domain.is_empty() || c.domain.contains('@') {
            return Err(format!("domain {:?}: expected a domain name", c.domain));
        }
        if !(1..=27).contains(&c.hash_length) {
            return Err("hash_length must be 1 to 27".into());
        }
        let max_age_days = c.max_age_days.unwrap_or(match scheme {
            Scheme::MailSrs => 21,
            Scheme::Exim => 10,
        });
        let _ = SETTINGS.set(Settings {
            domain: c.domain,
            srs: Srs {
                scheme,
                secrets: c.secrets,
                max_age_days,
                hash_length: c.hash_length,
            },
            bounces_only: c.bounces_only,
        });
        Ok(())
    }

    fn on_rcpt_to(ctx: &Context, rcpt: &str) -> Response {
        let s = settings();
        let Some((local, domain)) = scheme::split(rcpt) else {
            return Response::next();
        };
        if !domain.eq_ignore_ascii_case(&s.domain) || !scheme::is_srs(&local) {
            return Response::next();
        }
        if s.bounces_only && ctx.sender.as_deref().is_some_and(|x| !x.is_empty()) {
            return Response::reject(550, "5.7.1", "SRS addresses accept only bounces");
        }
        match s.srs.reverse(&local, clock::now()) {
            Ok(orig) => {
                log::write(log::Level::Info, &format!("SRS reverse {rcpt} -> {orig}"));
                Response::next()
                    .with(Action::Redirect(orig.clone()))
                    .with(Action::SetVar(("srs_recipient".into(), orig)))
            }
            Err(e) => Response::reject(550, "5.1.1", &format!("Invalid SRS recipient: {e}")),
        }
    }

    fn on_route(ctx: &Context, rcpt: &RouteInfo) -> RouteDecision {
        let s = settings();
        let mut d = RouteDecision::unchanged(rcpt);
        let sender = ctx.sender.as_deref().unwrap_or("");
        if !rcpt.remote || rcpt.original.is_none() || sender.is_empty() {
            return d;
        }
        // Mail from our own SRS domain needs no rewriting (as Mail::SRS).
        if scheme::split(sender).is_some_and(|(_, dom)| dom.eq_ignore_ascii_case(&s.domain)) {
            return d;
        }
        d.sender = s.srs.forward(sender, &s.domain, clock::now());
        d
    }
}

export_plugin!(SrsPlugin: rcpt_to, route);
