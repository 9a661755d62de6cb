//! The aggregate report as RFC 7489 Appendix C's schema has it (the
//! format reports are exchanged in; no namespace, version 1.0).

use super::{DayRecords, Row};
use std::fmt::Write;
use std::net::IpAddr;

/// Who reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `org_name`.
    pub organization: String,
    /// `email`, and the report message's From.
    pub contact: String,
    /// Our host name (the report id's domain, the file name's receiver).
    pub hostname: String,
}

impl Reporter {
    /// From `[auth] report_organization`, `report_contact` and the host
    /// name.
    pub fn from_config(cfg: &crate::config::Config) -> Reporter {
        let host = &cfg.server.hostname;
        Reporter {
            organization: cfg
                .auth
                .report_organization
                .clone()
                .unwrap_or_else(|| host.clone()),
            contact: cfg
                .auth
                .report_contact
                .clone()
                .unwrap_or_else(|| format!("postmaster@{host}")),
            hostname: host.clone(),
        }
    }
}

/// The UTC day's first and last second.
pub fn range(day: &str) -> Option<(i64, i64)> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let begin = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some((begin, begin + 86399))
}

/// The report's id: unique per reporter, domain and day.
pub fn report_id(r: &Reporter, domain: &str, day: &str) -> String {
    format!("{day}.{domain}@{}", r.hostname)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The schema's IPAddress: dotted IPv4, or IPv6 with all eight groups.
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

fn record(x: &mut String, row: &Row, count: u64) {
    let _ = writeln!(x, "  <record>\n    <row>");
    let _ = writeln!(x, "      <source_ip>{}</source_ip>", address(row.source_ip));
    let _ = writeln!(x, "      <count>{count}</count>");
    let _ = writeln!(x, "      <policy_evaluated>");
    let _ = writeln!(
        x,
        "        <disposition>{}</disposition>",
        esc(&row.disposition)
    );
    let _ = writeln!(x, "        <dkim>{}</dkim>", esc(&row.dkim));
    let _ = writeln!(x, "        <spf>{}</spf>", esc(&row.spf));
    if let Some((t, c)) = &row.reason {
        let _ = writeln!(x, "        <reason>\n          <type>{}</type>", esc(t));
        if !c.is_empty() {
            let _ = writeln!(x, "          <comment>{}</comment>", esc(c));
        }
        let _ = writeln!(x, "        </reason>");
    }
    let _ = writeln!(x, "      </policy_evaluated>\n    </row>");
    let _ = writeln!(x, "    <identifiers>");
    let _ = writeln!(
        x,
        "      <envelope_from>{}</envelope_from>",
        esc(&row.envelope_from)
    );
    let _ = writeln!(
        x,
        "      <header_from>{}</header_from>",
        esc(&row.header_from)
    );
    let _ = writeln!(x, "    </identifiers>\n    <auth_results>");
    for d in &row.auth.dkim {
        let _ = writeln!(
            x,
            "      <dkim>\n        <domain>{}</domain>",
            esc(&d.domain)
        );
        if !d.selector.is_empty() {
            let _ = writeln!(x, "        <selector>{}</selector>", esc(&d.selector));
        }
        let _ = writeln!(
            x,
            "        <result>{}</result>\n      </dkim>",
            esc(&d.result)
        );
    }
    // The schema wants at least one SPF result.
    let none = [super::SpfResult {
        domain: row.envelope_from.clone(),
        scope: "mfrom".into(),
        result: "none".into(),
    }];
    let spf = if row.auth.spf.is_empty() {
        &none[..]
    } else {
        &row.auth.spf[..]
    };
    for s in spf {
        let _ = writeln!(
            x,
            "      <spf>\n        <domain>{}</domain>",
            esc(&s.domain)
        );
        let _ = writeln!(x, "        <scope>{}</scope>", esc(&s.scope));
        let _ = writeln!(
            x,
            "        <result>{}</result>\n      </spf>",
            esc(&s.result)
        );
    }
    let _ = writeln!(x, "    </auth_results>\n  </record>");
}

/// The XML report of `domain`'s `day`; none without rows.
pub fn report(r: &Reporter, domain: &str, day: &str, d: &DayRecords) -> Option<String> {
    let p = d.published.as_ref()?;
    if d.rows.is_empty() {
        return None;
    }
    let (begin, end) = range(day)?;
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>");
    let _ = writeln!(x, "  <version>1.0</version>\n  <report_metadata>");
    let _ = writeln!(x, "    <org_name>{}</org_name>", esc(&r.organization));
    let _ = writeln!(x, "    <email>{}</email>", esc(&r.contact));
    let _ = writeln!(
        x,
        "    <report_id>{}</report_id>",
        esc(&report_id(r, domain, day))
    );
    let _ = writeln!(
        x,
        "    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n    </date_range>"
    );
    if d.unlisted > 0 {
        let _ = writeln!(
            x,
            "    <error>{} messages not itemized: more than {} distinct rows</error>",
            d.unlisted,
            super::MAX_ROWS
        );
    }
    let _ = writeln!(x, "  </report_metadata>\n  <policy_published>");
    let _ = writeln!(x, "    <domain>{}</domain>", esc(&p.domain));
    let _ = writeln!(x, "    <adkim>{}</adkim>", esc(&p.adkim));
    let _ = writeln!(x, "    <aspf>{}</aspf>", esc(&p.aspf));
    let _ = writeln!(x, "    <p>{}</p>", esc(&p.p));
    let _ = writeln!(x, "    <sp>{}</sp>", esc(&p.sp));
    let _ = writeln!(x, "    <pct>{}</pct>", p.pct);
    let _ = writeln!(x, "  </policy_published>");
    for (row, n) in &d.rows {
        record(&mut x, row, *n);
    }
    let _ = writeln!(x, "</feedback>");
    Some(x)
}

/// The reports of `day` from `t`: one domain's, or every domain's with
/// rows, as (domain, rows, XML). What `mailgate report dmarc` prints and
/// the queue sends.
pub fn collect(
    t: &super::Dmarcrpt,
    r: &Reporter,
    day: &str,
    domain: Option<&str>,
) -> Vec<(String, DayRecords, String)> {
    let domains: Vec<String> = match domain {
        Some(d) => vec![d.trim_end_matches('.').to_ascii_lowercase()],
        None => t.keys(Some(day)).into_iter().map(|(_, d)| d).collect(),
    };
    domains
        .into_iter()
        .filter_map(|d| {
            let rows = t.counts(day, &d)?;
            let x = report(r, &d, day, &rows)?;
            Some((d, rows, x))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_written_with_every_group() {
        assert_eq!(
            address("2001:db8::1".parse().unwrap()),
            "2001:db8:0:0:0:0:0:1"
        );
        assert_eq!(address("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(esc("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
        assert_eq!(range("2026-12-01"), Some((1796083200, 1796169599)));
    }
}
