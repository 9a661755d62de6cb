//! The Prometheus endpoint, scraped while mail flows: the counters move by
//! what was done (messages in, bytes, local deliveries, a deferral, a
//! refused recipient, a TLS handshake, plugin calls, MX lookups), the
//! spool gauges show the message still queued, Debian's promtool passes
//! the exposition (`promtool check metrics`), and `mailgate status` says
//! the same in words.

use mailgate_tests::{Client, Server, free_port, http_get, plugin_wasm, require};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Every sample of the exposition by its series (`name{labels}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[test]
fn scraped_while_mail_flows() {
    let mport = free_port();
    let mut s = Server::configure(
        "",
        "",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[plugin]]\nname = \"probe\"\npath = \"{}\"\n",
            plugin_wasm("hooks_probe.wasm").display()
        ),
    );
    s.run();
    let (status, ctype, before) = http_get(mport, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let before = samples(&before);
    assert_eq!(http_get(mport, "/other").0, "HTTP/1.1 404 Not Found");

    let local: Vec<String> = (0..3).map(|_| s.submit_to("a@local.test")).collect();
    let remote = s.submit_to("x@remote.test");
    for id in &local {
        s.wait_line(id, "=> a@local.test");
        s.wait_line(id, "Completed");
    }
    s.wait_line(&remote, "== x@remote.test");
    // A refused recipient, and a session under TLS.
    let mut c = Client::starttls(s.port);
    assert!(c.cmd("MAIL FROM:<a@local.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<x%y@local.test>").starts_with("550"));
    c.cmd("QUIT");
    s.wait_log("rejected RCPT <x%y@local.test>", 1);

    // The spool drops completed messages just after their log line: wait
    // for it to hold only the deferred one.
    let start = std::time::Instant::now();
    let text = loop {
        let (_, _, text) = http_get(mport, "/metrics");
        let settled = value(&samples(&text), "mailgate_queue_messages") == 1.0;
        if settled || start.elapsed() > std::time::Duration::from_secs(20) {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let after = samples(&text);
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let listener = format!("listener=\"127.0.0.1:{}\"", s.port);
    assert_eq!(
        moved("mailgate_messages_received_total{protocol=\"esmtp\"}"),
        4.0,
        "{text}"
    );
    assert!(
        moved("mailgate_received_bytes_total") >= 4.0 * 20.0,
        "{text}"
    );
    assert_eq!(
        moved("mailgate_deliveries_total{outcome=\"delivered\",class=\"local\"}"),
        3.0,
        "{text}"
    );
    assert!(
        moved("mailgate_deliveries_total{outcome=\"deferred\",class=\"remote\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        moved("mailgate_smtp_rejections_total{stage=\"rcpt\",class=\"permanent\",source=\"host\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved(&format!("mailgate_smtp_connections_total{{{listener}}}")),
        5.0,
        "{text}"
    );
    assert_eq!(
        moved("mailgate_smtp_tls_handshakes_total{version=\"TLS1.3\",resumed=\"false\"}"),
        1.0,
        "{text}"
    );
    // The probe has a rcpt-to hook: one call per recipient the host's own
    // policy accepted (the %-hack was refused before the plugins).
    assert_eq!(
        moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"rcpt-to\"}"),
        4.0,
        "{text}"
    );
    assert_eq!(
        moved("mailgate_plugin_hook_duration_seconds_count{plugin=\"probe\"}"),
        moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"connect\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"helo\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"mail-from\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"rcpt-to\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"data\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"route\"}")
            + moved("mailgate_plugin_calls_total{plugin=\"probe\",hook=\"deliver\"}"),
        "{text}"
    );
    // remote.test's MX lookup was refused by the test's DNS: a failure.
    assert!(
        moved("mailgate_dns_lookups_total{type=\"MX\"}") >= 1.0,
        "{text}"
    );
    assert!(
        moved("mailgate_dns_failures_total{type=\"MX\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        moved("mailgate_delivery_latency_seconds_count{class=\"local\"}"),
        3.0,
        "{text}"
    );
    // The deferred message waits in the spool.
    assert_eq!(value(&after, "mailgate_queue_messages"), 1.0, "{text}");
    assert_eq!(
        value(&after, "mailgate_queue_recipients{state=\"deferred\"}"),
        1.0,
        "{text}"
    );
    assert!(value(&after, "mailgate_uptime_seconds") > 0.0);

    // `mailgate status` tells the same through the control socket.
    let (ok, st) = s.cli(&["status"]);
    assert!(ok, "{st}");
    for want in [
        format!("127.0.0.1:{} (starttls)", s.port),
        format!("127.0.0.1:{} (implicit-tls)", s.tls_port),
        format!("127.0.0.1:{mport} (metrics)"),
        " open, 5 since start, 0 refused by limits".to_string(),
        "messages: 4 received, 1 commands refused".to_string(),
        "queue: 1 messages (".to_string(),
        "0 pending, 0 queued, 1 deferred; oldest ".to_string(),
        "plugins: probe ".to_string(),
        "last errors:\n  ".to_string(),
    ] {
        assert!(st.contains(&want), "{want:?} not in:\n{st}");
    }
    assert!(
        st.lines()
            .any(|l| l.contains(&remote) && l.contains("== x@remote.test")),
        "{st}"
    );
    let (_, json) = s.cli(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["queue"]["deferred"], 1, "{v}");

    // promtool lints the exposition: names, help, types, histograms.
    let mut p = Command::new(require("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
