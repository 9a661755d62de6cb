//! The aggregate report (RFC 8460 §4): one UTC day of one policy domain's
//! counts as the report JSON, gzipped for delivery (§5.1), and the report
//! message for `mailto:` destinations (§5.3: `multipart/report` with
//! `report-type="tlsrpt"`, the `application/tlsrpt+gzip` part, and the
//! `TLS-Report-Domain` and `TLS-Report-Submitter` headers).

use super::DayCounts;
use super::result::PolicyType;
use serde_json::{Value, json};
use std::io::Write;

/// Who reports.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info` (and the report message's From).
    pub contact: String,
    /// Our host name (`TLS-Report-Submitter`, the report id's domain).
    pub hostname: String,
}

impl Submitter {
    /// From `outbound.tlsrpt_organization`, `outbound.tlsrpt_contact` and
    /// the host name.
    pub fn from_config(cfg: &crate::config::Config) -> Submitter {
        let host = &cfg.server.hostname;
        Submitter {
            organization: cfg
                .outbound
                .tlsrpt_organization
                .clone()
                .unwrap_or_else(|| host.clone()),
            contact: cfg
                .outbound
                .tlsrpt_contact
                .clone()
                .unwrap_or_else(|| format!("postmaster@{host}")),
            hostname: host.clone(),
        }
    }
}

/// The reports of `day` for `domain` (or every domain with counts) as
/// `{"reports": [{"domain", "report"}]}`.
pub fn collect(t: &super::Tlsrpt, s: &Submitter, day: &str, domain: Option<&str>) -> Value {
    if chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err() {
        return json!({ "error": format!("bad day {day:?}: give YYYY-MM-DD") });
    }
    let domains: Vec<String> = match domain {
        Some(d) => vec![d.trim_end_matches('.').to_ascii_lowercase()],
        None => t.keys(Some(day)).into_iter().map(|(_, d)| d).collect(),
    };
    let reports: Vec<Value> = domains
        .into_iter()
        .filter_map(|d| {
            let r = json(s, &d, day, &t.counts(day, &d)?)?;
            Some(json!({ "domain": d, "report": r }))
        })
        .collect();
    json!({ "reports": reports })
}

/// The report's time range: the whole UTC day, as RFC 3339 and unix times.
fn range(day: &str) -> Option<(String, String, i64, i64)> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let start = d.and_hms_opt(0, 0, 0)?.and_utc();
    let end = d.and_hms_opt(23, 59, 59)?.and_utc();
    Some((
        start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        start.timestamp(),
        end.timestamp(),
    ))
}

/// The report's id: the same for the same day, domain and submitter (a
/// resend is the same report).
pub fn report_id(s: &Submitter, domain: &str, day: &str) -> String {
    format!("{day}T00:00:00Z_{domain}@{}", s.hostname)
}

/// The JSON report (RFC 8460 §4.4) for `domain`'s `day`; `None` when
/// `day` is not a date.
pub fn json(s: &Submitter, domain: &str, day: &str, counts: &DayCounts) -> Option<Value> {
    let (start, end, _, _) = range(day)?;
    let policies: Vec<Value> = counts
        .policies
        .iter()
        .map(|p| {
            let mut policy = json!({
                "policy-type": p.policy.kind.name(),
                "policy-domain": domain,
            });
            if p.policy.kind != PolicyType::NoPolicyFound {
                policy["policy-string"] = json!(p.policy.strings);
                if !p.policy.mx_host.is_empty() {
                    policy["mx-host"] = json!(p.policy.mx_host);
                }
            }
            let mut v = json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": p.success,
                    "total-failure-session-count": p.failed(),
                },
            });
            if !p.failures.is_empty() {
                v["failure-details"] = p
                    .failures
                    .iter()
                    .map(|(d, n)| {
                        let mut f = json!({
                            "result-type": d.result.name(),
                            "failed-session-count": n,
                        });
                        for (k, val) in [
                            ("sending-mta-ip", &d.sending_ip),
                            ("receiving-mx-hostname", &d.receiving_mx),
                            ("receiving-ip", &d.receiving_ip),
                            ("failure-reason-code", &d.reason),
                        ] {
                            if let Some(val) = val {
                                f[k] = json!(val);
                            }
                        }
                        f
                    })
                    .collect();
            }
            v
        })
        .collect();
    Some(json!({
        "organization-name": s.organization,
        "date-range": { "start-datetime": start, "end-datetime": end },
        "contact-info": s.contact,
        "report-id": report_id(s, domain, day),
        "policies": policies,
    }))
}

/// gzip `data` (§5.1: reports travel compressed).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// The attachment's file name (§5.1: `submitter!domain!begin!end.json.gz`).
pub fn filename(s: &Submitter, domain: &str, day: &str) -> String {
    let (_, _, b, e) = range(day).unwrap_or_default();
    format!("{}!{domain}!{b}!{e}.json.gz", s.hostname)
}

/// The report message to `to` for `domain`'s `day`, with the gzipped
/// report `gz`. It says `TLS-Required: No` (RFC 8689 §5): a report about
/// TLS failures must not be held up by them.
pub fn message(s: &Submitter, to: &str, domain: &str, day: &str, gz: &[u8]) -> Vec<u8> {
    let id = report_id(s, domain, day);
    let subject = format!(
        "Report Domain: {domain} Submitter: {} Report-ID: <{id}>",
        s.hostname
    );
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {} for {domain}, {day} (UTC).",
        s.organization
    );
    crate::smtp::report_mail::ReportMail {
        from: &s.contact,
        to,
        subject: &subject,
        hostname: &s.hostname,
        unique: &crate::spool::new_message_id(),
        tag: "tlsrpt",
        date: &chrono::Utc::now().to_rfc2822(),
        headers: &[
            ("TLS-Report-Domain", domain.to_string()),
            ("TLS-Report-Submitter", s.hostname.clone()),
            ("TLS-Required", "No".into()),
        ],
        multipart: "multipart/report; report-type=\"tlsrpt\"",
        text: &text,
        attachment_type: "application/tlsrpt+gzip",
        filename: &filename(s, domain, day),
        data: gz,
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::super::result::{FailureDetail, Outcome, PolicyId, ResultType};
    use super::*;

    fn sub() -> Submitter {
        Submitter {
            organization: "Example Org".into(),
            contact: "postmaster@mx.example".into(),
            hostname: "mx.example".into(),
        }
    }

    #[test]
    fn report_json() {
        let mut c = DayCounts::default();
        let tlsa = PolicyId::tlsa(
            "MX.Dest.Example.",
            &[crate::dns::Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0xab, 0x01],
            }],
        );
        c.add(&tlsa, &Outcome::Success, 4);
        c.add(
            &tlsa,
            &Outcome::Failure(FailureDetail {
                result: ResultType::TlsaInvalid,
                sending_ip: Some("192.0.2.9".into()),
                receiving_mx: Some("mx.dest.example".into()),
                receiving_ip: Some("198.51.100.1".into()),
                reason: Some("no TLSA record matches".into()),
            }),
            2,
        );
        c.add(&PolicyId::none(), &Outcome::Success, 1);
        let j = json(&sub(), "dest.example", "2026-11-30", &c).unwrap();
        assert_eq!(j["date-range"]["start-datetime"], "2026-11-30T00:00:00Z");
        assert_eq!(j["date-range"]["end-datetime"], "2026-11-30T23:59:59Z");
        assert_eq!(
            j["report-id"],
            "2026-11-30T00:00:00Z_dest.example@mx.example"
        );
        let p = &j["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "tlsa");
        assert_eq!(p["policy"]["policy-string"][0], "3 1 1 ab01");
        assert_eq!(p["policy"]["mx-host"][0], "mx.dest.example");
        assert_eq!(p["summary"]["total-successful-session-count"], 4);
        assert_eq!(p["summary"]["total-failure-session-count"], 2);
        assert_eq!(p["failure-details"][0]["result-type"], "tlsa-invalid");
        assert_eq!(p["failure-details"][0]["failed-session-count"], 2);
        assert_eq!(p["failure-details"][0]["receiving-ip"], "198.51.100.1");
        let n = &j["policies"][1];
        assert_eq!(n["policy"]["policy-type"], "no-policy-found");
        assert!(n["policy"].get("policy-string").is_none());
        assert!(n.get("failure-details").is_none());
        assert!(json(&sub(), "dest.example", "yesterday", &c).is_none());
    }

    #[test]
    fn message_and_gzip() {
        use std::io::Read;
        let gz = gzip(b"{\"a\":1}");
        let mut out = String::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "{\"a\":1}");
        let m = String::from_utf8(message(
            &sub(),
            "tlsrpt@dest.example",
            "dest.example",
            "2026-11-30",
            &gz,
        ))
        .unwrap();
        assert!(m.contains("TLS-Report-Domain: dest.example\r\n"));
        assert!(m.contains("TLS-Report-Submitter: mx.example\r\n"));
        assert!(m.contains("report-type=\"tlsrpt\""));
        assert!(m.contains("Content-Type: application/tlsrpt+gzip\r\n"));
        assert!(m.contains("filename=\"mx.example!dest.example!1795996800!1796083199.json.gz\""));
        assert!(m.contains(
            "Subject: Report Domain: dest.example Submitter: mx.example Report-ID: <2026-11-30T00:00:00Z_dest.example@mx.example>"
        ));
        assert!(m.lines().all(|l| l.len() <= 998));
    }
}
