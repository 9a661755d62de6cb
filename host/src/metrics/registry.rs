//! Metric families and their Prometheus text exposition (format 0.0.4):
//! counters, gauges and histograms with a fixed set of label names, each
//! series a sorted map entry so the output is stable.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// What every family has: its name, help text and label names.
#[derive(Debug)]
struct Meta {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Meta {
    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }

    fn key(&self, values: &[&str]) -> Vec<String> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        values.iter().map(|v| v.to_string()).collect()
    }
}

/// `{a="x",b="y"}` (empty without labels), `extra` appended last.
fn labels(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float as the text format writes it.
fn num(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

/// A family of counters: values only go up.
#[derive(Debug)]
pub struct Counters {
    meta: Meta,
    series: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Counters {
    /// A family; `name` should end in `_total`.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Counters {
        Counters {
            meta: Meta { name, help, labels },
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Add `n` to the series with these label values.
    pub fn add(&self, values: &[&str], n: u64) {
        let k = self.meta.key(values);
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(k).or_insert(0) += n;
    }

    /// Add one.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// The value of one series (0 when it never moved).
    pub fn get(&self, values: &[&str]) -> u64 {
        let k = self.meta.key(values);
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&k).copied().unwrap_or(0)
    }

    /// The sum over every series.
    pub fn total(&self) -> u64 {
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.values().sum()
    }

    /// Append the family's exposition.
    pub fn encode(&self, out: &mut String) {
        self.meta.header(out, "counter");
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in m.iter() {
            let l = labels(self.meta.labels, k, None);
            let _ = writeln!(out, "{}{l} {v}", self.meta.name);
        }
    }
}

/// A family of gauges: values that go up and down, or are set.
#[derive(Debug)]
pub struct Gauges {
    meta: Meta,
    series: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Gauges {
    /// A family.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Gauges {
        Gauges {
            meta: Meta { name, help, labels },
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Add `d` (negative to subtract).
    pub fn add(&self, values: &[&str], d: f64) {
        let k = self.meta.key(values);
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(k).or_insert(0.0) += d;
    }

    /// Set the series to `v`.
    pub fn set(&self, values: &[&str], v: f64) {
        let k = self.meta.key(values);
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(k, v);
    }

    /// The sum over every series.
    pub fn total(&self) -> f64 {
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.values().sum()
    }

    /// Every series: label values and value.
    pub fn series(&self) -> Vec<(Vec<String>, f64)> {
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Append the family's exposition.
    pub fn encode(&self, out: &mut String) {
        self.meta.header(out, "gauge");
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in m.iter() {
            let l = labels(self.meta.labels, k, None);
            let _ = writeln!(out, "{}{l} {}", self.meta.name, num(*v));
        }
    }
}

#[derive(Debug, Clone)]
struct Hist {
    /// Observations at or below each bound (not cumulative; summed when
    /// written).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A family of histograms with the same bucket bounds.
#[derive(Debug)]
pub struct Histograms {
    meta: Meta,
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Hist>>,
}

impl Histograms {
    /// A family; `bounds` ascending, `+Inf` is added.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Histograms {
        Histograms {
            meta: Meta { name, help, labels },
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Record one observation.
    pub fn observe(&self, values: &[&str], v: f64) {
        let k = self.meta.key(values);
        let n = self.bounds.len();
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.entry(k).or_insert_with(|| Hist {
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        });
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            h.counts[i] += 1;
        }
        h.sum += v;
        h.count += 1;
    }

    /// Observations of one series.
    pub fn count(&self, values: &[&str]) -> u64 {
        let k = self.meta.key(values);
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&k).map_or(0, |h| h.count)
    }

    /// Append the family's exposition.
    pub fn encode(&self, out: &mut String) {
        self.meta.header(out, "histogram");
        let name = self.meta.name;
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (k, h) in m.iter() {
            let mut cum = 0;
            for (b, c) in self.bounds.iter().zip(&h.counts) {
                cum += c;
                let l = labels(self.meta.labels, k, Some(("le", &num(*b))));
                let _ = writeln!(out, "{name}_bucket{l} {cum}");
            }
            let l = labels(self.meta.labels, k, Some(("le", "+Inf")));
            let _ = writeln!(out, "{name}_bucket{l} {}", h.count);
            let l = labels(self.meta.labels, k, None);
            let _ = writeln!(out, "{name}_sum{l} {}", num(h.sum));
            let _ = writeln!(out, "{name}_count{l} {}", h.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition() {
        let c = Counters::new("t_total", "Things.", &["kind"]);
        c.inc(&["a\"b"]);
        c.add(&["x"], 3);
        let g = Gauges::new("t_open", "Open things.", &[]);
        g.add(&[], 2.0);
        g.add(&[], -1.0);
        let h = Histograms::new("t_seconds", "Time.", &["p"], &[0.1, 1.0]);
        h.observe(&["q"], 0.05);
        h.observe(&["q"], 0.5);
        h.observe(&["q"], 7.0);
        let mut out = String::new();
        c.encode(&mut out);
        g.encode(&mut out);
        h.encode(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Things.\n# TYPE t_total counter\nt_total{kind=\"a\\\"b\"} 1\n\
             t_total{kind=\"x\"} 3\n# HELP t_open Open things.\n# TYPE t_open gauge\nt_open 1\n\
             # HELP t_seconds Time.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{p=\"q\",le=\"0.1\"} 1\nt_seconds_bucket{p=\"q\",le=\"1\"} 2\n\
             t_seconds_bucket{p=\"q\",le=\"+Inf\"} 3\nt_seconds_sum{p=\"q\"} 7.55\n\
             t_seconds_count{p=\"q\"} 3\n"
        );
        assert_eq!(c.get(&["x"]), 3);
        assert_eq!(h.count(&["q"]), 3);
    }
}
