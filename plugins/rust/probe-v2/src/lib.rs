//! Test plugin for contract 0.2 (`wit/0.2`), written against the WIT
//! directly: it exports `plugin`, `rcpt-hook` and `data-hook` only, so
//! those are its hooks. By recipient local part:
//! * `checks`: rejects with the typed context (client name, AUTH login,
//!   iprev, SPF, DKIM results) as text;
//! * `kv`: writes and reads back a kv entry, rejects with what it read
//!   (or the error);
//! * `bob`: rejects with an enhanced status record (5.7.1);
//! * anything else continues.
//!
//! Accepted messages get `X-Probe-V2: <recipients> <body octets>`.

wit_bindgen::generate!({
    inline: r#"
        package test:probe-v2;
        world probe {
            import mailgate:plugin/log@0.2.0;
            import mailgate:plugin/kv@0.2.0;
            export mailgate:plugin/plugin@0.2.0;
            export mailgate:plugin/rcpt-hook@0.2.0;
            export mailgate:plugin/data-hook@0.2.0;
        }
    "#,
    path: "../../../wit/0.2",
    world: "test:probe-v2/probe",
    generate_all,
});

use exports::mailgate::plugin::{data_hook, plugin, rcpt_hook};
use mailgate::plugin::types::{
    Action, CheckOutcome, Context, EnhancedStatus, HeaderField, Message, Response, SmtpReply,
    SpfIdentity, Verdict,
};
use mailgate::plugin::{kv, log};

struct Probe;

fn reject(text: String) -> Response {
    Response {
        verdict: Verdict::Reject(SmtpReply {
            code: 550,
            enhanced: Some(EnhancedStatus {
                class: 5,
                subject: 7,
                detail: 1,
            }),
            text,
        }),
        actions: vec![],
    }
}

fn outcome(o: CheckOutcome) -> &'static str {
    match o {
        CheckOutcome::Pass => "pass",
        CheckOutcome::Fail => "fail",
        CheckOutcome::Softfail => "softfail",
        CheckOutcome::Neutral => "neutral",
        CheckOutcome::None => "none",
        CheckOutcome::Temperror => "temperror",
        CheckOutcome::Permerror => "permerror",
        CheckOutcome::Policy => "policy",
    }
}

fn describe_checks(ctx: &Context) -> String {
    let mut s = format!(
        "client-name={} auth-user={}",
        ctx.client_name.as_deref().unwrap_or("-"),
        ctx.auth_user.as_deref().unwrap_or("-")
    );
    if let Some(i) = &ctx.checks.iprev {
        s.push_str(&format!(" iprev={}", outcome(i.outcome)));
    }
    for r in &ctx.checks.spf {
        let id = match r.identity {
            SpfIdentity::Helo => "helo",
            SpfIdentity::MailFrom => "mail-from",
        };
        s.push_str(&format!(" spf.{id}={}({})", outcome(r.outcome), r.subject));
    }
    for d in &ctx.checks.dkim {
        s.push_str(&format!(" dkim={}({})", outcome(d.outcome), d.domain));
    }
    s
}

impl plugin::Guest for Probe {
    fn describe() -> plugin::Manifest {
        plugin::Manifest {
            name: "probe-v2".into(),
            version: "0.2.0".into(),
            // It could say true; saying false leaves the choice to the
            // tests' configs (`reuse`).
            reusable: false,
        }
    }
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }
}

impl rcpt_hook::Guest for Probe {
    fn on_rcpt_to(ctx: Context, recipient: String) -> Response {
        let local = recipient.split('@').next().unwrap_or("");
        match local {
            "checks" => reject(describe_checks(&ctx)),
            "kv" => {
                let r = kv::set("k", b"v2", 60).and_then(|()| kv::get("k"));
                reject(match r {
                    Ok(Some(v)) => format!("kv read {}", String::from_utf8_lossy(&v)),
                    Ok(None) => "kv read nothing".into(),
                    Err(e) => format!("kv failed: {e:?}"),
                })
            }
            "bob" => {
                log::write(log::Level::Info, "refusing bob");
                reject("no bob (contract 0.2)".into())
            }
            _ => Response {
                verdict: Verdict::Continue,
                actions: vec![],
            },
        }
    }
}

impl data_hook::Guest for Probe {
    fn on_data(ctx: Context, msg: &Message) -> Response {
        Response {
            verdict: Verdict::Continue,
            actions: vec![Action::AddHeader(HeaderField {
                name: "X-Probe-V2".into(),
                value: format!("{} {}", ctx.recipients.len(), msg.body_size()),
            })],
        }
    }
}

export!(Probe);
