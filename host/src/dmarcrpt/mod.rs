//! DMARC aggregate reporting (RFC 7489 §7.2) as a receiver: every message
//! the DMARC plugin evaluated under a record that asks for reports
//! (`rua`) adds a row to the day's counts for the policy domain: the
//! client's address, the disposition and aligned results the plugin
//! decided (from its `dmarc.*` variables), and the host's own SPF and DKIM
//! results. Refused and quarantined messages count too. Counts live in
//! the cache database ([`crate::cache::daily`]); [`xml`] writes the
//! report, [`rua`] reads the destinations; the queue mails them once a
//! day is over (its `dmarc_reports` module).

pub mod rua;
pub mod xml;

use crate::cache::Cache;
use crate::cache::daily::{Daily, Tally};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Rows: `YYYY-MM-DD domain` -> JSON [`DayRecords`].
const COUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("dmarcrpt");
/// Days reported: `YYYY-MM-DD domain` -> unix time the report went.
const SENT: TableDefinition<&str, u64> = TableDefinition::new("dmarcrpt_sent");

/// Distinct rows kept per domain and day; beyond them, a message is
/// counted with an earlier row of the same source, disposition and
/// results, or else only in the total.
pub const MAX_ROWS: usize = 10_000;

/// The policy as published (`policy_published`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Where the record was found.
    pub domain: String,
    /// `p`, `sp` (`none`, `quarantine`, `reject`).
    pub p: String,
    pub sp: String,
    /// `adkim`, `aspf` (`r` or `s`).
    pub adkim: String,
    pub aspf: String,
    /// `pct`.
    pub pct: u8,
    /// `rua` URIs as published.
    pub rua: Vec<String>,
}

impl Published {
    /// From the plugin's `dmarc.published` tag list and `dmarc.rua`.
    pub fn parse(domain: &str, tags: &str, rua: &str) -> Published {
        let mut p = Published {
            domain: domain.to_ascii_lowercase(),
            p: "none".into(),
            sp: String::new(),
            adkim: "r".into(),
            aspf: "r".into(),
            pct: 100,
            rua: rua
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        for t in tags.split(';') {
            let Some((k, v)) = t.split_once('=') else {
                continue;
            };
            let v = v.trim().to_ascii_lowercase();
            let disposition = matches!(v.as_str(), "none" | "quarantine" | "reject");
            let mode = matches!(v.as_str(), "r" | "s");
            match k.trim() {
                "p" if disposition => p.p = v,
                "sp" if disposition => p.sp = v,
                "adkim" if mode => p.adkim = v,
                "aspf" if mode => p.aspf = v,
                "pct" => p.pct = v.parse::<u8>().unwrap_or(100).min(100),
                _ => {}
            }
        }
        if p.sp.is_empty() {
            p.sp = p.p.clone();
        }
        p
    }
}

/// A DKIM result (`auth_results/dkim`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimResult {
    pub domain: String,
    pub selector: String,
    pub result: String,
}

/// An SPF result (`auth_results/spf`); scope `helo` or `mfrom`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfResult {
    pub domain: String,
    pub scope: String,
    pub result: String,
}

/// The host's results, uninterpreted by DMARC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    pub dkim: Vec<DkimResult>,
    pub spf: Vec<SpfResult>,
}

/// One row: everything but the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The client's address.
    pub source_ip: IpAddr,
    /// `none`, `quarantine`, `reject`.
    pub disposition: String,
    /// Aligned DKIM and SPF: `pass` or `fail`.
    pub dkim: String,
    pub spf: String,
    /// Why the policy was not applied: (type, comment).
    pub reason: Option<(String, String)>,
    /// The envelope sender's domain (HELO's for the null sender).
    pub envelope_from: String,
    /// The From domain.
    pub header_from: String,
    /// The host's results.
    pub auth: AuthResults,
}

impl Row {
    fn core(&self) -> (IpAddr, &str, &str, &str, &str) {
        (
            self.source_ip,
            &self.disposition,
            &self.dkim,
            &self.spf,
            &self.header_from,
        )
    }
}

/// A policy domain's rows for a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayRecords {
    /// The policy as last seen.
    pub published: Option<Published>,
    /// Distinct rows and their counts, in order of first sight.
    pub rows: Vec<(Row, u64)>,
    /// Messages past the row limit that matched no row (the report says
    /// so in an `error`).
    #[serde(default)]
    pub unlisted: u64,
}

impl DayRecords {
    /// Count `n` messages of `row`.
    pub fn add(&mut self, row: &Row, n: u64) {
        if let Some(e) = self.rows.iter_mut().find(|(r, _)| r == row) {
            e.1 += n;
            return;
        }
        if self.rows.len() < MAX_ROWS {
            self.rows.push((row.clone(), n));
        } else if let Some(e) = self.rows.iter_mut().find(|(r, _)| r.core() == row.core()) {
            e.1 += n;
        } else {
            self.unlisted += n;
        }
    }

    /// Messages counted.
    pub fn messages(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum::<u64>() + self.unlisted
    }
}

impl Tally for DayRecords {
    fn merge(&mut self, other: &DayRecords) {
        if other.published.is_some() {
            self.published = other.published.clone();
        }
        for (r, n) in &other.rows {
            self.add(r, *n);
        }
        self.unlisted += other.unlisted;
    }
}

/// The rows, shared by sessions and the queue.
pub type Dmarcrpt = Daily<DayRecords>;

impl Daily<DayRecords> {
    /// Over the cache database; starts the writer (inside a runtime).
    pub fn new(cache: Cache) -> Arc<Dmarcrpt> {
        Daily::open(cache, COUNTS, SENT, "DMARC report")
    }

    /// Count one message (now).
    pub fn record(&self, o: Observation) {
        self.record_at(chrono::Utc::now().timestamp(), o);
    }

    /// Count one message at unix time `t`.
    pub fn record_at(&self, t: i64, o: Observation) {
        let domain = o.published.domain.clone();
        self.update_at(t, &domain, |d| {
            d.published = Some(o.published);
            d.add(&o.row, 1);
        });
    }
}

/// What one message adds to the report of its policy domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub published: Published,
    pub row: Row,
}

/// The observation for a message from the DMARC plugin's variables
/// (`dmarc.*`, see the plugin) and the host's results; none when DMARC
/// found no record or the record asks for no aggregate reports.
pub fn observe(
    vars: &[(String, String)],
    source_ip: IpAddr,
    envelope_from: &str,
    auth: impl FnOnce() -> AuthResults,
) -> Option<Observation> {
    let var = |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let at = var("dmarc.record-domain")?;
    let rua = var("dmarc.rua").unwrap_or("");
    if rua.is_empty() {
        return None;
    }
    let published = Published::parse(at, var("dmarc.published").unwrap_or(""), rua);
    let disposition = match var("dmarc.disposition") {
        Some(d @ ("none" | "quarantine" | "reject")) => d.to_string(),
        _ => "none".into(),
    };
    let pf = |k: &str| match var(k) {
        Some("pass") => "pass".to_string(),
        _ => "fail".to_string(),
    };
    let reason = var("dmarc.override").map(|o| {
        let (t, c) = o.split_once(' ').unwrap_or((o, ""));
        (t.to_string(), c.to_string())
    });
    Some(Observation {
        published,
        row: Row {
            source_ip,
            disposition,
            dkim: pf("dmarc.dkim"),
            spf: pf("dmarc.spf"),
            reason,
            envelope_from: envelope_from.to_ascii_lowercase(),
            header_from: var("dmarc.domain").unwrap_or("").to_ascii_lowercase(),
            auth: auth(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn observations_come_only_from_records_that_want_reports() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut v = vars(&[
            ("dmarc.domain", "News.Example"),
            ("dmarc.record-domain", "example"),
            ("dmarc.published", "p=reject; adkim=s; aspf=r; pct=50"),
            ("dmarc.rua", "mailto:a@example!10m,mailto:b@x.test"),
            ("dmarc.disposition", "quarantine"),
            ("dmarc.spf", "pass"),
            ("dmarc.dkim", "fail"),
            ("dmarc.override", "local_policy reject is quarantined here"),
        ]);
        let o = observe(&v, ip, "bounce.example", AuthResults::default).unwrap();
        assert_eq!(o.published.p, "reject");
        assert_eq!(o.published.sp, "reject");
        assert_eq!(o.published.adkim, "s");
        assert_eq!(o.published.pct, 50);
        assert_eq!(o.published.rua.len(), 2);
        assert_eq!(o.row.header_from, "news.example");
        assert_eq!((o.row.spf.as_str(), o.row.dkim.as_str()), ("pass", "fail"));
        assert_eq!(o.row.reason.as_ref().unwrap().0, "local_policy");
        v.retain(|(k, _)| k != "dmarc.rua");
        assert!(observe(&v, ip, "bounce.example", AuthResults::default).is_none());
        assert!(observe(&[], ip, "x", AuthResults::default).is_none());
    }

    #[test]
    fn rows_count_up_and_the_cap_folds_into_like_rows() {
        let row = |ip: &str, spf: &str| Row {
            source_ip: ip.parse().unwrap(),
            disposition: "none".into(),
            dkim: "pass".into(),
            spf: "pass".into(),
            reason: None,
            envelope_from: "example".into(),
            header_from: "example".into(),
            auth: AuthResults {
                dkim: vec![],
                spf: vec![SpfResult {
                    domain: "example".into(),
                    scope: "mfrom".into(),
                    result: spf.into(),
                }],
            },
        };
        let mut d = DayRecords::default();
        d.add(&row("192.0.2.1", "pass"), 1);
        d.add(&row("192.0.2.1", "pass"), 2);
        d.add(&row("192.0.2.2", "pass"), 1);
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.messages(), 4);
        for i in 0..MAX_ROWS {
            d.add(&row(&format!("10.{}.{}.1", i / 256, i % 256), "pass"), 1);
        }
        // Past the cap, a new detail of a known source is folded in, a new
        // source only counted.
        d.add(&row("192.0.2.1", "softfail"), 1);
        assert_eq!(d.rows.len(), MAX_ROWS);
        assert_eq!(d.rows[0].1, 4);
        assert_eq!(d.unlisted, 2);
        assert_eq!(d.messages(), MAX_ROWS as u64 + 5);
    }
}
