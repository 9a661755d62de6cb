//! The delivery side of dispatch: `on-deliver` before each outgoing
//! SMTP transaction (header changes to the copy sent, or stopping the
//! delivery) and `on-transport` for recipients a route hook handed to a
//! plugin. A fresh instance per transaction, as in sessions.

use super::{envelope_context as context, log_failures};
use crate::outbound::deliver::{Group, Report, Result1};
use crate::plugin::bindings::mailgate::plugin::types as wit;
use crate::plugin::{Call, Runtime, SessionPlugins};
use crate::spool::Envelope;
use std::sync::Arc;

fn delivery(env: &Envelope, g: &Group, idxs: &[usize]) -> wit::Delivery {
    wit::Delivery {
        message_id: env.id.clone(),
        sender: g.sender.clone(),
        recipients: idxs
            .iter()
            .map(|&i| env.recipients[i].address.clone())
            .collect(),
        domain: if g.transport.is_some() {
            String::new()
        } else {
            g.domain.clone()
        },
    }
}

fn report(text: String, status: &str) -> Report {
    Report {
        host_field: String::new(),
        text,
        reply: None,
        status: status.into(),
        remote: None,
    }
}

/// Run the deliver hooks for one SMTP transaction. `Ok` carries the
/// content to send (changed when a plugin added or removed headers);
/// `Err` the outcome for every recipient when a plugin stopped it.
pub async fn deliver(
    rt: &Arc<Runtime>,
    env: &Envelope,
    g: &Group,
    idxs: &[usize],
    data: Arc<Vec<u8>>,
    log: &crate::log::MainLog,
) -> Result<Arc<Vec<u8>>, Result1> {
    let mut sp = SessionPlugins::new(Arc::clone(rt));
    if !sp.has_hook(wit::Hook::Deliver) {
        return Ok(data);
    }
    let d = delivery(env, g, idxs);
    let o = sp
        .run(&context(env), Call::Deliver(&d, Arc::clone(&data)))
        .await;
    log_failures(
        log,
        &env.id,
        &format!("delivery to {}", g.domain),
        &o.failures,
    );
    super::log_shadows(
        log,
        &env.id,
        &format!("delivery to {}", g.domain),
        &o.shadows,
    );
    match o.verdict {
        Some(wit::Verdict::Reject(r)) => {
            return Err(Result1::Failed(report(
                format!("refused by plugin: {} {}", r.code, r.text),
                if r.enhanced.is_empty() {
                    "5.7.0"
                } else {
                    &r.enhanced
                },
            )));
        }
        Some(wit::Verdict::Defer(r)) => {
            return Err(Result1::Deferred(report(
                format!("deferred by plugin: {} {}", r.code, r.text),
                if r.enhanced.is_empty() {
                    "4.7.0"
                } else {
                    &r.enhanced
                },
            )));
        }
        _ => {}
    }
    let mut add = String::new();
    let mut content: Option<Vec<u8>> = None;
    for a in o.actions {
        match a {
            wit::Action::AddHeader((n, v)) => add.push_str(&format!("{n}: {v}\r\n")),
            wit::Action::RemoveHeader(n) => {
                let c = content.get_or_insert_with(|| data.to_vec());
                crate::smtp::header::remove_header(c, &n);
            }
            other => tracing::debug!(id = %env.id, ?other, "action ignored at delivery"),
        }
    }
    if add.is_empty() && content.is_none() {
        return Ok(data);
    }
    let body = content.unwrap_or_else(|| data.to_vec());
    let mut out = add.into_bytes();
    out.extend_from_slice(&body);
    Ok(Arc::new(out))
}

/// Hand recipients to a plugin's transport hook.
pub async fn transport(
    rt: &Arc<Runtime>,
    env: &Envelope,
    g: &Group,
    idxs: &[usize],
    data: Arc<Vec<u8>>,
) -> Vec<(usize, Result1)> {
    let name = g.transport.clone().unwrap_or_default();
    let mut sp = SessionPlugins::new(Arc::clone(rt));
    let d = delivery(env, g, idxs);
    let r = match sp.transport(&name, &context(env), &d, data).await {
        Ok(wit::TransportResult::Delivered(t)) => Result1::Delivered(format!(
            "R=plugin T={name} C=\"{}\"",
            t.replace(['\r', '\n'], " ").replace('"', "\\\"")
        )),
        Ok(wit::TransportResult::Deferred(t)) => Result1::Deferred(report(t, "4.0.0")),
        Ok(wit::TransportResult::Failed(t)) => Result1::Failed(report(t, "5.0.0")),
        // A broken transport never loses mail: try again later.
        Err(e) => Result1::Deferred(report(format!("plugin {name} failed: {e}"), "4.3.0")),
    };
    idxs.iter().map(|&i| (i, r.clone())).collect()
}
