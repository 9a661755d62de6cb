//! `mailgate plugin test`: run one plugin offline through every hook it
//! declares, against a message file, and describe its answers.

use super::bindings::hook_name;
use super::bindings::mailgate::plugin::types::{self as wit, Hook};
use super::calls::{Call, Outcome, SessionPlugins};
use super::engine::Runtime;
use super::state::Resolver;
use crate::cache::Cache;
use crate::config::plugin::PluginConfig;
use crate::dns::zone;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A runtime for offline runs: scratch cache and compile cache under
/// `work_dir`, DNS from `dns` (a zone file, or live; none: no resolver).
fn runtime(work_dir: &Path, dns: Option<Resolver>) -> Result<Arc<Runtime>, super::PluginError> {
    let cache = Cache::open(&work_dir.join("cache.redb"))
        .map_err(|e| super::PluginError::Offline(format!("scratch cache: {e}")))?;
    let compiled = super::cache::CompileCache::open(
        &work_dir.join("compiled"),
        &work_dir.join("compiled.key"),
    )
    .map_err(|e| tracing::warn!(error = %e, "running without a compile cache"))
    .ok();
    Runtime::new(crate::store::Store::local(cache), compiled, dns, None)
}

/// The data hook of `cfgs`, in order, once, offline, on `message` with
/// `ctx` (`mailgate auth check`): their verdict, actions and failures.
pub async fn data_hook(
    cfgs: &[PluginConfig],
    ctx: &wit::Context,
    message: Arc<Vec<u8>>,
    work_dir: &Path,
    dns: Option<Resolver>,
) -> Result<Outcome, super::PluginError> {
    let rt = runtime(work_dir, dns)?;
    let loaded = rt.load(cfgs).await?;
    rt.swap(loaded);
    let mut sp = SessionPlugins::new(Arc::clone(&rt));
    Ok(sp.run(ctx, Call::Data(message)).await)
}

/// What `plugin test` found: the text for people and the same as JSON.
pub struct Tested {
    /// One line or block per hook call.
    pub text: String,
    /// `plugin` (name, version, sha256, hooks), `steps` (per call: `hook`,
    /// `hooked`, `verdict`, `actions`, `headers_added`, `auth_results`,
    /// `failures`; route steps: `recipient`, `sender`, `transport`;
    /// transport steps: `result`), `calls`, `failures`.
    pub json: serde_json::Value,
}

fn step_json(hook: &str, target: Option<&str>, hooked: bool, o: &Outcome) -> serde_json::Value {
    let headers: Vec<serde_json::Value> = o
        .actions
        .iter()
        .filter_map(|a| match a {
            wit::Action::AddHeader((n, v)) => Some(serde_json::json!({"name": n, "value": v})),
            _ => None,
        })
        .collect();
    let auth: Vec<&String> = o
        .actions
        .iter()
        .filter_map(|a| match a {
            wit::Action::AddAuthResult(e) => Some(e),
            _ => None,
        })
        .collect();
    serde_json::json!({
        "hook": hook,
        "target": target,
        "hooked": hooked,
        "verdict": o.verdict.as_ref().map_or_else(|| "continue".to_string(), verdict_text),
        "actions": o.actions.iter().map(action_text).collect::<Vec<_>>(),
        "headers_added": headers,
        "auth_results": auth,
        "failures": o.failures.iter().map(|(_, why, p)| format!("{why} (policy {p:?})")).collect::<Vec<_>>(),
    })
}

/// Run a plugin offline through every hook it declares, with a context
/// built from a message file, and describe what it answered. Used by
/// `mailgate plugin test`.
pub async fn test_offline(
    cfg: &PluginConfig,
    message: &[u8],
    sender: &str,
    recipients: &[String],
    work_dir: &Path,
    zone: Option<zone::Zone>,
) -> Result<Tested, super::PluginError> {
    let rt = runtime(work_dir, zone.map(|z| Resolver::Zone(Arc::new(z))))?;
    let mut steps: Vec<serde_json::Value> = Vec::new();
    let loaded = rt.load(std::slice::from_ref(cfg)).await?;
    let p = Arc::clone(&loaded[0]);
    rt.swap(loaded);
    let mut out = format!(
        "plugin {} {} (sha256 {})\nhooks: {}\n",
        p.cfg.name,
        p.version,
        p.hash,
        p.hooks
            .iter()
            .map(|h| hook_name(*h))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut sp = SessionPlugins::new(Arc::clone(&rt));
    let mut ctx = super::dispatch::context(&super::dispatch::Facts {
        client_ip: "192.0.2.1".into(),
        client_port: 50000,
        client_name: None,
        helo: Some("client.example"),
        tls: None,
        sender: None,
        recipients: vec![],
        message_id: None,
        vars: &[],
        checks: vec![],
        auth_user: None,
    });
    let hooked = |h: Hook| p.hooks.contains(&h);
    let show = |hook: &str, o: &Outcome| {
        let mut s = format!("{hook}: ");
        s.push_str(&match &o.verdict {
            None => "continue".to_string(),
            Some(v) => verdict_text(v),
        });
        for a in &o.actions {
            s.push_str(&format!("\n    {}", action_text(a)));
        }
        for (_, why, policy) in &o.failures {
            s.push_str(&format!("\n    FAILED: {why} (policy {policy:?})"));
        }
        s.push('\n');
        s
    };
    let apply_vars = |ctx: &mut wit::Context, o: &Outcome| {
        for a in &o.actions {
            if let wit::Action::SetVar((k, v)) = a {
                ctx.vars.retain(|(n, _)| n != k);
                ctx.vars.push((k.clone(), v.clone()));
            }
        }
    };
    let mark = |h: Hook, name: String| {
        if hooked(h) {
            name
        } else {
            format!("{name} (not hooked)")
        }
    };
    let o = sp.run(&ctx, Call::Connect).await;
    out.push_str(&show(&mark(Hook::Connect, "connect".into()), &o));
    steps.push(step_json("connect", None, hooked(Hook::Connect), &o));
    apply_vars(&mut ctx, &o);
    let o = sp.run(&ctx, Call::Helo).await;
    out.push_str(&show(&mark(Hook::Helo, "helo".into()), &o));
    steps.push(step_json("helo", None, hooked(Hook::Helo), &o));
    apply_vars(&mut ctx, &o);
    ctx.sender = Some(sender.to_string());
    let o = sp.run(&ctx, Call::MailFrom).await;
    out.push_str(&show(
        &mark(Hook::MailFrom, format!("mail-from <{sender}>")),
        &o,
    ));
    steps.push(step_json(
        "mail-from",
        Some(sender),
        hooked(Hook::MailFrom),
        &o,
    ));
    apply_vars(&mut ctx, &o);
    for r in recipients {
        let o = sp.run(&ctx, Call::RcptTo(r)).await;
        out.push_str(&show(&mark(Hook::RcptTo, format!("rcpt-to <{r}>")), &o));
        steps.push(step_json("rcpt-to", Some(r), hooked(Hook::RcptTo), &o));
        apply_vars(&mut ctx, &o);
        if o.verdict
            .as_ref()
            .is_none_or(|v| !matches!(v, wit::Verdict::Reject(_) | wit::Verdict::Defer(_)))
        {
            ctx.recipients.push(r.clone());
        }
    }
    let mut data = message.to_vec();
    if !data.windows(2).any(|w| w == b"\r\n") {
        // A file with LF line endings: canonicalise to CRLF.
        data = String::from_utf8_lossy(message)
            .replace('\n', "\r\n")
            .into_bytes();
    }
    let data = Arc::new(data);
    let o = sp.run(&ctx, Call::Data(Arc::clone(&data))).await;
    out.push_str(&show(&mark(Hook::Data, "data".into()), &o));
    steps.push(step_json("data", None, hooked(Hook::Data), &o));
    apply_vars(&mut ctx, &o);
    // Routing and delivery, as if every recipient were remote.
    ctx.message_id = Some("offline-test".into());
    let mut transports: Vec<(String, String, Option<String>)> = Vec::new();
    let mut outgoing: Vec<(String, String)> = Vec::new();
    for r in ctx.recipients.clone() {
        let info = wit::RouteInfo {
            recipient: r.clone(),
            original: None,
            remote: true,
        };
        if !hooked(Hook::Route) {
            out.push_str(&format!("route <{r}> (not hooked): unchanged\n"));
            steps.push(
                serde_json::json!({"hook": "route", "target": r, "hooked": false, "recipient": r}),
            );
            outgoing.push((sender.to_string(), r));
            continue;
        }
        let d = sp.route(&ctx, &info).await;
        let mut line = format!("route <{r}>: recipient <{}>", d.recipient);
        if let Some(s) = &d.sender {
            line.push_str(&format!(", sender <{s}>"));
        }
        if let Some(t) = &d.transport {
            line.push_str(&format!(", transport {t}"));
        }
        for (n, v) in &d.headers {
            line.push_str(&format!("\n    header {n}: {v}"));
        }
        for (_, why, policy) in &d.failures {
            line.push_str(&format!("\n    FAILED: {why} (policy {policy:?})"));
        }
        out.push_str(&line);
        out.push('\n');
        steps.push(serde_json::json!({
            "hook": "route", "target": r, "hooked": true, "recipient": d.recipient,
            "sender": d.sender, "transport": d.transport,
            "headers": d.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>(),
            "failures": d.failures.iter().map(|(_, why, p)| format!("{why} (policy {p:?})")).collect::<Vec<_>>(),
        }));
        let s = d.sender.unwrap_or_else(|| sender.to_string());
        match d.transport {
            Some(t) => transports.push((t, d.recipient, Some(s))),
            None => outgoing.push((s, d.recipient)),
        }
    }
    for (s, r) in &outgoing {
        let del = wit::Delivery {
            message_id: "offline-test".into(),
            sender: s.clone(),
            recipients: vec![r.clone()],
            domain: r.rsplit_once('@').map_or("", |x| x.1).to_lowercase(),
        };
        let o = sp.run(&ctx, Call::Deliver(&del, Arc::clone(&data))).await;
        out.push_str(&show(&mark(Hook::Deliver, format!("deliver <{r}>")), &o));
        steps.push(step_json("deliver", Some(r), hooked(Hook::Deliver), &o));
    }
    for (t, r, s) in transports {
        let del = wit::Delivery {
            message_id: "offline-test".into(),
            sender: s.unwrap_or_default(),
            recipients: vec![r.clone()],
            domain: String::new(),
        };
        let line = match sp.transport(&t, &ctx, &del, Arc::clone(&data)).await {
            Ok(wit::TransportResult::Delivered(x)) => format!("delivered: {x}"),
            Ok(wit::TransportResult::Deferred(x)) => format!("deferred: {x}"),
            Ok(wit::TransportResult::Failed(x)) => format!("failed: {x}"),
            Err(e) => format!("FAILED: {e}"),
        };
        out.push_str(&format!("transport <{r}>: {line}\n"));
        steps.push(
            serde_json::json!({"hook": "transport", "target": r, "hooked": true, "result": line}),
        );
    }
    let (calls, failures) = (
        p.calls.load(Ordering::Relaxed),
        p.failures.load(Ordering::Relaxed),
    );
    out.push_str(&format!("calls: {calls}, failures: {failures}\n"));
    let json = serde_json::json!({
        "plugin": {
            "name": p.cfg.name,
            "version": p.version,
            "sha256": p.hash,
            "hooks": p.hooks.iter().map(|h| hook_name(*h)).collect::<Vec<_>>(),
        },
        "steps": steps,
        "calls": calls,
        "failures": failures,
    });
    Ok(Tested { text: out, json })
}

/// A verdict as `mailgate plugin test` and `auth check` print it.
pub fn verdict_text(v: &wit::Verdict) -> String {
    match v {
        wit::Verdict::Continue => "continue".into(),
        wit::Verdict::Accept => "accept".into(),
        wit::Verdict::Reject(r) => format!("reject {} {} {}", r.code, r.enhanced, r.text),
        wit::Verdict::Defer(r) => format!("defer {} {} {}", r.code, r.enhanced, r.text),
        wit::Verdict::Discard => "discard".into(),
        wit::Verdict::Quarantine(why) => format!("quarantine ({why})"),
    }
}

fn action_text(a: &wit::Action) -> String {
    match a {
        wit::Action::AddHeader((n, v)) => format!("add-header {n}: {v}"),
        wit::Action::RemoveHeader(n) => format!("remove-header {n}"),
        wit::Action::SetSender(s) => format!("set-sender <{s}>"),
        wit::Action::AddRecipient(r) => format!("add-recipient <{r}>"),
        wit::Action::RemoveRecipient(r) => format!("remove-recipient <{r}>"),
        wit::Action::SetVar((k, v)) => format!("set-var {k}={v}"),
        wit::Action::AddAuthResult(e) => format!("add-auth-result {e}"),
        wit::Action::Redirect(r) => format!("redirect <{r}>"),
    }
}
