//! Test plugin for the delivery-side hooks and two capabilities:
//! * RCPT `svc@...`: asks the service named `echo` (services capability)
//!   and rejects with its answer, or with "services refused".
//! * RCPT `whoami@...`: rejects with the context's `auth-user` (the SMTP
//!   AUTH login, or `none`) and `client-name` (the host name iprev
//!   verified, or `none`).
//! * route: recipients whose local part starts with `file-` are taken for
//!   this plugin's transport, which writes the message under the preopened
//!   directory `/out` (directories capability).
//! * deliver: adds `X-Deliver-Hook: <domain> <sender>` to the copy sent,
//!   and what WASI itself says of time and randomness (`X-Probe-Clock`:
//!   wall-clock seconds; `X-Probe-Random`: a hash keyed by std's random
//!   hash seed), which the host only makes real when `clock` / `random`
//!   are granted; refuses deliveries to the domain `refuse.test`.

use mailgate_plugin_sdk_v1::*;

struct Probe;

fn ask_echo() -> Result<String, String> {
    let c = services::connect("echo").map_err(|e| format!("{e:?}"))?;
    c.send(b"ping\n").map_err(|e| format!("{e:?}"))?;
    c.shutdown().map_err(|e| format!("{e:?}"))?;
    let mut got = Vec::new();
    loop {
        let piece = c.receive(512).map_err(|e| format!("{e:?}"))?;
        if piece.is_empty() {
            break;
        }
        got.extend_from_slice(&piece);
    }
    Ok(String::from_utf8_lossy(&got).trim().to_string())
}

impl Plugin for Probe {
    const NAME: &'static str = "hooks-probe";
    const HOOKS: &'static [Hook] = &[Hook::RcptTo, Hook::Route, Hook::Deliver, Hook::Transport];

    fn on_rcpt_to(ctx: &Context, rcpt: &str) -> Response {
        if rcpt.starts_with("whoami@") {
            let who = ctx.auth_user.as_deref().unwrap_or("none");
            let name = ctx.client_name.as_deref().unwrap_or("none");
            return Response::reject(
                550,
                "5.7.1",
                &format!("auth-user: {who}; client-name: {name}"),
            );
        }
        if !rcpt.starts_with("svc@") {
            return Response::next();
        }
        match ask_echo() {
            Ok(answer) => Response::reject(550, "5.7.1", &format!("echo: {answer}")),
            Err(e) if e.contains("NotGranted") => {
                Response::reject(550, "5.7.1", "services refused")
            }
            Err(e) => Response::defer(451, "4.3.0", &format!("echo failed: {e}")),
        }
    }

    fn on_route(_ctx: &Context, rcpt: &RouteInfo) -> RouteDecision {
        let mut d = RouteDecision::unchanged(rcpt);
        d.transport = rcpt.recipient.starts_with("file-");
        d
    }

    fn on_deliver(_ctx: &Context, d: &Delivery, _msg: &Message) -> Response {
        if d.domain == "refuse.test" {
            return Response::reject(550, "5.7.1", "no deliveries to refuse.test");
        }
        use std::hash::{BuildHasher, RandomState};
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        let random = RandomState::new().hash_one("probe");
        Response::next()
            .with(Action::AddHeader((
                "X-Deliver-Hook".into(),
                format!("{} {}", d.domain, d.sender),
            )))
            .with(Action::AddHeader((
                "X-Probe-Clock".into(),
                clock.to_string(),
            )))
            .with(Action::AddHeader((
                "X-Probe-Random".into(),
                format!("{random:016x}"),
            )))
    }

    fn on_transport(_ctx: &Context, d: &Delivery, msg: &Message) -> TransportResult {
        let local = d.recipients[0].split('@').next().unwrap_or("x");
        let path = format!("/out/{}-{local}.eml", d.message_id);
        match std::fs::write(&path, msg.raw()) {
            Ok(()) => TransportResult::Delivered(format!("written to {path}")),
            Err(e) => TransportResult::Deferred(format!("{path}: {e}")),
        }
    }
}

export_plugin!(Probe);
