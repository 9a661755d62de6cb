//! `mailgate status`: what a running server is doing, through its control
//! socket.

use mailgate::config::Config;
use serde_json::Value;

/// "3d 4h", "2h 5m", "4m 10s", "12s".
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// 1536 -> "1.5 KiB".
fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The status answer in words.
fn render(a: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = format!(
        "mailgate {}, up {}\n",
        a["version"].as_str().unwrap_or("?"),
        span(n(&a["uptime_seconds"]))
    );
    let listeners: Vec<String> = a["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} ({})",
                l["address"].as_str().unwrap_or(""),
                l["mode"].as_str().unwrap_or("")
            )
        })
        .collect();
    out += &format!("listeners: {}\n", listeners.join(", "));
    let c = &a["connections"];
    out += &format!(
        "connections: {} open, {} since start, {} refused by limits\n",
        n(&c["open"]),
        n(&c["since_start"]),
        n(&c["refused"])
    );
    out += &format!(
        "messages: {} received, {} commands refused\n",
        n(&a["messages"]["received"]),
        n(&a["messages"]["rejections"])
    );
    let q = &a["queue"];
    out += &format!(
        "queue: {} messages ({}); recipients {} pending, {} queued, {} deferred",
        n(&q["messages"]),
        bytes(n(&q["bytes"])),
        n(&q["pending"]),
        n(&q["queued"]),
        n(&q["deferred"])
    );
    if n(&q["messages"]) > 0 {
        out += &format!("; oldest {}", span(n(&q["oldest_age_seconds"])));
    }
    out += "\n";
    let plugins: Vec<String> = a["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {} ({} calls, {} failures)",
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or(""),
                n(&p["calls"]),
                n(&p["failures"])
            )
        })
        .collect();
    out += &format!(
        "plugins: {}\n",
        if plugins.is_empty() {
            "none".to_string()
        } else {
            plugins.join(", ")
        }
    );
    let st = &a["store"];
    if st.is_object() {
        out += &format!(
            "store: redis at {}, {} (on_outage {}), {} failed commands\n",
            st["redis"].as_str().unwrap_or(""),
            if st["available"].as_bool() == Some(true) {
                "available"
            } else {
                "UNAVAILABLE"
            },
            st["on_outage"].as_str().unwrap_or(""),
            n(&st["failures"])
        );
    }
    let errors = a["last_errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        out += "last errors: none\n";
    } else {
        out += "last errors:\n";
        for e in errors {
            out += &format!("  {}\n", e.as_str().unwrap_or(""));
        }
    }
    out
}

/// Print the status of the server that `cfg` describes (JSON with
/// `json`); an error when none runs.
pub async fn status(cfg: &Config, json: bool) -> Result<(), String> {
    let sock = cfg.control_socket();
    let a = mailgate::control::request(&sock, "STATUS")
        .await
        .ok_or_else(|| {
            format!(
                "no server is running (nothing answers on {})",
                sock.display()
            )
        })?;
    if let Some(e) = a["error"].as_str() {
        return Err(e.to_string());
    }
    if json {
        println!("{a}");
    } else {
        print!("{}", render(&a));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_words() {
        let a = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 3725,
            "listeners": [{"address": "127.0.0.1:25", "mode": "starttls"}],
            "connections": {"open": 2, "since_start": 40, "refused": 1},
            "messages": {"received": 30, "rejections": 3},
            "queue": {"messages": 1, "bytes": 1536, "pending": 0, "queued": 0,
                      "deferred": 1, "oldest_age_seconds": 250},
            "plugins": [{"name": "srs", "version": "1.0.0", "calls": 9, "failures": 0}],
            "last_errors": ["2026-12-03 10:00:00 1abc == x@y R=remote: refused"],
        });
        let t = render(&a);
        assert_eq!(
            t,
            "mailgate 0.1.0, up 1h 2m\nlisteners: 127.0.0.1:25 (starttls)\n\
             connections: 2 open, 40 since start, 1 refused by limits\n\
             messages: 30 received, 3 commands refused\n\
             queue: 1 messages (1.5 KiB); recipients 0 pending, 0 queued, 1 deferred; oldest 4m 10s\n\
             plugins: srs 1.0.0 (9 calls, 0 failures)\n\
             last errors:\n  2026-12-03 10:00:00 1abc == x@y R=remote: refused\n"
        );
    }
}
