//! DMARC (RFC 7489, with DMARCbis `np`) as a mailgate plugin, at end of
//! data. The host has checked SPF and DKIM (the typed `checks` of the
//! context); this plugin finds the From domain's policy through the host's
//! resolver (capability `dns`), aligns the authenticated identifiers with it and
//! says so in our Authentication-Results header (`dmarc=pass
//! header.from=... policy.dmarc=...`). Failing mail gets the policy:
//! `reject` is refused with 550 5.7.1 naming the domain, `quarantine` goes
//! to the host's quarantine, `none` is delivered; `pct` samples with the
//! `random` capability. Grant `dns` and `random` (and `directories` for a
//! public suffix list): the plugin imports them, and does not load
//! without them.
//!
//! A failing message whose ARC chain passed (`checks.arc`, from the ARC
//! plugin running before this one) and was sealed by a configured
//! trusted sealer (`arc.domains`) is delivered: forwarders and lists break
//! SPF and DKIM. This is recorded as `policy.override=trusted_forwarder`.
//!
//! Config (all optional):
//! - `public_suffix_list`: the list's path inside the sandbox (grant
//!   `directories`, e.g. `{ psl = "/usr/share/publicsuffix" }` and
//!   `"/psl/public_suffix_list.dat"`); without it the DMARCbis tree walk
//!   finds Organizational Domains through DNS.
//! - `trusted_arc_sealers`: ARC sealing domains whose passing chains
//!   override a failure.
//! - `reject` (true): honour `p=reject`; false quarantines instead.
//! - `quarantine` (true): honour `quarantine`; false delivers.
//!
//! Variables set for later plugins and the host's aggregate report:
//! `dmarc.result`, `dmarc.domain` (the From domain), `dmarc.policy`,
//! `dmarc.disposition`, `dmarc.spf` and `dmarc.dkim` (aligned `pass` or
//! `fail`), and with a record `dmarc.record-domain` (where it was found),
//! `dmarc.published` (`p=..; sp=..; adkim=..; aspf=..; pct=..`),
//! `dmarc.rua` (its `rua` URIs, comma-separated) and, when the policy was
//! not applied, `dmarc.override` (`TYPE comment`: `sampled_out`,
//! `local_policy`, `trusted_forwarder`).

pub mod policy;
pub mod psl;
pub mod record;

use mailgate_plugin_sdk::*;
use policy::{Authenticated, Discovery, Dns, Evaluation, Outcome};
use record::Policy;
use std::sync::OnceLock;

struct Dmarc;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    public_suffix_list: Option<String>,
    #[serde(default)]
    trusted_arc_sealers: Vec<String>,
    #[serde(default = "yes")]
    reject: bool,
    #[serde(default = "yes")]
    quarantine: bool,
}

fn yes() -> bool {
    true
}

struct Settings {
    psl: Option<psl::Psl>,
    trusted: Vec<String>,
    reject: bool,
    quarantine: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// DNS through the host.
struct HostDns;

/// A lookup error as a reason (a `temperror` for the message). Without
/// the `dns` grant the plugin does not load at all.
fn failed(e: CapError, name: &str) -> String {
    format!("{name}: {}", e.reason())
}

impl Dns for HostDns {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, String> {
        txt_records(name).map_err(|e| failed(e, name))
    }

    fn exists(&mut self, name: &str) -> Result<bool, String> {
        for t in [
            dns::RecordType::A,
            dns::RecordType::Aaaa,
            dns::RecordType::Mx,
        ] {
            let a = dns::lookup(name, t).map_err(|e| failed(e, name))?;
            if !a.records.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The domain of the one address in the message's From field(s); none
/// when there is no From, more than one field, or addresses of several
/// domains (RFC 7489 §6.6.1).
pub fn from_domain(values: &[String]) -> Option<String> {
    let [value] = values else {
        return None;
    };
    let mut domains: Vec<String> = vec![];
    for part in split_addresses(value) {
        let addr = match (part.rfind('<'), part.rfind('>')) {
            (Some(i), Some(j)) if j > i => &part[i + 1..j],
            _ => part.as_str(),
        };
        let d = addr.trim().rsplit_once('@')?.1.trim().to_ascii_lowercase();
        if d.is_empty() {
            return None;
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    match domains.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Addresses of a From value, split at commas outside quotes and angle
/// brackets.
fn split_addresses(v: &str) -> Vec<String> {
    let (mut out, mut cur) = (vec![], String::new());
    let (mut quoted, mut angle) = (false, false);
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// The identifiers the host authenticated, from its typed checks: the
/// domain of the MAIL FROM identity when SPF passed for it, and the `d=`
/// of every passing DKIM signature.
pub fn authenticated(checks: &Checks) -> Authenticated {
    let mut a = Authenticated::default();
    for c in &checks.spf {
        if c.outcome == CheckOutcome::Pass && c.identity == SpfIdentity::MailFrom {
            a.spf_pass = c
                .subject
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase());
        }
    }
    for c in &checks.dkim {
        if c.outcome == CheckOutcome::Pass && !c.domain.is_empty() {
            a.dkim_pass.push(c.domain.to_ascii_lowercase());
        }
    }
    a
}

/// The Authentication-Results entry for `e`, with the disposition and
/// any override.
pub fn result_entry(e: &Evaluation, dis: Policy, override_by: Option<&str>) -> String {
    let mut s = format!("dmarc={}", e.outcome.name());
    let policy = e.record.as_ref().map(|(_, r)| r.p);
    if let Some(p) = policy {
        s.push_str(&format!(" (p={} dis={}", p.name(), dis.name()));
        if let Some(by) = override_by {
            s.push_str(&format!("; ARC sealed by {by}"));
        }
        s.push(')');
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(
            " reason=\"{}\"",
            r.replace(['"', '\\', '\r', '\n'], " ")
        ));
    }
    if !e.from.is_empty() {
        s.push_str(&format!(" header.from={}", e.from));
    }
    if policy.is_some() {
        s.push_str(&format!(" policy.dmarc={}", e.requested.name()));
    }
    if override_by.is_some() {
        s.push_str(" policy.override=trusted_forwarder");
    }
    s
}

/// The first sealer of a passing ARC chain that is trusted: every sealing
/// domain the ARC plugin listed (`arc.domains`, newest first), or the
/// newest sealer when it listed none.
fn trusted_sealer(ctx: &Context, arc: &ArcResult, trusted: &[String]) -> Option<String> {
    let listed: Vec<String> = match ctx.var("arc.domains") {
        Some(list) => list
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .collect(),
        None => arc.sealer.iter().map(|d| d.to_ascii_lowercase()).collect(),
    };
    listed.into_iter().find(|d| trusted.contains(d))
}

fn pass_fail(ok: bool) -> &'static str {
    if ok { "pass" } else { "fail" }
}

fn sample() -> u8 {
    match random::bytes(2)[..] {
        [a, b] => (u16::from_be_bytes([a, b]) % 100) as u8,
        _ => 0,
    }
}

impl Plugin for Dmarc {
    const NAME: &'static str = "dmarc";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        let psl = match &c.public_suffix_list {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("public_suffix_list {path}: {e}"))?;
                let p = psl::Psl::parse(&text);
                if p.is_empty() {
                    return Err(format!("public_suffix_list {path}: no rules"));
                }
                Some(p)
            }
            None => None,
        };
        let _ = SETTINGS.set(Settings {
            psl,
            trusted: c
                .trusted_arc_sealers
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            reject: c.reject,
            quarantine: c.quarantine,
        });
        Ok(())
    }

    fn on_data(ctx: &Context, msg: &Message) -> Response {
        let Some(s) = SETTINGS.get() else {
            return Response::next();
        };
        let from = from_domain(&msg.header("From"));
        let auth = authenticated(&ctx.checks);
        let mut dns = HostDns;
        let mut d = Discovery {
            dns: &mut dns,
            psl: s.psl.as_ref(),
        };
        let e = d.evaluate(from.as_deref(), &auth);
        let mut dis = policy::disposition(
            &e,
            if e.outcome == Outcome::Fail {
                sample()
            } else {
                0
            },
        );
        // Why the disposition is milder than asked, for the aggregate
        // report (RFC 7489 §7.2, PolicyOverrideType).
        let mut overridden: Option<(&str, String)> = None;
        if dis != policy::disposition(&e, 0) {
            overridden = Some(("sampled_out", "pct".into()));
        }
        if dis == Policy::Reject && !s.reject {
            dis = Policy::Quarantine;
            overridden = Some(("local_policy", "reject is quarantined here".into()));
        }
        if dis == Policy::Quarantine && !s.quarantine {
            dis = Policy::None;
            overridden = Some(("local_policy", "quarantine is delivered here".into()));
        }
        // A trusted forwarder's passing ARC chain overrides the failure.
        let sealer = ctx
            .checks
            .arc
            .as_ref()
            .filter(|a| dis != Policy::None && a.outcome == CheckOutcome::Pass)
            .and_then(|a| trusted_sealer(ctx, a, &s.trusted));
        if let Some(by) = &sealer {
            dis = Policy::None;
            overridden = Some(("trusted_forwarder", format!("arc=pass sealed by {by}")));
        }
        let mut r = Response::next()
            .with(Action::AddAuthResult(result_entry(
                &e,
                dis,
                sealer.as_deref(),
            )))
            .with(Action::SetVar((
                "dmarc.result".into(),
                e.outcome.name().into(),
            )))
            .with(Action::SetVar(("dmarc.domain".into(), e.from.clone())))
            .with(Action::SetVar((
                "dmarc.policy".into(),
                e.requested.name().into(),
            )))
            .with(Action::SetVar((
                "dmarc.disposition".into(),
                dis.name().into(),
            )));
        // What the host's aggregate report needs: the aligned results, the
        // record as published and where, why the policy was not applied.
        r = r
            .with(Action::SetVar((
                "dmarc.spf".into(),
                pass_fail(e.spf_aligned).into(),
            )))
            .with(Action::SetVar((
                "dmarc.dkim".into(),
                pass_fail(e.dkim_aligned).into(),
            )));
        if let Some((at, rec)) = &e.record {
            r = r
                .with(Action::SetVar(("dmarc.record-domain".into(), at.clone())))
                .with(Action::SetVar(("dmarc.published".into(), rec.published())))
                .with(Action::SetVar(("dmarc.rua".into(), rec.rua.join(","))));
        }
        if let Some((kind, comment)) = overridden {
            r = r.with(Action::SetVar((
                "dmarc.override".into(),
                format!("{kind} {comment}"),
            )));
        }
        match dis {
            Policy::Reject => {
                let mut rej = Response::reject(
                    550,
                    "5.7.1",
                    &format!(
                        "DMARC: {} asks to refuse mail that fails its authentication",
                        e.from
                    ),
                );
                rej.actions = std::mem::take(&mut r.actions);
                rej
            }
            Policy::Quarantine => {
                r.verdict = Verdict::Quarantine(format!("DMARC policy of {}", e.from));
                r
            }
            Policy::None => r,
        }
    }
}

export_plugin!(Dmarc: data);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        let v = |s: &str| vec![s.to_string()];
        assert_eq!(from_domain(&v("A <a@Ex.TEST>")).as_deref(), Some("ex.test"));
        assert_eq!(
            from_domain(&v("\"Doe, J\" <j@ex.test>, k@ex.test")).as_deref(),
            Some("ex.test")
        );
        assert_eq!(from_domain(&v("j@ex.test, k@other.test")), None);
        assert_eq!(from_domain(&[]), None);
        assert_eq!(
            from_domain(&[v("a@x.test")[0].clone(), v("b@x.test")[0].clone()]),
            None
        );
        assert_eq!(from_domain(&v("undisclosed")), None);
    }

    #[test]
    fn identifiers_from_checks() {
        let spf = |identity, subject: &str, outcome| SpfResult {
            identity,
            subject: subject.into(),
            outcome,
        };
        let dkim = |domain: &str, outcome| DkimResult {
            outcome,
            domain: domain.into(),
            selector: "s1".into(),
            identity: None,
            algorithm: "rsa-sha256".into(),
            body_length: None,
            reason: None,
        };
        let checks = Checks {
            iprev: None,
            spf: vec![
                spf(SpfIdentity::Helo, "mx.ex.test", CheckOutcome::Pass),
                spf(
                    SpfIdentity::MailFrom,
                    "b@Bounce.EX.test",
                    CheckOutcome::Pass,
                ),
            ],
            dkim: vec![
                dkim("bad.test", CheckOutcome::Fail),
                dkim("Ex.Test", CheckOutcome::Pass),
            ],
            arc: None,
        };
        let a = authenticated(&checks);
        assert_eq!(a.spf_pass.as_deref(), Some("bounce.ex.test"));
        assert_eq!(a.dkim_pass, vec!["ex.test".to_string()]);
        // A HELO pass alone is not a MAIL FROM identity.
        let helo_only = Checks {
            spf: vec![
                spf(SpfIdentity::Helo, "mx.ex.test", CheckOutcome::Pass),
                spf(SpfIdentity::MailFrom, "b@ex.test", CheckOutcome::Softfail),
            ],
            ..checks
        };
        assert_eq!(authenticated(&helo_only).spf_pass, None);
    }
}
