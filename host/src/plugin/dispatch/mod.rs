//! Dispatch: the one adapter between the mail flow and the plugins. It
//! builds the hook [`wit::Context`] from what a stage knows, runs the hooks,
//! logs failures with their policy, and turns verdicts and actions back
//! into what the stage does: SMTP replies and transaction changes for
//! sessions ([`session`]), header changes or outcomes for deliveries
//! ([`delivery`]).

pub mod delivery;
pub mod session;

use crate::config::plugin::OnFailure;
use crate::log::{Event, MainLog};
use crate::plugin::bindings::mailgate::plugin::types as wit;
use crate::spool::{Envelope, TlsDetails};

/// What a stage knows about the message and its client, for the context.
pub struct Facts<'a> {
    /// Client IP address, as text.
    pub client_ip: String,
    /// Client port.
    pub client_port: u16,
    /// The client's host name, when iprev verified one.
    pub client_name: Option<&'a str>,
    /// HELO name, once given.
    pub helo: Option<&'a str>,
    /// TLS of the inbound connection.
    pub tls: Option<&'a TlsDetails>,
    /// Envelope sender, once given ("" for <>).
    pub sender: Option<&'a str>,
    /// Recipients accepted so far.
    pub recipients: Vec<String>,
    /// The queue id, once the message has one.
    pub message_id: Option<&'a str>,
    /// Variables set by earlier hooks.
    pub vars: &'a [(String, String)],
    /// The host's authentication results so far (iprev, SPF, DKIM).
    pub checks: Vec<wit::CheckResult>,
    /// The login of a successful SMTP AUTH.
    pub auth_user: Option<&'a str>,
}

/// The hook context for `f`.
pub fn context(f: &Facts<'_>) -> wit::Context {
    wit::Context {
        client_ip: f.client_ip.clone(),
        client_port: f.client_port,
        client_name: f.client_name.map(str::to_string),
        helo: f.helo.map(str::to_string),
        tls: f.tls.map(|t| wit::TlsInfo {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            resumed: t.resumed,
            sni: t.sni.clone(),
        }),
        auth_user: f.auth_user.map(str::to_string),
        sender: f.sender.map(str::to_string),
        recipients: f.recipients.clone(),
        message_id: f.message_id.map(str::to_string),
        vars: f.vars.to_vec(),
        checks: f.checks.clone(),
    }
}

/// The hook context for a spooled message (delivery-time hooks).
pub fn envelope_context(env: &Envelope) -> wit::Context {
    context(&Facts {
        client_ip: env.client_ip.clone(),
        client_port: env.client_port,
        // Not kept in the spool: the Authentication-Results header names
        // the verified host for delivery-time plugins.
        client_name: None,
        helo: Some(&env.helo),
        tls: env.tls.as_ref(),
        sender: Some(&env.sender),
        recipients: env.recipients.iter().map(|r| r.address.clone()).collect(),
        message_id: Some(&env.id),
        vars: &env.vars,
        // Delivery-time plugins read the results from our
        // Authentication-Results header in the message.
        checks: vec![],
        auth_user: None,
    })
}

/// Log each plugin failure of a hook run: `{who} plugin {name} failed at
/// {stage}: {reason}; policy {policy}`, `who` being the client host or the
/// message id.
pub fn log_failures(
    log: &MainLog,
    who: &str,
    stage: &str,
    failures: &[(String, String, OnFailure)],
) {
    for (name, reason, policy) in failures {
        log.event(&Event::PluginFailed {
            who: who.to_string(),
            plugin: name.clone(),
            stage: stage.to_string(),
            reason: reason.clone(),
            policy: policy.to_string(),
        });
    }
}

/// Log where shadows answered otherwise than their active plugins.
pub fn log_shadows(
    log: &MainLog,
    who: &str,
    stage: &str,
    diffs: &[crate::plugin::shadow::Difference],
) {
    for d in diffs {
        let stage = match &d.detail {
            Some(x) => format!("{stage} {x}"),
            None => stage.to_string(),
        };
        log.event(&Event::ShadowDiffered {
            who: who.to_string(),
            shadow: d.shadow.clone(),
            active: d.active.clone(),
            stage,
            theirs: d.theirs.clone(),
            mine: d.mine.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_carries_what_the_stage_knows() {
        let vars = vec![("k".to_string(), "v".to_string())];
        let c = context(&Facts {
            client_ip: "192.0.2.7".into(),
            client_port: 4000,
            client_name: Some("mail.c.test"),
            helo: Some("c.test"),
            tls: None,
            sender: Some(""),
            recipients: vec!["a@b.test".into()],
            message_id: None,
            vars: &vars,
            checks: vec![wit::CheckResult {
                method: "spf".into(),
                outcome: "pass".into(),
                detail: "smtp.mailfrom=a@b.test".into(),
            }],
            auth_user: Some("alice"),
        });
        assert_eq!(c.auth_user.as_deref(), Some("alice"));
        assert_eq!(c.client_ip, "192.0.2.7");
        assert_eq!(c.client_name.as_deref(), Some("mail.c.test"));
        assert_eq!(c.helo.as_deref(), Some("c.test"));
        assert_eq!(c.sender.as_deref(), Some(""));
        assert_eq!(c.recipients, vec!["a@b.test".to_string()]);
        assert_eq!(c.vars, vars);
        assert!(c.tls.is_none() && c.message_id.is_none());
        assert_eq!(c.checks[0].detail, "smtp.mailfrom=a@b.test");
    }
}
