//! Sending DMARC aggregate reports (RFC 7489 §7.2): once a UTC day is
//! over, each policy domain's rows ([`crate::dmarcrpt`]) become its XML
//! report, gzipped and mailed through this gateway's own queue to every
//! `mailto:` destination of the domain's `rua`: those outside the policy
//! domain only when `<domain>._report._dmarc.<theirs>` says `v=DMARC1`
//! (§7.1), and only when the report fits their `!size` limit. Checked
//! hourly and at start; a day that went out (or had nowhere to go) is
//! noted and not sent again; a DNS failure leaves it for the next hour.

use super::Runner;
use super::bounce::local_envelope;
use crate::dmarcrpt::xml::{self, Reporter};
use crate::dmarcrpt::{DayRecords, Dmarcrpt, rua};
use crate::log::Event;
use crate::smtp::report_mail::ReportMail;
use crate::spool::RecipientEntry;
use serde_json::{Value, json};
use std::sync::Arc;

/// Days of rows kept.
const KEEP_DAYS: i64 = 8;

/// The report message to `to` (RFC 7489 §7.2.1.1): the gzipped XML as an
/// `application/gzip` attachment named
/// `receiver!policy-domain!begin!end.xml.gz`.
pub fn message(r: &Reporter, to: &str, domain: &str, day: &str, gz: &[u8]) -> Vec<u8> {
    let id = xml::report_id(r, domain, day);
    let (begin, end) = xml::range(day).unwrap_or_default();
    let subject = format!(
        "Report Domain: {domain} Submitter: {} Report-ID: <{id}>",
        r.hostname
    );
    let text = format!(
        "This is a DMARC aggregate report (RFC 7489) from {} for {domain}, {day} (UTC).",
        r.organization
    );
    let filename = format!("{}!{domain}!{begin}!{end}.xml.gz", r.hostname);
    ReportMail {
        from: &r.contact,
        to,
        subject: &subject,
        hostname: &r.hostname,
        unique: &crate::spool::new_message_id(),
        tag: "dmarc",
        date: &chrono::Utc::now().to_rfc2822(),
        headers: &[],
        multipart: "multipart/mixed",
        text: &text,
        attachment_type: "application/gzip",
        filename: &filename,
        data: gz,
    }
    .build()
}

impl Runner {
    fn reporter(&self) -> Reporter {
        Reporter::from_config(&self.cfg)
    }

    /// The reports of `day` (one domain, or every domain with rows) as
    /// `{"reports": [{"domain", "messages", "xml"}]}`; with `send`, sent
    /// now too, adding `"sent"` per domain.
    pub(super) async fn dmarc_reports(&self, day: &str, domain: Option<&str>, send: bool) -> Value {
        let Some(t) = self.dmarc.clone() else {
            return json!({ "error": "DMARC reporting is off ([auth] dmarc_reports)" });
        };
        if let Err(e) = t.flush().await {
            return json!({ "error": format!("cannot write the rows: {e}") });
        }
        let mut list = vec![];
        for (d, rows, x) in xml::collect(&t, &self.reporter(), day, domain) {
            let mut entry = json!({ "domain": d, "messages": rows.messages(), "xml": x });
            if send {
                entry["sent"] = match self.send_dmarc_report(&t, day, &d, &rows, &x).await {
                    Ok((to, errors)) => json!({ "to": to, "errors": errors }),
                    Err(e) => json!({ "to": [], "errors": [e] }),
                };
            }
            list.push(entry);
        }
        json!({ "reports": list })
    }

    /// Send `domain`'s `day` report; `Err` when it should be tried again.
    async fn send_dmarc_report(
        &self,
        t: &Dmarcrpt,
        day: &str,
        domain: &str,
        rows: &DayRecords,
        x: &str,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let Some(o) = &self.outbound else {
            return Err("outbound delivery is disabled".into());
        };
        let published = rows.published.clone().unwrap_or_default();
        let (dests, mut errors) = rua::parse(&published.rua);
        let gz = crate::outbound::tlsrpt::report::gzip(x.as_bytes());
        let sub = self.reporter();
        let mut to = vec![];
        let mut retry = false;
        for d in dests {
            if let Some(name) = rua::verification_name(domain, &d.domain()) {
                match o
                    .dns()
                    .records(&name, hickory_resolver::proto::rr::RecordType::TXT)
                    .await
                {
                    Ok(txt) => {
                        let txts: Vec<String> = txt
                            .iter()
                            .map(|s| crate::outbound::tlsrpt::rua::txt_text(s))
                            .collect();
                        if !rua::agrees(&txts) {
                            errors.push(format!(
                                "{}: {name} does not agree to receive {domain}'s reports",
                                d.address
                            ));
                            continue;
                        }
                    }
                    Err(e) => {
                        errors.push(format!("{}: {name}: {e}", d.address));
                        retry = true;
                        continue;
                    }
                }
            }
            if let Some(limit) = d.limit
                && gz.len() as u64 > limit
            {
                errors.push(format!(
                    "{}: the report ({} octets gzipped) is over its limit of {limit}",
                    d.address,
                    gz.len()
                ));
                continue;
            }
            let body = message(&sub, &d.address, domain, day, &gz);
            let env = local_envelope(
                &self.cfg.server.hostname,
                sub.contact.clone(),
                vec![RecipientEntry::new(d.address.clone(), None, None)],
                body.len(),
            );
            let id = env.id.clone();
            match self.inject(env, &body, None, "dmarcrpt").await {
                Ok(()) => {
                    self.log.event(&Event::message_notice(
                        &id,
                        format!("DMARC report for {domain} {day} to {}", d.address),
                    ));
                    to.push(format!("mailto:{}", d.address));
                }
                Err(e) => {
                    errors.push(format!("{}: cannot spool: {e}", d.address));
                    retry = true;
                }
            }
        }
        if retry && to.is_empty() {
            return Err(errors.join("; "));
        }
        if day < crate::cache::daily::day_of(chrono::Utc::now().timestamp()).as_str()
            && let Err(e) = t.mark_sent(day, domain).await
        {
            tracing::warn!(error = %e, "cannot note a DMARC report as sent");
        }
        Ok((to, errors))
    }

    /// Send every finished day's reports not yet sent, then forget old
    /// days.
    pub(super) async fn daily_dmarc_reports(&self) {
        let Some(t) = self.dmarc.clone() else {
            return;
        };
        if let Err(e) = t.flush().await {
            tracing::warn!(error = %e, "cannot write DMARC report rows");
        }
        let now = chrono::Utc::now().timestamp();
        let today = crate::cache::daily::day_of(now);
        for (day, domain) in t.due(&today) {
            let Some((_, rows, x)) = xml::collect(&t, &self.reporter(), &day, Some(&domain)).pop()
            else {
                continue;
            };
            match self.send_dmarc_report(&t, &day, &domain, &rows, &x).await {
                Ok((_, errors)) if !errors.is_empty() => self.log.event(&Event::notice(format!(
                    "DMARC report for {domain} {day}: {}",
                    errors.join("; ")
                ))),
                Ok(_) => {}
                Err(e) => self.log.event(&Event::notice(format!(
                    "DMARC report for {domain} {day} not sent, trying again later: {e}"
                ))),
            }
        }
        let oldest = crate::cache::daily::day_of(now - KEEP_DAYS * 86400);
        if let Err(e) = t.prune(&oldest).await {
            tracing::warn!(error = %e, "cannot prune DMARC report rows");
        }
    }
}

/// Start the hourly check for finished days' reports.
pub(super) fn start(runner: &Arc<Runner>) {
    if runner.dmarc.is_none() {
        return;
    }
    super::hourly(runner, |r| async move { r.daily_dmarc_reports().await });
}
