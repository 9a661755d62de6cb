//! DCC (the Distributed Checksum Clearinghouse) through dccifd, as Exim's
//! experimental DCC support used it: at end of data the message is sent to
//! dccifd over its ASCII protocol (`proto`) through the `services`
//! capability (a unix socket or TCP), and its answer decides:
//!
//! - `A` (and `S`): accept. Recipients dccifd answered `R` or `G` for are
//!   removed from the delivery (logged); the others get the message.
//! - `R`: reject (550 5.7.1, `reject_text`).
//! - `G`: greylisted (451 4.7.1, `greylist_text`).
//! - `T`, a reply that cannot be parsed, no reply, or an `A` that says the
//!   DCC server did not answer (`X-DCC--Metrics: host 0;`: an empty brand
//!   and server-ID 0, which is how dccifd reports it): the plugin fails,
//!   so the host applies its failure policy (`on_failure = "continue"` to
//!   accept, `"tempfail"` to defer: Exim's `defer_ok`).
//!
//! The `X-DCC-BRAND-Metrics` header dccifd returns is added (at most
//! `max_header` octets) after removing any such header the message
//! already carried. Variables `dcc.result` (the overall character) and
//! `dcc.header` are set for later plugins.
//!
//! Config: `service` (the name in the plugin's `services`, default
//! `dccifd`), `options` (more options for the first line: `grey-off`,
//! `query`, `log`, ...; `header` is always sent), `user_domains`
//! (recipients there are sent with `\r` and their local part, so that
//! dccifd applies `userdirs/LOCAL/whiteclnt`), `client_ip_var` (a variable
//! an earlier plugin may set to send another client address: one address
//! for a sender that uses many, against greylisting; default
//! `dcc.client-ip`), `reject_text`, `greylist_text`, `max_header` (256).
//!
//! Every dccifd answer takes about 0.4 s (dccd's delay without flooding
//! peers), and 7 s when the server does not answer at all: give the plugin
//! its own `timeout_ms` (10000).

pub mod proto;

use mailgate_plugin_sdk::*;
use proto::Answer;
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_service")]
    service: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    user_domains: Vec<String>,
    #[serde(default = "default_ip_var")]
    client_ip_var: String,
    #[serde(default = "default_reject")]
    reject_text: String,
    #[serde(default = "default_grey")]
    greylist_text: String,
    #[serde(default = "default_max_header")]
    max_header: usize,
}

fn default_service() -> String {
    "dccifd".into()
}
fn default_ip_var() -> String {
    "dcc.client-ip".into()
}
fn default_reject() -> String {
    "rejected by DCC: bulk mail".into()
}
fn default_grey() -> String {
    "greylisted by DCC; try again later".into()
}
fn default_max_header() -> usize {
    256
}

static SETTINGS: OnceLock<Config> = OnceLock::new();

/// The most octets read from dccifd (its reply is a few lines).
const MAX_REPLY: usize = 64 * 1024;

/// Fail the call: the host applies the plugin's failure policy.
fn fail(why: &str) -> ! {
    log::write(log::Level::Warn, &format!("DCC: {why}"));
    panic!("DCC: {why}");
}

/// Send the request and read dccifd's whole reply.
fn ask(service: &str, head: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    let c = services::connect(service).map_err(|e| format!("connect to {service}: {e:?}"))?;
    c.send(head).map_err(|e| format!("send: {e:?}"))?;
    c.send(message).map_err(|e| format!("send: {e:?}"))?;
    // dccifd answers once the message ends: close our half.
    c.shutdown().map_err(|e| format!("shutdown: {e:?}"))?;
    let mut got = Vec::new();
    loop {
        let piece = c.receive(8192).map_err(|e| format!("receive: {e:?}"))?;
        if piece.is_empty() {
            return Ok(got);
        }
        got.extend_from_slice(&piece);
        if got.len() > MAX_REPLY {
            return Err("a reply longer than 64 KiB".into());
        }
    }
}

fn domain_of(a: &str) -> &str {
    a.rsplit_once('@').map_or("", |(_, d)| d)
}

/// A header value cut to at most `max` octets, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

struct Dcc;

impl Plugin for Dcc {
    const NAME: &'static str = "dcc";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        if let Some(o) = c
            .options
            .iter()
            .find(|o| o.is_empty() || o.contains(char::is_whitespace))
        {
            return Err(format!("options: {o:?} is not one option"));
        }
        let _ = SETTINGS.set(c);
        Ok(())
    }

    fn on_data(ctx: &Context, msg: &Message) -> Response {
        let Some(c) = SETTINGS.get() else {
            fail("not configured");
        };
        let users: Vec<(String, Option<String>)> = ctx
            .recipients
            .iter()
            .map(|r| {
                let local = c
                    .user_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain_of(r)))
                    .then(|| {
                        r.rsplit_once('@')
                            .map_or(r.as_str(), |(l, _)| l)
                            .to_lowercase()
                    });
                (r.clone(), local)
            })
            .collect();
        let rcpts: Vec<proto::Rcpt<'_>> = users
            .iter()
            .map(|(a, u)| proto::Rcpt {
                address: a,
                user: u.as_deref(),
            })
            .collect();
        let ip = ctx
            .var(&c.client_ip_var)
            .unwrap_or(&ctx.client_ip)
            .to_string();
        let head = proto::request_head(&proto::Request {
            options: &c.options,
            client_ip: &ip,
            client_name: ctx.client_name.as_deref(),
            helo: ctx.helo.as_deref().unwrap_or(""),
            sender: ctx.sender.as_deref().unwrap_or(""),
            rcpts: &rcpts,
        });
        let reply = match ask(&c.service, &head, &msg.raw()) {
            Ok(r) => r,
            Err(why) => fail(&format!("dccifd: {why}")),
        };
        let r = match proto::parse_reply(&reply, rcpts.len()) {
            Ok(r) => r,
            Err(proto::Garbled(why)) => fail(&format!("dccifd's reply: {why}")),
        };
        if r.overall == Answer::Temporary {
            fail("dccifd answered T (temporary failure)");
        }
        if r.server_unavailable() {
            fail("the DCC server did not answer (dccifd's header has server-ID 0)");
        }
        let mut resp = match r.overall {
            Answer::Reject => Response::reject(550, "5.7.1", &c.reject_text),
            Answer::Greylist => Response::defer(451, "4.7.1", &c.greylist_text),
            _ => {
                let mut resp = Response::next();
                for (a, ans) in ctx.recipients.iter().zip(&r.rcpts) {
                    if matches!(ans, Answer::Reject | Answer::Greylist) {
                        log::write(
                            log::Level::Info,
                            &format!(
                                "DCC: {a} removed from the delivery ({})",
                                if *ans == Answer::Reject { "R" } else { "G" }
                            ),
                        );
                        resp = resp.with(Action::RemoveRecipient(a.clone()));
                    }
                }
                resp
            }
        };
        let code = match r.overall {
            Answer::Accept => "A",
            Answer::Reject => "R",
            Answer::Greylist => "G",
            Answer::Some => "S",
            Answer::Temporary => "T",
        };
        resp = resp.with(Action::SetVar(("dcc.result".into(), code.into())));
        if let Some((name, value)) = r.header {
            // Our answer replaces any the message already carried.
            let mut removed = std::collections::HashSet::new();
            for h in msg.headers() {
                let l = h.name.to_ascii_lowercase();
                if l.starts_with("x-dcc-") && l.ends_with("-metrics") && removed.insert(l) {
                    resp = resp.with(Action::RemoveHeader(h.name));
                }
            }
            let value = cut(&value, c.max_header.saturating_sub(name.len() + 2));
            resp = resp
                .with(Action::SetVar((
                    "dcc.header".into(),
                    format!("{name}: {value}"),
                )))
                .add_header(&name, &value);
        }
        resp
    }
}

export_plugin!(Dcc: data);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_cut_at_character_boundaries() {
        assert_eq!(cut("abcdef", 4), "abcd");
        assert_eq!(cut("ab\u{e9}", 3), "ab");
        assert_eq!(cut("ab", 10), "ab");
    }
}
