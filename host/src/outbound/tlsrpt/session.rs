//! What each outbound connection attempt counts as in a TLS report: the
//! policy it falls under (the host's secure TLSA records first, as DANE
//! wins, then the domain's MTA-STS policy, else `no-policy-found`) and
//! its outcome. Connections that never reached TLS for reasons TLS has
//! nothing to do with (refused, a 4xx greeting) and cleartext deliveries
//! under the `none` level are not sessions a report counts.

use super::result::{FailureDetail, Outcome, PolicyId, PolicyType, ResultType, reason_code};
use crate::outbound::client::{Connection, OpenFailure};
use crate::outbound::hop::Host;
use crate::outbound::mta_sts::{Mode, Policy, StsFailure};
use crate::outbound::policy::TlsaState;
use crate::outbound::tls::ClientTls;
use crate::smtp::client::Stage;
use crate::smtp::client::conversation::TlsMode;
use std::net::SocketAddr;

/// What MTA-STS gave for the destination domain.
#[derive(Debug, Clone, Copy)]
pub enum Sts<'a> {
    /// No policy.
    None,
    /// A policy in force (enforce or testing).
    Policy(&'a Policy),
    /// The domain publishes MTA-STS but no policy could be had.
    Failed(&'a StsFailure),
}

/// The policy sessions to `host` count under.
pub fn policy_of(host: &Host, sts: Sts<'_>) -> PolicyId {
    match &host.tlsa {
        TlsaState::Secure(r) if !r.is_empty() => PolicyId::tlsa(&host.name, r),
        TlsaState::Failed(_) => PolicyId::tlsa(&host.name, &[]),
        _ => match sts {
            Sts::Policy(p) => PolicyId::sts(Some(p)),
            Sts::Failed(_) => PolicyId::sts(None),
            Sts::None => PolicyId::none(),
        },
    }
}

/// A failure of `kind` at `host` (address `addr`, ours `local`).
pub fn failure(
    kind: ResultType,
    host: &str,
    addr: Option<SocketAddr>,
    local: Option<SocketAddr>,
    reason: &str,
) -> Outcome {
    Outcome::Failure(FailureDetail {
        result: kind,
        sending_ip: local.map(|a| a.ip().to_string()),
        receiving_mx: Some(host.trim_end_matches('.').to_ascii_lowercase()),
        receiving_ip: addr.map(|a| a.ip().to_string()),
        reason: Some(reason_code(reason)),
    })
}

/// The outcome of connection `c`, opened in `mode` under `policy`.
/// `tls` checks what a `testing` MTA-STS policy would have demanded.
pub fn opened(
    c: &Connection,
    mode: TlsMode,
    policy: &PolicyId,
    sts: Sts<'_>,
    tls: &ClientTls,
) -> Option<Outcome> {
    if mode == TlsMode::Off {
        return None;
    }
    let fail = |kind, reason: &str| Some(failure(kind, &c.host, Some(c.addr), c.local, reason));
    if policy.kind == PolicyType::Sts
        && let Sts::Failed(f) = sts
    {
        return fail(f.kind, &f.text);
    }
    if c.tls.is_none() {
        return fail(
            c.tls_problem.unwrap_or(ResultType::StarttlsNotSupported),
            "TLS was not established; delivered in clear",
        );
    }
    if policy.kind == PolicyType::Sts
        && let Sts::Policy(p) = sts
        && p.mode == Mode::Testing
    {
        if !p.matches(&c.host) {
            return fail(
                ResultType::ValidationFailure,
                "MX host not listed in the MTA-STS policy",
            );
        }
        if c.cv == "no"
            && let Err(e) = tls.check_pkix(&c.peer_chain, &[c.host.to_ascii_lowercase()])
        {
            return fail(e.kind, &e.text);
        }
    }
    Some(Outcome::Success)
}

/// The outcome of an attempt to `host` at `addr` that failed to open.
pub fn open_failed(
    f: &OpenFailure,
    host: &str,
    addr: SocketAddr,
    policy: &PolicyId,
    sts: Sts<'_>,
) -> Option<Outcome> {
    if policy.kind == PolicyType::Sts
        && let Sts::Failed(x) = sts
    {
        return Some(failure(x.kind, host, Some(addr), f.local, &x.text));
    }
    let no_starttls = f.failure.stage == Stage::StartTls
        || (f.failure.stage == Stage::Local && f.failure.text.contains("STARTTLS"));
    let kind = f
        .tls
        .or(no_starttls.then_some(ResultType::StarttlsNotSupported))?;
    Some(failure(kind, host, Some(addr), f.local, &f.failure.text))
}
