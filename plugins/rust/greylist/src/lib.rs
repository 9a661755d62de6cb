//! Greylisting. A recipient whose (client network, sender, recipient)
//! triple is new gets 451 4.7.1; a retry after `delay` and within
//! `retry_window` passes, and the triple is then remembered for
//! `lifetime`, so later mail from it is not held up. Real MTAs retry;
//! much spamware does not.
//!
//! The triples are in the `kv` capability, so the gateways of a pool that
//! share a Redis (`[store] redis`) share them: a triple first seen by one
//! gateway passes at another after the delay. The client's network is its
//! /24 (IPv4) or /64 (IPv6), because large senders retry from another
//! address of the same network. Messages delayed get an `X-Greylist`
//! header saying for how long.
//!
//! ```toml
//! [[plugin]]
//! name = "greylist"
//! path = "plugins/target/wasm32-wasip2/release/greylist.wasm"
//! capabilities = ["kv", "clock", "log"]
//! reuse = true
//! [plugin.config]
//! delay = 300                 # seconds
//! retry_window = 14400        # a retry must come within 4 h
//! lifetime = 3024000          # a passed triple is kept 35 days
//! allow_clients = ["192.0.2.0/24"]
//! allow_senders = ["partner.example"]
//! allow_recipients = ["postmaster@example.com"]
//! ```
//!
//! Authenticated clients are not greylisted (`authenticated = true`
//! greylists them too). A kv failure defers the recipient (451 4.3.0), or
//! lets it through with `on_kv_error = "accept"`;
//! without the `kv` or `clock` grant the plugin fails and the host applies
//! its failure policy.

pub mod policy;

use mailgate_plugin_sdk::*;
use policy::{Decision, Policy};
use std::sync::OnceLock;

static POLICY: OnceLock<Policy> = OnceLock::new();

/// The variable that carries the longest delay of the transaction's
/// recipients to the data hook.
const DELAYED: &str = "greylist.delayed";

struct Greylist;

/// A kv failure: the configured answer.
fn kv_failed(p: &Policy, why: &str) -> Response {
    log::write(log::Level::Warn, &format!("kv: {why}"));
    match p.cfg.on_kv_error {
        policy::OnKvError::Defer => {
            Response::defer(451, "4.3.0", "Greylisting unavailable; try again later")
        }
        policy::OnKvError::Accept => Response::next(),
    }
}

impl Plugin for Greylist {
    const NAME: &'static str = "greylist";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let p = Policy::new(parse_config(config)?)?;
        let _ = POLICY.set(p);
        Ok(())
    }

    fn on_rcpt_to(ctx: &Context, rcpt: &str) -> Response {
        let Some(p) = POLICY.get() else {
            return Response::next();
        };
        let Ok(ip) = ctx.client_ip.parse() else {
            // A local submission has no network to greylist.
            return Response::next();
        };
        let sender = ctx.sender.as_deref().unwrap_or("");
        if p.allowed(ip, sender, rcpt, ctx.auth_user.is_some())
            .is_some()
        {
            return Response::next();
        }
        let key = p.triple(ip, sender, rcpt);
        let entry = match kv::get(&key) {
            Ok(e) => e,
            Err(e) => return kv_failed(p, e.reason()),
        };
        let decision = p.decide(entry.as_deref(), clock::now());
        let store = match &decision {
            Decision::Wait { store, .. } | Decision::Pass { store, .. } => store.clone(),
        };
        if let Some((value, ttl)) = store
            && let Err(e) = kv::set(&key, &value, ttl)
        {
            return kv_failed(p, e.reason());
        }
        match decision {
            Decision::Wait { retry_in, .. } => {
                info(&format!("greylisted {key}; retry in {retry_in}s"));
                Response::defer(
                    451,
                    "4.7.1",
                    &format!("Greylisted, please try again in {retry_in} seconds"),
                )
            }
            Decision::Pass {
                delayed: Some(s), ..
            } => {
                info(&format!("passed {key} after {s}s"));
                let longest = ctx
                    .var(DELAYED)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    .max(s);
                Response::next().with(Action::SetVar((DELAYED.into(), longest.to_string())))
            }
            Decision::Pass { delayed: None, .. } => Response::next(),
        }
    }

    fn on_data(ctx: &Context, _msg: &Message) -> Response {
        match ctx.var(DELAYED) {
            Some(s) => Response::next()
                .add_header("X-Greylist", &format!("delayed {s} seconds by mailgate")),
            None => Response::next(),
        }
    }
}

export_plugin!(Greylist: rcpt_to, data);
