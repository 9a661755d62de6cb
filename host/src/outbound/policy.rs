//! The TLS decision for one host of a route: from the destination's
//! policy level, whether the host's DNS records were DNSSEC-secure and
//! what its TLSA lookup gave, decide how TLS is used (the conversation's
//! [`TlsMode`]), what the certificate must satisfy, and what the log says
//! (`CV=`), or that the host must not be used at all.
//!
//! The DANE rules (RFC 7672 §2.2): TLSA records count only when the MX
//! answer and the host's addresses are secure; a secure TLSA set with
//! usable records makes TLS mandatory and authenticated by them; a secure
//! set with none usable makes it mandatory but unauthenticated; a TLSA
//! lookup that fails (SERVFAIL, timeout, bogus) for a secure host is not
//! "no records" but a reason to skip the host (downgrade resistance).

use super::dane;
use super::mta_sts::{Mode, Policy};
use crate::config::{TlsLevel, TlsPolicy};
use crate::dns::Tlsa;
use crate::outbound::tlsrpt::result::ResultType;
use crate::smtp::client::conversation::TlsMode;

/// What DNS said about one host's TLSA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaState {
    /// Not looked up: DANE is not asked for, or the host's records are
    /// not DNSSEC-secure.
    NotApplicable,
    /// Looked up and secure (possibly empty).
    Secure(Vec<Tlsa>),
    /// The records are not signed: DANE does not apply.
    Insecure,
    /// The lookup failed or did not validate.
    Failed(String),
}

/// How to authenticate the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Not at all.
    None,
    /// By these usable TLSA records.
    Dane(Vec<Tlsa>),
    /// By CAs and names (a PKIX level).
    Pkix,
}

/// The decision for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Connect with this TLS mode and authentication.
    Use {
        /// How the conversation uses TLS.
        mode: TlsMode,
        /// What the certificate must satisfy.
        auth: Auth,
        /// Why TLS is mandatory, for failure texts (empty when it is not).
        why: String,
    },
    /// Do not use this host (a temporary failure, with the reason and its
    /// class for TLS reports).
    Skip(String, ResultType),
}

impl Plan {
    /// The `CV=` value of a delivery over this plan: `dane`, `yes` or `no`.
    pub fn cv(&self) -> &'static str {
        match self {
            Plan::Use {
                auth: Auth::Dane(_),
                ..
            } => "dane",
            Plan::Use {
                auth: Auth::Pkix, ..
            } => "yes",
            _ => "no",
        }
    }
}

/// Decide for host `host` under `policy`, with the domain's MTA-STS policy
/// if it has one: where DANE does not authenticate the host, an `enforce`
/// policy makes TLS mandatory and verified against the MX name, and rules
/// out MX hosts it does not list (RFC 8461 §4); DANE wins when both apply.
pub fn plan(policy: &TlsPolicy, host: &str, tlsa: &TlsaState, sts: Option<&Policy>) -> Plan {
    let base = plan_level(policy, host, tlsa);
    let Some(sts) = sts.filter(|p| p.mode == Mode::Enforce) else {
        return base;
    };
    if !matches!(
        policy.level,
        TlsLevel::May | TlsLevel::Encrypt | TlsLevel::Dane
    ) {
        return base;
    }
    match base {
        Plan::Use {
            auth: Auth::None,
            mode,
            ..
        } if mode != TlsMode::Off => {
            if !sts.matches(host) {
                return Plan::Skip(
                    format!(
                        "MTA-STS: {host} is not an MX host the domain's policy (enforce) lists"
                    ),
                    ResultType::ValidationFailure,
                );
            }
            Plan::Use {
                mode: if policy.implicit {
                    TlsMode::Implicit
                } else {
                    TlsMode::Required
                },
                auth: Auth::Pkix,
                why: "MTA-STS policy (enforce)".into(),
            }
        }
        other => other,
    }
}

fn plan_level(policy: &TlsPolicy, host: &str, tlsa: &TlsaState) -> Plan {
    let mandatory = if policy.implicit {
        TlsMode::Implicit
    } else {
        TlsMode::Required
    };
    let opportunistic = if policy.implicit {
        TlsMode::Implicit
    } else {
        TlsMode::Opportunistic
    };
    let level = policy.level;
    match level {
        TlsLevel::None => Plan::Use {
            mode: TlsMode::Off,
            auth: Auth::None,
            why: String::new(),
        },
        TlsLevel::May => Plan::Use {
            mode: opportunistic,
            auth: Auth::None,
            why: String::new(),
        },
        TlsLevel::Encrypt => {
            let why = "TLS level encrypt".to_string();
            Plan::Use {
                mode: mandatory,
                auth: Auth::None,
                why,
            }
        }
        TlsLevel::Verify | TlsLevel::Secure => {
            let why = format!("TLS level {}", level.name());
            Plan::Use {
                mode: mandatory,
                auth: Auth::Pkix,
                why,
            }
        }
        TlsLevel::Dane | TlsLevel::DaneOnly => {
            let only = level == TlsLevel::DaneOnly;
            match tlsa {
                TlsaState::Failed(e) => Plan::Skip(
                    format!("DANE: TLSA lookup for {host} failed ({e}); not delivering without it"),
                    ResultType::DnssecInvalid,
                ),
                TlsaState::Secure(recs) if !recs.is_empty() => {
                    let usable = dane::usable(recs);
                    if usable.is_empty() {
                        if only {
                            return Plan::Skip(
                                format!(
                                    "DANE: {host} has TLSA records but none usable (dane-only)"
                                ),
                                ResultType::TlsaInvalid,
                            );
                        }
                        let why = format!("DANE: {host} publishes TLSA records (none usable)");
                        return Plan::Use {
                            mode: mandatory,
                            auth: Auth::None,
                            why,
                        };
                    }
                    let why = format!("DANE: TLSA records of {host}");
                    Plan::Use {
                        mode: mandatory,
                        auth: Auth::Dane(usable),
                        why,
                    }
                }
                _ if only => Plan::Skip(
                    format!("DANE: {host} has no DNSSEC-secure TLSA records (dane-only)"),
                    ResultType::DaneRequired,
                ),
                _ => Plan::Use {
                    mode: opportunistic,
                    auth: Auth::None,
                    why: String::new(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8) -> Tlsa {
        Tlsa {
            usage,
            selector: 1,
            matching: 1,
            data: vec![7; 32],
        }
    }

    fn p(level: TlsLevel) -> TlsPolicy {
        TlsPolicy::level(level)
    }

    #[test]
    fn dane_rules() {
        let dane = p(TlsLevel::Dane);
        let only = p(TlsLevel::DaneOnly);
        // Secure usable records: mandatory and authenticated.
        let plan1 = plan(&dane, "mx", &TlsaState::Secure(vec![rec(3), rec(0)]), None);
        assert_eq!(plan1.cv(), "dane");
        assert!(
            matches!(&plan1, Plan::Use { mode: TlsMode::Required, auth: Auth::Dane(r), .. } if r == &vec![rec(3)])
        );
        // Only unusable records: mandatory, unauthenticated (RFC 7672 §2.2).
        let plan2 = plan(&dane, "mx", &TlsaState::Secure(vec![rec(1)]), None);
        assert!(matches!(
            plan2,
            Plan::Use {
                mode: TlsMode::Required,
                auth: Auth::None,
                ..
            }
        ));
        assert!(matches!(
            plan(&only, "mx", &TlsaState::Secure(vec![rec(1)]), None),
            Plan::Skip(..)
        ));
        // A failed lookup is never "no records".
        for level in [&dane, &only] {
            assert!(
                matches!(plan(level, "mx", &TlsaState::Failed("SERVFAIL".into()), None), Plan::Skip(t, ResultType::DnssecInvalid) if t.contains("SERVFAIL"))
            );
        }
        // No records, insecure, not applicable: opportunistic, or skipped
        // under dane-only.
        for s in [
            TlsaState::Secure(vec![]),
            TlsaState::Insecure,
            TlsaState::NotApplicable,
        ] {
            assert!(matches!(
                plan(&dane, "mx", &s, None),
                Plan::Use {
                    mode: TlsMode::Opportunistic,
                    auth: Auth::None,
                    ..
                }
            ));
            assert!(matches!(plan(&only, "mx", &s, None), Plan::Skip(..)));
        }
    }

    #[test]
    fn mta_sts_enforce() {
        let sts = Policy {
            mode: Mode::Enforce,
            mx: vec!["*.example.test".into()],
            max_age: 86400,
        };
        let dane = p(TlsLevel::Dane);
        let none = TlsaState::NotApplicable;
        // A listed MX: mandatory, verified.
        let v = plan(&dane, "mx1.example.test", &none, Some(&sts));
        assert!(matches!(
            v,
            Plan::Use {
                mode: TlsMode::Required,
                auth: Auth::Pkix,
                ..
            }
        ));
        // One it does not list: skipped.
        assert!(
            matches!(plan(&dane, "mx.evil.test", &none, Some(&sts)), Plan::Skip(t, _) if t.contains("MTA-STS"))
        );
        // DANE wins.
        let d = plan(
            &dane,
            "mx.evil.test",
            &TlsaState::Secure(vec![rec(3)]),
            Some(&sts),
        );
        assert_eq!(d.cv(), "dane");
        // Testing mode and explicit none change nothing.
        let testing = Policy {
            mode: Mode::Testing,
            ..sts.clone()
        };
        assert_eq!(
            plan(&dane, "mx.evil.test", &none, Some(&testing)).cv(),
            "no"
        );
        assert!(matches!(
            plan(&p(TlsLevel::None), "mx.evil.test", &none, Some(&sts)),
            Plan::Use {
                mode: TlsMode::Off,
                ..
            }
        ));
    }

    #[test]
    fn other_levels() {
        let none = TlsaState::NotApplicable;
        assert!(matches!(
            plan(&p(TlsLevel::None), "h", &none, None),
            Plan::Use {
                mode: TlsMode::Off,
                ..
            }
        ));
        assert!(matches!(
            plan(&p(TlsLevel::May), "h", &none, None),
            Plan::Use {
                mode: TlsMode::Opportunistic,
                ..
            }
        ));
        assert!(matches!(
            plan(&p(TlsLevel::Encrypt), "h", &none, None),
            Plan::Use {
                mode: TlsMode::Required,
                auth: Auth::None,
                ..
            }
        ));
        let v = plan(&p(TlsLevel::Verify), "h", &none, None);
        assert_eq!(v.cv(), "yes");
        let implicit = TlsPolicy {
            implicit: true,
            ..p(TlsLevel::Encrypt)
        };
        assert!(matches!(
            plan(&implicit, "h", &none, None),
            Plan::Use {
                mode: TlsMode::Implicit,
                ..
            }
        ));
    }
}
