//! `mailgate report ...`.

use clap::Subcommand;
use mailgate::config::Config;

/// `mailgate report ...`
#[derive(Subcommand)]
pub enum ReportCmd {
    /// TLS reports (RFC 8460): print a day's report (JSON) per recipient
    /// domain, or send it now to the domain's `_smtp._tls` destinations.
    Tls {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        /// The UTC day, YYYY-MM-DD (default: today, as counted so far).
        #[arg(long)]
        day: Option<String>,
        /// Send the reports now (needs the running server).
        #[arg(long)]
        send: bool,
    },
    /// DMARC aggregate reports (RFC 7489 §7.2): print a day's XML report
    /// per policy domain, or send it now to the domain's `rua`.
    Dmarc {
        /// Only this policy domain.
        #[arg(long)]
        domain: Option<String>,
        /// The UTC day, YYYY-MM-DD (default: today, as counted so far).
        #[arg(long)]
        day: Option<String>,
        /// Send the reports now (needs the running server).
        #[arg(long)]
        send: bool,
    },
}

/// `--day` as given (it must be YYYY-MM-DD), or today (UTC).
fn checked_day(day: Option<String>) -> Result<String, String> {
    match day {
        None => Ok(mailgate::cache::daily::day_of(
            chrono::Utc::now().timestamp(),
        )),
        Some(d) if chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").is_ok() && d.len() == 10 => {
            Ok(d)
        }
        Some(d) => Err(format!("--day {d:?}: expected YYYY-MM-DD")),
    }
}

/// `mailgate report dmarc`: through the running server, or (printing
/// only) from the cache database when none runs.
pub async fn report_dmarc(
    cfg: &Config,
    domain: Option<String>,
    day: Option<String>,
    send: bool,
) -> Result<(), String> {
    let day = checked_day(day)?;
    let req = format!(
        "DMARCRPT {day} {}{}",
        domain.as_deref().unwrap_or("*"),
        if send { " SEND" } else { "" }
    );
    let answer = match mailgate::control::request(&cfg.control_socket(), &req).await {
        Some(a) => a,
        None if send => return Err("no mailgate server is running (it sends the reports)".into()),
        None => {
            use mailgate::dmarcrpt::{Dmarcrpt, xml};
            let cache = mailgate::cache::Cache::open(&cfg.cache_db())
                .map_err(|e| format!("{}: {e}", cfg.cache_db().display()))?;
            let list: Vec<serde_json::Value> = xml::collect(
                &Dmarcrpt::new(cache),
                &xml::Reporter::from_config(cfg),
                &day,
                domain.as_deref(),
            )
            .into_iter()
            .map(|(d, _, x)| serde_json::json!({ "domain": d, "xml": x }))
            .collect();
            serde_json::json!({ "reports": list })
        }
    };
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    let list = answer["reports"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err(match domain {
            Some(d) => format!("no DMARC rows for {d} on {day}"),
            None => format!("no DMARC rows on {day}"),
        });
    }
    for e in &list {
        print!("{}", e["xml"].as_str().unwrap_or(""));
        if let Some(s) = e.get("sent") {
            for t in s["to"].as_array().into_iter().flatten() {
                eprintln!(
                    "{}: sent to {}",
                    e["domain"].as_str().unwrap_or(""),
                    t.as_str().unwrap_or("")
                );
            }
            for t in s["errors"].as_array().into_iter().flatten() {
                eprintln!(
                    "{}: {}",
                    e["domain"].as_str().unwrap_or(""),
                    t.as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// `mailgate report tls`: through the running server, or (printing only)
/// from the cache database when none runs.
pub async fn report_tls(
    cfg: &Config,
    domain: Option<String>,
    day: Option<String>,
    send: bool,
) -> Result<(), String> {
    use mailgate::outbound::tlsrpt;
    let day = checked_day(day)?;
    let req = format!(
        "TLSRPT {day} {}{}",
        domain.as_deref().unwrap_or("*"),
        if send { " SEND" } else { "" }
    );
    let answer = match mailgate::control::request(&cfg.control_socket(), &req).await {
        Some(a) => a,
        None if send => return Err("no mailgate server is running (it sends the reports)".into()),
        None => {
            let cache = mailgate::cache::Cache::open(&cfg.cache_db())
                .map_err(|e| format!("{}: {e}", cfg.cache_db().display()))?;
            let t = tlsrpt::Tlsrpt::new(cache);
            tlsrpt::report::collect(
                &t,
                &tlsrpt::report::Submitter::from_config(cfg),
                &day,
                domain.as_deref(),
            )
        }
    };
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    let list = answer["reports"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err(match domain {
            Some(d) => format!("no TLS sessions to {d} counted on {day}"),
            None => format!("no TLS sessions counted on {day}"),
        });
    }
    let reports: Vec<serde_json::Value> = list.iter().map(|e| e["report"].clone()).collect();
    let shown = if domain.is_some() {
        reports[0].clone()
    } else {
        serde_json::Value::Array(reports)
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    for e in &list {
        if let Some(s) = e.get("sent") {
            let to: Vec<&str> = s["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            eprintln!(
                "{}: sent to {}",
                e["domain"].as_str().unwrap_or(""),
                if to.is_empty() {
                    "nowhere".to_string()
                } else {
                    to.join(", ")
                }
            );
            for err in s["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                eprintln!("{}: {err}", e["domain"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}
