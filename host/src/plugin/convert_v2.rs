//! Between the host's hook types (contract 0.1's, which the host uses
//! inside) and contract 0.2's: the context with typed checks out, answers
//! with typed status codes in.

use super::bindings::exports::mailgate::plugin::plugin as p1;
use super::bindings::mailgate::plugin::types as v1;
use super::bindings_v2::mailgate::plugin::types as v2;

/// RFC 8601 result words.
fn outcome(s: &str) -> v2::CheckOutcome {
    use v2::CheckOutcome as O;
    match s {
        "pass" => O::Pass,
        "fail" => O::Fail,
        "softfail" => O::Softfail,
        "neutral" => O::Neutral,
        "temperror" => O::Temperror,
        "permerror" => O::Permerror,
        "policy" => O::Policy,
        _ => O::None,
    }
}

/// `name=value` properties of a check's detail, in order.
fn props(detail: &str) -> Vec<(&str, &str)> {
    detail
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect()
}

fn prop<'a>(detail: &'a [(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    detail.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// The host's checks (and the ARC plugin's variables) as typed records.
fn checks(c: &v1::Context) -> v2::Checks {
    let mut out = v2::Checks {
        iprev: None,
        spf: vec![],
        dkim: vec![],
        arc: None,
    };
    for r in &c.checks {
        let p = props(&r.detail);
        match r.method.as_str() {
            "iprev" => {
                out.iprev = Some(v2::IprevResult {
                    outcome: outcome(&r.outcome),
                    name: c.client_name.clone().filter(|_| r.outcome == "pass"),
                })
            }
            "spf" => {
                let (identity, subject) = match (prop(&p, "smtp.helo"), prop(&p, "smtp.mailfrom")) {
                    (Some(h), _) => (v2::SpfIdentity::Helo, h),
                    (None, Some(m)) => (v2::SpfIdentity::MailFrom, m),
                    (None, None) => continue,
                };
                out.spf.push(v2::SpfResult {
                    identity,
                    subject: subject.to_string(),
                    outcome: outcome(&r.outcome),
                });
            }
            "dkim" => out.dkim.push(v2::DkimResult {
                outcome: outcome(&r.outcome),
                domain: prop(&p, "header.d").unwrap_or_default().to_string(),
                selector: prop(&p, "header.s").unwrap_or_default().to_string(),
                identity: prop(&p, "header.i").map(str::to_string),
                algorithm: prop(&p, "header.a").unwrap_or_default().to_string(),
                body_length: prop(&p, "l").and_then(|l| l.parse().ok()),
                reason: None,
            }),
            _ => {}
        }
    }
    let var = |n: &str| c.vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if let Some(cv) = var("arc.cv") {
        out.arc = Some(v2::ArcResult {
            outcome: outcome(cv),
            sets: var("arc.instances")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            sealer: var("arc.domains")
                .and_then(|d| d.split(',').next())
                .filter(|d| !d.is_empty())
                .map(str::to_string),
        });
    }
    out
}

/// A hook context as 0.2 has it.
pub fn context(c: &v1::Context) -> v2::Context {
    v2::Context {
        client_ip: c.client_ip.clone(),
        client_port: c.client_port,
        client_name: c.client_name.clone(),
        helo: c.helo.clone(),
        tls: c.tls.as_ref().map(|t| v2::TlsInfo {
            version: if t.version == "TLS1.2" {
                v2::TlsVersion::Tls12
            } else {
                v2::TlsVersion::Tls13
            },
            cipher: t.cipher.clone(),
            resumed: t.resumed,
            sni: t.sni.clone(),
        }),
        auth_user: c.auth_user.clone(),
        sender: c.sender.clone(),
        recipients: c.recipients.clone(),
        message_id: c.message_id.clone(),
        vars: c.vars.clone(),
        checks: checks(c),
    }
}

fn reply(r: v2::SmtpReply) -> v1::SmtpReply {
    v1::SmtpReply {
        code: r.code,
        enhanced: r
            .enhanced
            .map(|e| format!("{}.{}.{}", e.class, e.subject, e.detail))
            .unwrap_or_default(),
        text: r.text,
    }
}

/// A 0.2 answer in the host's terms.
pub fn response(r: v2::Response) -> v1::Response {
    use v1::Verdict as V1;
    use v2::Verdict as V2;
    v1::Response {
        verdict: match r.verdict {
            V2::Continue => V1::Continue,
            V2::Accept => V1::Accept,
            V2::Reject(x) => V1::Reject(reply(x)),
            V2::Defer(x) => V1::Defer(reply(x)),
            V2::Discard => V1::Discard,
            V2::Quarantine(why) => V1::Quarantine(why),
        },
        actions: r
            .actions
            .into_iter()
            .map(|a| {
                use v1::Action as A1;
                use v2::Action as A2;
                match a {
                    A2::AddHeader(h) => A1::AddHeader((h.name, h.value)),
                    A2::RemoveHeader(n) => A1::RemoveHeader(n),
                    A2::SetSender(s) => A1::SetSender(s),
                    A2::AddRecipient(r) => A1::AddRecipient(r),
                    A2::RemoveRecipient(r) => A1::RemoveRecipient(r),
                    A2::SetVar(kv) => A1::SetVar(kv),
                    A2::AddAuthResult(e) => A1::AddAuthResult(e),
                    A2::Redirect(a) => A1::Redirect(a),
                }
            })
            .collect(),
    }
}

/// A recipient to route, as 0.2 has it.
pub fn route_info(r: &v1::RouteInfo) -> v2::RouteInfo {
    v2::RouteInfo {
        recipient: r.recipient.clone(),
        original: r.original.clone(),
        remote: r.remote,
    }
}

/// A 0.2 route decision in the host's terms.
pub fn route_decision(d: v2::RouteDecision) -> p1::RouteDecision {
    p1::RouteDecision {
        recipient: d.recipient,
        sender: d.sender,
        transport: d.transport,
    }
}

/// An outgoing transaction, as 0.2 has it.
pub fn delivery(d: &v1::Delivery) -> v2::Delivery {
    v2::Delivery {
        message_id: d.message_id.clone(),
        sender: d.sender.clone(),
        recipients: d.recipients.clone(),
        domain: d.domain.clone(),
    }
}

/// A 0.2 transport result in the host's terms.
pub fn transport_result(r: v2::TransportResult) -> v1::TransportResult {
    match r {
        v2::TransportResult::Delivered(s) => v1::TransportResult::Delivered(s),
        v2::TransportResult::Deferred(s) => v1::TransportResult::Deferred(s),
        v2::TransportResult::Failed(s) => v1::TransportResult::Failed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_become_typed_records() {
        let check = |method: &str, outcome: &str, detail: &str| v1::CheckResult {
            method: method.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        };
        let c = v1::Context {
            client_ip: "192.0.2.7".into(),
            client_port: 25,
            client_name: Some("mail.example.org".into()),
            helo: Some("mail.example.org".into()),
            tls: None,
            auth_user: None,
            sender: Some("a@example.org".into()),
            recipients: vec![],
            message_id: None,
            vars: vec![
                ("arc.cv".into(), "pass".into()),
                ("arc.instances".into(), "2".into()),
                ("arc.domains".into(), "fwd.example,list.example".into()),
            ],
            checks: vec![
                check("iprev", "pass", "policy.iprev=192.0.2.7"),
                check("spf", "pass", "smtp.helo=mail.example.org"),
                check("spf", "softfail", "smtp.mailfrom=a@example.org"),
                check(
                    "dkim",
                    "fail",
                    "header.d=example.org header.i=@example.org header.s=s1 header.a=rsa-sha256 header.b=abcd l=100",
                ),
            ],
        };
        let k = context(&c).checks;
        let iprev = k.iprev.unwrap();
        assert!(matches!(iprev.outcome, v2::CheckOutcome::Pass));
        assert_eq!(iprev.name.as_deref(), Some("mail.example.org"));
        assert!(matches!(k.spf[0].identity, v2::SpfIdentity::Helo));
        assert!(matches!(k.spf[1].identity, v2::SpfIdentity::MailFrom));
        assert!(matches!(k.spf[1].outcome, v2::CheckOutcome::Softfail));
        assert_eq!(k.spf[1].subject, "a@example.org");
        let d = &k.dkim[0];
        assert!(matches!(d.outcome, v2::CheckOutcome::Fail));
        assert_eq!(
            (d.domain.as_str(), d.selector.as_str(), d.algorithm.as_str()),
            ("example.org", "s1", "rsa-sha256")
        );
        assert_eq!(d.identity.as_deref(), Some("@example.org"));
        assert_eq!(d.body_length, Some(100));
        let arc = k.arc.unwrap();
        assert_eq!(arc.sets, 2);
        assert_eq!(arc.sealer.as_deref(), Some("fwd.example"));
    }

    #[test]
    fn enhanced_codes_become_text() {
        let r = response(v2::Response {
            verdict: v2::Verdict::Reject(v2::SmtpReply {
                code: 550,
                enhanced: Some(v2::EnhancedStatus {
                    class: 5,
                    subject: 7,
                    detail: 1,
                }),
                text: "no".into(),
            }),
            actions: vec![v2::Action::AddHeader(v2::HeaderField {
                name: "X-A".into(),
                value: "1".into(),
            })],
        });
        let v1::Verdict::Reject(rep) = r.verdict else {
            panic!()
        };
        assert_eq!(rep.enhanced, "5.7.1");
        assert!(matches!(&r.actions[0], v1::Action::AddHeader((n, v)) if n == "X-A" && v == "1"));
    }
}
