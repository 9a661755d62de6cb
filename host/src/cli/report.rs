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

/// Ask the running server for a day's reports (`KIND DAY DOMAIN [SEND]`
/// on the control socket), or, when none runs and nothing is to be sent,
/// make them from the cache database with `offline`. The reports, or why
/// there are none (`empty` says it for an empty day).
async fn reports(
    cfg: &Config,
    kind: &str,
    day: &str,
    domain: Option<&str>,
    send: bool,
    offline: impl FnOnce(mailgate::cache::Cache) -> serde_json::Value,
    empty: String,
) -> Result<Vec<serde_json::Value>, String> {
    let req = format!(
        "{kind} {day} {}{}",
        domain.unwrap_or("*"),
        if send { " SEND" } else { "" }
    );
    let answer = match mailgate::control::request(&cfg.control_socket(), &req).await {
        Some(a) => a,
        None if send => return Err("no mailgate server is running (it sends the reports)".into()),
        None => {
            let cache = mailgate::cache::Cache::open(&cfg.cache_db())
                .map_err(|e| format!("{}: {e}", cfg.cache_db().display()))?;
            offline(cache)
        }
    };
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    let list = answer["reports"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err(empty);
    }
    Ok(list)
}

/// On stderr, where each report sent went (`DOMAIN: sent to A, B`) and
/// each destination's error.
fn print_sent(list: &[serde_json::Value]) {
    for e in list {
        let Some(s) = e.get("sent") else {
            continue;
        };
        let domain = e["domain"].as_str().unwrap_or("");
        let to: Vec<&str> = s["to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let to = if to.is_empty() {
            "nowhere".to_string()
        } else {
            to.join(", ")
        };
        eprintln!("{domain}: sent to {to}");
        for err in s["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            eprintln!("{domain}: {err}");
        }
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
    use mailgate::dmarcrpt::{Dmarcrpt, xml};
    let day = checked_day(day)?;
    let empty = match &domain {
        Some(d) => format!("no DMARC rows for {d} on {day}"),
        None => format!("no DMARC rows on {day}"),
    };
    let list = reports(
        cfg,
        "DMARCRPT",
        &day,
        domain.as_deref(),
        send,
        |cache| {
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
        },
        empty,
    )
    .await?;
    for e in &list {
        print!("{}", e["xml"].as_str().unwrap_or(""));
    }
    print_sent(&list);
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
    let empty = match &domain {
        Some(d) => format!("no TLS sessions to {d} counted on {day}"),
        None => format!("no TLS sessions counted on {day}"),
    };
    let list = reports(
        cfg,
        "TLSRPT",
        &day,
        domain.as_deref(),
        send,
        |cache| {
            tlsrpt::report::collect(
                &tlsrpt::Tlsrpt::new(cache),
                &tlsrpt::report::Submitter::from_config(cfg),
                &day,
                domain.as_deref(),
            )
        },
        empty,
    )
    .await?;
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
    print_sent(&list);
    Ok(())
}
