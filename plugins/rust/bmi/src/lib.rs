//! A BMI-style verdict adapter: Brightmail's per-recipient semantics (as
//! Exim's `EXPERIMENTAL_BRIGHTMAIL` had them) on SpamAssassin's `spamd`.
//!
//! - **Opt-in per recipient.** `optin_table` (a lookup table, searched in
//!   address order: `user@domain`, `user@`, `@domain`, the domain's keys)
//!   gives each recipient a profile name, or `off`; `default_profile` is
//!   for recipients without an entry.
//! - **One scan per profile, at end of data.** Recipients are grouped by
//!   profile and the message is sent to spamd once per distinct profile
//!   with that profile's spamd `User:` (so its `required_score` and rules
//!   apply), through the `services` capability (unix socket or TCP).
//! - **Verdicts travel with the message** in the spool variable
//!   `bmi.verdicts`: each covers a set of recipients and says deliver,
//!   alternate or drop, with the score, the threshold and the rules.
//! - **Routing applies them per recipient**: `deliver` leaves it alone,
//!   `alternate` rewrites it to the profile's `alternate` template (the
//!   host routes that address again: another mailbox, or another host
//!   through the routes table), `drop` takes it to this plugin's transport,
//!   which delivers it nowhere (logged, as Exim's `:blackhole:`).
//!   Addresses made by aliases inherit the verdict of the address the
//!   client gave. Each scanned recipient's copy carries the verdict string
//!   in the `header` field (default `X-Spam-Verdict`); the field is
//!   removed from incoming messages first, so a sender cannot forge it.
//! - **Fail open**, as BMI: spamd down, refusing or answering garbage, or a
//!   message over `max_size`, gives `deliver` (`unscanned (why)` in the
//!   header, and a warning in the log); verdicts that cannot be decoded at
//!   routing mean deliver normally. A spamd that does not answer within
//!   the plugin's `timeout_ms` fails the call, and its `on_failure`
//!   applies (`continue`: deliver unscanned; `tempfail`: defer). An opt-in
//!   table that cannot be read fails the call (`on_failure` too): a table
//!   error is never taken for "opted out".
//!
//! Config: `service` (the name in `services`, default `spamd`),
//! `optin_table`, `default_profile` (`off`), `header`, `max_size` (octets,
//! 512000 as spamc's default), and `[profiles.NAME]` tables with `user`
//! (the spamd user, default NAME), `spam` (`deliver`, `alternate` or
//! `drop`: what a message spamd calls spam gets), `drop_score` (drop at or
//! over this score whatever `spam` says) and `alternate` (`{local}`,
//! `{domain}` and `{address}` are the recipient's).

pub mod spamd;
pub mod verdict;

use mailgate_plugin_sdk::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use verdict::{Disposition, Profile, Verdict};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_service")]
    service: String,
    #[serde(default)]
    optin_table: Option<String>,
    #[serde(default = "default_off")]
    default_profile: String,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_max_size")]
    max_size: u64,
    #[serde(default)]
    profiles: HashMap<String, Profile>,
}

fn default_service() -> String {
    "spamd".into()
}
fn default_off() -> String {
    OFF.into()
}
fn default_header() -> String {
    "X-Spam-Verdict".into()
}
fn default_max_size() -> u64 {
    512_000
}

/// The profile name that opts a recipient out.
const OFF: &str = "off";

/// The most octets read from spamd (a status line, two headers, rules).
const MAX_REPLY: usize = 64 * 1024;

static SETTINGS: OnceLock<Config> = OnceLock::new();

fn warn(msg: &str) {
    log::write(log::Level::Warn, &format!("bmi: {msg}"));
}

/// Fail the call: the host applies the plugin's failure policy.
fn fail(why: &str) -> ! {
    warn(why);
    panic!("bmi: {why}");
}

/// A services error as text; a wait that used up the call's time budget
/// (the host's `timed out`) fails the call instead, so that `on_failure`
/// applies whatever point of the call the budget ran out at.
fn io_error(what: &str, e: services::CapError) -> String {
    match e {
        services::CapError::Failed(s) if s == "timed out" => {
            fail(&format!("spamd did not answer within timeout_ms ({what})"))
        }
        e => format!("{what}: {}", e.reason()),
    }
}

/// Scan `message` as spamd user `user`.
fn scan(service: &str, user: &str, message: &[u8]) -> Result<spamd::Scan, String> {
    let c =
        services::connect(service).map_err(|e| io_error(&format!("connect to {service}"), e))?;
    c.send(&spamd::request_head(user, message.len()))
        .map_err(|e| io_error("send", e))?;
    c.send(message).map_err(|e| io_error("send", e))?;
    c.shutdown().map_err(|e| io_error("shutdown", e))?;
    let mut got = Vec::new();
    loop {
        let piece = c.receive(8192).map_err(|e| io_error("receive", e))?;
        if piece.is_empty() {
            break;
        }
        got.extend_from_slice(&piece);
        if got.len() > MAX_REPLY {
            return Err("a reply longer than 64 KiB".into());
        }
    }
    if got.is_empty() {
        return Err("spamd closed the connection without a reply".into());
    }
    spamd::parse_reply(&got).map_err(|e| e.to_string())
}

/// The profile of each recipient, grouped: profile name -> recipients.
fn profiles(c: &Config, rcpts: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rcpts {
        let name = match &c.optin_table {
            None => c.default_profile.clone(),
            Some(t) => match lookup::search(t, r, lookup::SearchOrder::Address) {
                Ok(Some(v)) => v.trim().to_string(),
                Ok(None) => c.default_profile.clone(),
                Err(e) => fail(&format!("opt-in table {t}: {e:?}")),
            },
        };
        if name.eq_ignore_ascii_case(OFF) {
            continue;
        }
        if !c.profiles.contains_key(&name) {
            warn(&format!(
                "{r}: opt-in table names profile {name:?}, which is not configured; not scanned"
            ));
            continue;
        }
        groups.entry(name).or_default().push(r.clone());
    }
    groups
}

struct Bmi;

impl Plugin for Bmi {
    const NAME: &'static str = "bmi";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        for (name, p) in &c.profiles {
            if name.eq_ignore_ascii_case(OFF) {
                return Err(format!("profile {name:?}: the name means opted out"));
            }
            p.check(name)?;
        }
        if !c.default_profile.eq_ignore_ascii_case(OFF)
            && !c.profiles.contains_key(&c.default_profile)
        {
            return Err(format!(
                "default_profile {:?} is not a configured profile",
                c.default_profile
            ));
        }
        if c.header.is_empty()
            || !c
                .header
                .bytes()
                .all(|b| (33..=126).contains(&b) && b != b':')
        {
            return Err(format!("header {:?} is not a field name", c.header));
        }
        let _ = SETTINGS.set(c);
        Ok(())
    }

    fn on_data(ctx: &Context, msg: &Message) -> Response {
        let Some(c) = SETTINGS.get() else {
            fail("not configured");
        };
        // Only our own verdict field reaches the recipients.
        let mut resp = Response::next();
        if !msg.header(&c.header).is_empty() {
            resp = resp.with(Action::RemoveHeader(c.header.clone()));
        }
        let groups = profiles(c, &ctx.recipients);
        if groups.is_empty() {
            return resp;
        }
        let size = msg.size();
        let raw = (size <= c.max_size).then(|| msg.raw());
        let mut verdicts = Vec::new();
        for (name, rcpts) in groups {
            let p = &c.profiles[&name];
            let user = p.user.as_deref().unwrap_or(&name);
            let v = match &raw {
                None => Verdict::unscanned(
                    rcpts,
                    &name,
                    &format!("message of {size} octets over max_size"),
                ),
                Some(m) => match scan(&c.service, user, m) {
                    Ok(s) => Verdict::scanned(rcpts, &name, p, &s),
                    Err(why) => {
                        warn(&format!(
                            "spamd for profile {name}: {why}; delivering normally"
                        ));
                        Verdict::unscanned(rcpts, &name, &format!("spamd: {why}"))
                    }
                },
            };
            verdicts.push(v);
        }
        resp.with(Action::SetVar((
            verdict::VAR.into(),
            verdict::encode(&verdicts),
        )))
    }

    fn on_route(ctx: &Context, rcpt: &RouteInfo) -> RouteDecision {
        let unchanged = RouteDecision::unchanged(rcpt);
        let (Some(c), Some(var)) = (SETTINGS.get(), ctx.var(verdict::VAR)) else {
            return unchanged;
        };
        let verdicts = match verdict::decode(var) {
            Ok(v) => v,
            Err(e) => {
                warn(&format!(
                    "verdicts cannot be decoded ({e}); <{}> delivered normally",
                    rcpt.recipient
                ));
                return unchanged;
            }
        };
        // An alias's target inherits the verdict of the client's address.
        let given = rcpt.original.as_deref().unwrap_or(&rcpt.recipient);
        let Some(v) = verdict::find(&verdicts, given) else {
            return unchanged;
        };
        if let Err(e) = routing::add_header(&c.header, &v.text()) {
            warn(&format!("verdict header for <{}>: {e:?}", rcpt.recipient));
        }
        match v.disposition {
            Disposition::Deliver => unchanged,
            Disposition::Alternate => match v.alternate_for(&rcpt.recipient) {
                Some(to) => {
                    info(&format!(
                        "bmi: <{}> to the alternate location <{to}> ({})",
                        rcpt.recipient,
                        v.text()
                    ));
                    RouteDecision {
                        recipient: to,
                        sender: None,
                        transport: false,
                    }
                }
                None => unchanged,
            },
            Disposition::Drop => {
                info(&format!(
                    "bmi: <{}> not delivered ({})",
                    rcpt.recipient,
                    v.text()
                ));
                RouteDecision {
                    recipient: rcpt.recipient.clone(),
                    sender: None,
                    transport: true,
                }
            }
        }
    }

    fn on_transport(_ctx: &Context, _d: &Delivery, _msg: &Message) -> TransportResult {
        // Only dropped recipients are routed here.
        TransportResult::Delivered("not delivered: verdict drop".into())
    }
}

export_plugin!(Bmi: data, route, transport);
