//! Sending TLS reports (RFC 8460 §5): for a day and a policy domain, the
//! counts ([`crate::outbound::tlsrpt`]) become the report; the domain's
//! `_smtp._tls` record says where it goes: `mailto:` destinations get the
//! report message through this gateway's own queue (so it is retried,
//! logged and bounced like any mail), `https:` destinations a POST.
//!
//! Once a UTC day is over, the queue sends every domain's report for it
//! (checked hourly, and at start, so a gateway that was down catches up
//! within [`KEEP_DAYS`](crate::outbound::tlsrpt::KEEP_DAYS)); a report
//! that went out, or a domain without a record, is noted and not sent
//! again; a DNS or HTTPS failure leaves it for the next hour.

use super::Runner;
use super::bounce::local_envelope;
use crate::log::Event;
use crate::outbound::tlsrpt::{self, Tlsrpt, report, rua};
use crate::spool::RecipientEntry;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How a domain's report went.
#[derive(Debug)]
enum Sent {
    /// To these destinations (errors for the others).
    To(Vec<String>, Vec<String>),
    /// The domain publishes no TLSRPT record (or an unusable one).
    Nowhere(String),
}

impl Runner {
    fn submitter(&self) -> report::Submitter {
        report::Submitter::from_config(&self.cfg)
    }

    /// The reports of `day` (one domain, or every domain with counts) as
    /// `{"reports": [{"domain", "report"}]}`; with `send`, sent now too,
    /// adding `"sent"` per domain.
    pub(super) async fn tls_reports(&self, day: &str, domain: Option<&str>, send: bool) -> Value {
        let Some(t) = self.outbound.as_ref().and_then(|o| o.tlsrpt()) else {
            return json!({ "error": "TLS reporting is off (outbound.tlsrpt)" });
        };
        if let Err(e) = t.flush().await {
            return json!({ "error": format!("cannot write the counts: {e}") });
        }
        let mut all = report::collect(t, &self.submitter(), day, domain);
        if send && let Some(list) = all.get_mut("reports").and_then(|r| r.as_array_mut()) {
            for entry in list {
                let d = entry["domain"].as_str().unwrap_or("").to_string();
                let r = entry["report"].clone();
                entry["sent"] = match self.send_tls_report(t, day, &d, &r).await {
                    Ok(Sent::To(ok, errors)) => json!({ "to": ok, "errors": errors }),
                    Ok(Sent::Nowhere(why)) => json!({ "to": [], "errors": [why] }),
                    Err(e) => json!({ "to": [], "errors": [e] }),
                };
            }
        }
        all
    }

    /// Send `domain`'s `day` report `r`; a finished day is noted as sent
    /// unless nothing could be reached for a reason that may pass (today's
    /// report, sent by hand, goes out again complete after the day).
    async fn send_tls_report(
        &self,
        t: &Tlsrpt,
        day: &str,
        domain: &str,
        r: &Value,
    ) -> Result<Sent, String> {
        let Some(o) = &self.outbound else {
            return Err("outbound delivery is disabled".into());
        };
        let txt = o
            .dns()
            .records(
                &format!("_smtp._tls.{domain}"),
                hickory_resolver::proto::rr::RecordType::TXT,
            )
            .await
            .map_err(|e| format!("_smtp._tls.{domain}: {e}"))?;
        let txts: Vec<String> = txt.iter().map(|s| rua::txt_text(s)).collect();
        let dests = match rua::parse(&txts) {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.done(t, day, domain).await;
                return Ok(Sent::Nowhere(format!(
                    "{domain} publishes no TLSRPT record"
                )));
            }
            Err(e) => {
                self.done(t, day, domain).await;
                return Ok(Sent::Nowhere(format!("{domain}: {e}")));
            }
        };
        let sub = self.submitter();
        let gz = report::gzip(&serde_json::to_vec(r).expect("JSON serialises"));
        let (mut ok, mut errors) = (Vec::new(), Vec::new());
        for d in dests {
            match d {
                rua::Rua::Mailto(addr) => {
                    let body = report::message(&sub, &addr, domain, day, &gz);
                    let mut env = local_envelope(
                        &self.cfg.server.hostname,
                        sub.contact.clone(),
                        vec![RecipientEntry::new(addr.clone(), None, None)],
                        body.len(),
                    );
                    // RFC 8689 §5 / RFC 8460 §3: not held up by the very
                    // TLS failures it reports.
                    env.tls_optional = true;
                    let id = env.id.clone();
                    match self.inject(env, &body, None, "tlsrpt").await {
                        Ok(()) => {
                            self.log.event(&Event::message_notice(
                                &id,
                                format!("TLS report for {domain} {day} to {addr}"),
                            ));
                            ok.push(format!("mailto:{addr}"));
                        }
                        Err(e) => errors.push(format!("mailto:{addr}: cannot spool: {e}")),
                    }
                }
                rua::Rua::Https(url) => {
                    match rua::post(
                        o.https(),
                        o.dns(),
                        &url,
                        gz.clone(),
                        Duration::from_secs(60),
                    )
                    .await
                    {
                        Ok(()) => {
                            self.log.event(&Event::notice(format!(
                                "TLS report for {domain} {day} posted to {url}"
                            )));
                            ok.push(url);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if ok.is_empty() {
            return Err(errors.join("; "));
        }
        self.done(t, day, domain).await;
        Ok(Sent::To(ok, errors))
    }

    async fn done(&self, t: &Tlsrpt, day: &str, domain: &str) {
        if day < tlsrpt::day_of(chrono::Utc::now().timestamp()).as_str()
            && let Err(e) = t.mark_sent(day, domain).await
        {
            tracing::warn!(error = %e, "cannot note a TLS report as sent");
        }
    }

    /// Send every finished day's reports not yet sent, then forget days
    /// older than the keep time.
    pub(super) async fn daily_tls_reports(&self) {
        let Some(t) = self.outbound.as_ref().and_then(|o| o.tlsrpt()).cloned() else {
            return;
        };
        if let Err(e) = t.flush().await {
            tracing::warn!(error = %e, "cannot write TLS report counts");
        }
        let now = chrono::Utc::now().timestamp();
        let today = tlsrpt::day_of(now);
        let sub = self.submitter();
        for (day, domain) in t.due(&today) {
            let Some(r) = t
                .counts(&day, &domain)
                .and_then(|c| report::json(&sub, &domain, &day, &c))
            else {
                continue;
            };
            match self.send_tls_report(&t, &day, &domain, &r).await {
                Ok(Sent::To(_, errors)) if !errors.is_empty() => self.log.event(&Event::notice(
                    format!("TLS report for {domain} {day}: {}", errors.join("; ")),
                )),
                Ok(_) => {}
                Err(e) => self.log.event(&Event::notice(format!(
                    "TLS report for {domain} {day} not sent, trying again later: {e}"
                ))),
            }
        }
        let oldest = tlsrpt::day_of(now - tlsrpt::KEEP_DAYS * 86400);
        if let Err(e) = t.prune(&oldest).await {
            tracing::warn!(error = %e, "cannot prune TLS report counts");
        }
    }
}

/// Start the hourly check for finished days' reports.
pub(super) fn start(runner: &Arc<Runner>) {
    if runner.outbound.as_ref().and_then(|o| o.tlsrpt()).is_none() {
        return;
    }
    super::hourly(runner, |r| async move { r.daily_tls_reports().await });
}
