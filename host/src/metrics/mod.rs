//! What the gateway counts for Prometheus: one process-wide set of metric
//! families ([`get`]), moved by the code that does the work and by the
//! main log as it writes each event (so the log and the counters agree), written in the
//! text format by [`render`] and served by [`http`] when `[metrics]
//! listen` is set.
//!
//! Gauges that describe the spool (messages, recipients by state, the
//! oldest message, bytes) are read when scraped, through the
//! [`SpoolSummary`] the server registers.

pub mod http;
pub mod registry;

use registry::{Counters, Gauges, Histograms};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets for hooks and lookups (seconds).
const FAST: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Delivery latency buckets, arrival to delivery (seconds).
const DELIVERY: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Every family.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Connections accepted, by listener address.
    pub connections: Counters,
    /// Connections open now, by listener address.
    pub connections_open: Gauges,
    /// Connections refused before a session, by reason.
    pub connections_refused: Counters,
    /// Inbound TLS handshakes completed, by version and resumption.
    pub tls_handshakes: Counters,
    /// Inbound sessions whose client pipelined before our banner.
    pub early_pipelining: Counters,
    /// Messages accepted, by protocol.
    pub messages_received: Counters,
    /// Bytes of messages accepted.
    pub received_bytes: Counters,
    /// SMTP commands refused, by stage, class and who refused.
    pub rejections: Counters,
    /// Failed SMTP AUTH attempts.
    pub auth_failures: Counters,
    /// Outbound SMTP connections opened, by TLS version, resumption,
    /// certificate check and early pipelining.
    pub outbound_connections: Counters,
    /// Delivery outcomes per recipient, by outcome and destination class.
    pub deliveries: Counters,
    /// Remote hosts that failed (connection, TLS, greeting).
    pub host_failures: Counters,
    /// Arrival to delivery, by destination class.
    pub delivery_latency: Histograms,
    /// Plugin hook calls, by plugin and hook.
    pub plugin_calls: Counters,
    /// Plugin hook failures, by plugin and kind (error, trap, budget).
    pub plugin_failures: Counters,
    /// Hook calls where a shadow plugin answered otherwise than its
    /// active plugin, by shadow and hook.
    pub plugin_shadow_differences: Counters,
    /// Plugin hook duration, by plugin.
    pub plugin_hook_duration: Histograms,
    /// DNS lookups, by record type.
    pub dns_lookups: Counters,
    /// DNS lookups that failed (no answer is not a failure), by type.
    pub dns_failures: Counters,
    /// DNS lookup duration, by record type.
    pub dns_duration: Histograms,
    /// Listening sockets: address and what they serve (always 1).
    pub listeners: Gauges,
    /// 1 while the shared store (Redis) answers, 0 while it does not; no
    /// series without `[store] redis`.
    pub store_up: Gauges,
    /// Commands to the shared store that failed or were not tried.
    pub store_failures: Counters,
    /// Always 1 with `[store] redis`: where it is and the outage policy.
    pub store_info: Gauges,
    spool_gauges: Gauges,
    info: Gauges,
}

/// A scrape-time view of the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpoolState {
    /// Messages in the spool.
    pub messages: u64,
    /// Recipients not yet routed.
    pub pending: u64,
    /// Recipients waiting for their first outbound attempt.
    pub queued: u64,
    /// Recipients waiting after at least one failed attempt.
    pub deferred: u64,
    /// Bytes of the messages.
    pub bytes: u64,
    /// Seconds since the oldest message arrived (0 without messages).
    pub oldest_age: f64,
}

/// Reads the spool's state when scraped.
pub trait SpoolSummary: Send + Sync {
    /// The state now.
    fn summary(&self) -> SpoolState;
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
static SPOOL: OnceLock<Box<dyn SpoolSummary>> = OnceLock::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Register the spool read at each scrape (once; later calls are
/// ignored).
pub fn register_spool(s: Box<dyn SpoolSummary>) {
    let _ = SPOOL.set(s);
}

/// The whole exposition, as `/metrics` serves it.
pub fn render() -> String {
    get().render()
}

/// Kind of a plugin failure, from the runtime's words for it.
pub fn failure_kind(reason: &str) -> &'static str {
    if reason.ends_with("budget exceeded") {
        "budget"
    } else if reason.starts_with("trap:") {
        "trap"
    } else {
        "error"
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set (the process uses [`get`]'s).
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            connections: Counters::new(
                "mailgate_smtp_connections_total",
                "SMTP connections accepted, by listener address.",
                &["listener"],
            ),
            connections_open: Gauges::new(
                "mailgate_smtp_connections_open",
                "SMTP connections open now, by listener address.",
                &["listener"],
            ),
            connections_refused: Counters::new(
                "mailgate_smtp_connections_refused_total",
                "SMTP connections refused before the session by a limit, by reason.",
                &["reason"],
            ),
            tls_handshakes: Counters::new(
                "mailgate_smtp_tls_handshakes_total",
                "Inbound TLS handshakes completed, by protocol version and whether the session was resumed.",
                &["version", "resumed"],
            ),
            early_pipelining: Counters::new(
                "mailgate_smtp_early_pipelining_total",
                "Inbound sessions whose client sent commands before the banner (PIPECONNECT).",
                &[],
            ),
            messages_received: Counters::new(
                "mailgate_messages_received_total",
                "Messages accepted into the spool, by protocol (smtp, esmtp, esmtps, esmtpsa, local).",
                &["protocol"],
            ),
            received_bytes: Counters::new(
                "mailgate_received_bytes_total",
                "Bytes of the messages accepted.",
                &[],
            ),
            rejections: Counters::new(
                "mailgate_smtp_rejections_total",
                "SMTP commands refused, by stage, class (temporary or permanent) and source (host or plugin).",
                &["stage", "class", "source"],
            ),
            auth_failures: Counters::new(
                "mailgate_smtp_auth_failures_total",
                "Failed SMTP AUTH attempts, by mechanism.",
                &["mechanism"],
            ),
            outbound_connections: Counters::new(
                "mailgate_outbound_connections_total",
                "Outbound SMTP connections ready for mail, by TLS version (none in clear), resumed session, certificate check (dane, yes, no) and early pipelining (PIPECONNECT) used.",
                &["tls", "resumed", "verified", "early_pipelining"],
            ),
            deliveries: Counters::new(
                "mailgate_deliveries_total",
                "Delivery attempts per recipient, by outcome (delivered, deferred, failed) and destination class (local, remote, plugin, routing).",
                &["outcome", "class"],
            ),
            host_failures: Counters::new(
                "mailgate_delivery_host_failures_total",
                "Remote hosts given up on for a delivery attempt (connection, greeting or TLS failures).",
                &[],
            ),
            delivery_latency: Histograms::new(
                "mailgate_delivery_latency_seconds",
                "Time from a message's arrival to the delivery of a recipient, by destination class (1 s resolution).",
                &["class"],
                DELIVERY,
            ),
            plugin_calls: Counters::new(
                "mailgate_plugin_calls_total",
                "Plugin hook calls, by plugin and hook.",
                &["plugin", "hook"],
            ),
            plugin_failures: Counters::new(
                "mailgate_plugin_failures_total",
                "Plugin hook calls that failed, by plugin and kind (error, trap, budget).",
                &["plugin", "kind"],
            ),
            plugin_shadow_differences: Counters::new(
                "mailgate_plugin_shadow_differences_total",
                "Hook calls where a shadow plugin's answer differed from its active plugin's, by shadow and hook.",
                &["plugin", "hook"],
            ),
            plugin_hook_duration: Histograms::new(
                "mailgate_plugin_hook_duration_seconds",
                "Wall time of plugin hook calls, instance setup included, by plugin.",
                &["plugin"],
                FAST,
            ),
            dns_lookups: Counters::new(
                "mailgate_dns_lookups_total",
                "DNS lookups made for routing and transport security (MX, A/AAAA, TLSA, TXT through the gateway's resolver; SPF and DKIM lookups are not counted here), by record type.",
                &["type"],
            ),
            dns_failures: Counters::new(
                "mailgate_dns_failures_total",
                "DNS lookups that failed (SERVFAIL, timeout, bogus), by record type; NXDOMAIN and no data are answers.",
                &["type"],
            ),
            dns_duration: Histograms::new(
                "mailgate_dns_lookup_duration_seconds",
                "Wall time of DNS lookups, by record type.",
                &["type"],
                FAST,
            ),
            listeners: Gauges::new(
                "mailgate_listener_info",
                "Always 1 for each listening socket, by address and mode (plain, starttls, implicit-tls, metrics).",
                &["listener", "mode"],
            ),
            store_up: Gauges::new(
                "mailgate_store_up",
                "1 while the shared store (Redis) answers, 0 while it is unavailable and store.on_outage applies.",
                &[],
            ),
            store_failures: Counters::new(
                "mailgate_store_failures_total",
                "Commands to the shared store (Redis) that failed, timed out or were not tried during an outage.",
                &[],
            ),
            store_info: Gauges::new(
                "mailgate_store_info",
                "Always 1 when state is shared through Redis ([store] redis): its address and store.on_outage.",
                &["redis", "on_outage"],
            ),
            spool_gauges: Gauges::new(
                "mailgate_queue_recipients",
                "Recipients in the spool, by state (pending: not routed yet, queued: waiting for a first attempt, deferred: waiting after a failed one).",
                &["state"],
            ),
            info: Gauges::new(
                "mailgate_build_info",
                "Always 1; the version of the running gateway.",
                &["version"],
            ),
        }
    }

    /// Since the gateway started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A listening socket: named in `mailgate_listener_info`, its open
    /// connections shown as 0 until the first.
    pub fn listening(&self, address: &str, mode: &str) {
        self.listeners.set(&[address, mode], 1.0);
        if mode != "metrics" {
            self.connections_open.add(&[address], 0.0);
        }
    }

    /// Record one plugin hook call that started at `started`.
    pub fn plugin_call(&self, plugin: &str, hook: &str, started: Instant, failure: Option<&str>) {
        self.plugin_calls.inc(&[plugin, hook]);
        self.plugin_hook_duration
            .observe(&[plugin], started.elapsed().as_secs_f64());
        if let Some(reason) = failure {
            self.plugin_failures.inc(&[plugin, failure_kind(reason)]);
        }
    }

    /// Record one DNS lookup of `rtype` that started at `started`.
    pub fn dns_lookup(&self, rtype: &str, started: Instant, failed: bool) {
        self.dns_lookups.inc(&[rtype]);
        self.dns_duration
            .observe(&[rtype], started.elapsed().as_secs_f64());
        if failed {
            self.dns_failures.inc(&[rtype]);
        }
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        self.info.encode(&mut out);
        let up = Gauges::new(
            "mailgate_uptime_seconds",
            "Seconds since the gateway started.",
            &[],
        );
        up.set(&[], self.started.elapsed().as_secs_f64());
        up.encode(&mut out);
        for c in [
            &self.connections,
            &self.connections_refused,
            &self.tls_handshakes,
            &self.early_pipelining,
            &self.messages_received,
            &self.received_bytes,
            &self.rejections,
            &self.auth_failures,
            &self.outbound_connections,
            &self.deliveries,
            &self.host_failures,
            &self.plugin_calls,
            &self.plugin_failures,
            &self.plugin_shadow_differences,
            &self.dns_lookups,
            &self.dns_failures,
            &self.store_failures,
        ] {
            c.encode(&mut out);
        }
        self.connections_open.encode(&mut out);
        self.listeners.encode(&mut out);
        self.store_up.encode(&mut out);
        self.store_info.encode(&mut out);
        for h in [
            &self.delivery_latency,
            &self.plugin_hook_duration,
            &self.dns_duration,
        ] {
            h.encode(&mut out);
        }
        if let Some(s) = SPOOL.get() {
            let st = s.summary();
            let single = |name, help, v: f64| {
                let g = Gauges::new(name, help, &[]);
                g.set(&[], v);
                g
            };
            for g in [
                single(
                    "mailgate_queue_messages",
                    "Messages in the spool.",
                    st.messages as f64,
                ),
                single(
                    "mailgate_queue_bytes",
                    "Bytes of the messages in the spool.",
                    st.bytes as f64,
                ),
                single(
                    "mailgate_queue_oldest_message_age_seconds",
                    "Seconds since the oldest message in the spool arrived (0 when empty).",
                    st.oldest_age,
                ),
            ] {
                g.encode(&mut out);
            }
            self.spool_gauges.set(&["pending"], st.pending as f64);
            self.spool_gauges.set(&["queued"], st.queued as f64);
            self.spool_gauges.set(&["deferred"], st.deferred as f64);
            self.spool_gauges.encode(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_and_the_exposition() {
        let m = Metrics::new();
        m.plugin_call("srs", "rcpt-to", Instant::now(), Some("trap: unreachable"));
        m.plugin_call("srs", "rcpt-to", Instant::now(), None);
        assert_eq!(m.plugin_calls.get(&["srs", "rcpt-to"]), 2);
        assert_eq!(m.plugin_failures.get(&["srs", "trap"]), 1);
        assert_eq!(failure_kind("time budget exceeded"), "budget");
        assert_eq!(failure_kind("malformed answer"), "error");
        let text = m.render();
        assert!(text.contains("mailgate_plugin_calls_total{plugin=\"srs\",hook=\"rcpt-to\"} 2\n"));
        assert!(text.contains("# TYPE mailgate_plugin_hook_duration_seconds histogram\n"));
        assert!(text.starts_with("# HELP mailgate_build_info "));
    }
}
