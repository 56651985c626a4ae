//! Prometheus metrics with the controller-runtime names dashboards already use, plus ARM request
//! figures. One process-wide registry; labels are bounded (controller = kind, result, op, status
//! class, reason), never object names.
//!
//! The text exposition format is written by hand: a dozen series do not need a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Histogram buckets in seconds (controller-runtime's reconcile buckets, trimmed).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::default())).lock().unwrap_or_else(|e| e.into_inner())
}

const HELP: &[(&str, &str, &str)] = &[
    ("controller_runtime_reconcile_total", "counter", "Total number of reconciliations per controller"),
    ("controller_runtime_reconcile_errors_total", "counter", "Total number of reconciliation errors per controller"),
    ("controller_runtime_reconcile_time_seconds", "histogram", "Length of time per reconciliation per controller"),
    ("controller_runtime_active_workers", "gauge", "Number of currently used workers per controller"),
    ("controller_runtime_max_concurrent_reconciles", "gauge", "Maximum number of concurrent reconciles per controller"),
    ("aml_reconcile_failures_total", "counter", "Failed reconciliations by controller and reason"),
    ("aml_arm_requests_total", "counter", "ARM requests by operation and status class"),
    ("aml_arm_request_duration_seconds", "histogram", "ARM request latency by operation"),
    ("aml_arm_throttled_total", "counter", "ARM answers 429 (throttled)"),
    ("aml_arm_client_wait_seconds_total", "counter", "Seconds requests waited for the client-side ARM budget"),
    ("aml_arm_writes_deferred_total", "counter", "Writes whose reconcile gave its worker back to wait for the write budget"),
    ("aml_token_requests_total", "counter", "Token acquisitions from Entra ID by result"),
    ("aml_arm_principal_objects", "gauge", "Objects managed with one principal (subscription, client id)"),
    ("aml_arm_principal_object_capacity", "gauge", "Objects one principal's read budget can check per resync period (reads per second x resync seconds)"),
];

fn counter(name: &'static str, labels: Labels, by: u64) {
    *registry().counters.entry((name, labels)).or_insert(0) += by;
}

/// A reconcile finished: `result` is `success`, `requeue` or `error`.
pub fn reconcile(controller: &str, result: &'static str, elapsed: Duration, reason: Option<&'static str>) {
    let c = || vec![("controller", controller.to_string())];
    let mut labels = c();
    labels.push(("result", result.to_string()));
    counter("controller_runtime_reconcile_total", labels, 1);
    if result == "error" {
        counter("controller_runtime_reconcile_errors_total", c(), 1);
        if let Some(reason) = reason {
            let mut l = c();
            l.push(("reason", reason.to_string()));
            counter("aml_reconcile_failures_total", l, 1);
        }
    }
    registry()
        .histograms
        .entry(("controller_runtime_reconcile_time_seconds", c()))
        .or_default()
        .observe(elapsed.as_secs_f64());
}

/// Adds `delta` to the active workers gauge of `controller`.
pub fn active_workers(controller: &str, delta: f64) {
    *registry().gauges.entry(("controller_runtime_active_workers", vec![("controller", controller.to_string())])).or_insert(0.0) += delta;
}

/// Sets the concurrency limit of `controller`.
pub fn max_concurrent_reconciles(controller: &str, n: usize) {
    registry().gauges.insert(("controller_runtime_max_concurrent_reconciles", vec![("controller", controller.to_string())]), n as f64);
}

/// One ARM request: `op` is the HTTP method (or `POLL`), `status` the answer (0 = no answer).
pub fn arm_request(op: &'static str, status: u16, elapsed: Duration) {
    let class = match status {
        0 => "transport",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    counter("aml_arm_requests_total", vec![("op", op.to_string()), ("status_class", class.to_string())], 1);
    if status == 429 {
        counter("aml_arm_throttled_total", vec![], 1);
    }
    registry()
        .histograms
        .entry(("aml_arm_request_duration_seconds", vec![("op", op.to_string())]))
        .or_default()
        .observe(elapsed.as_secs_f64());
}

/// Time spent waiting for the client-side ARM budget.
pub fn arm_client_wait(waited: Duration) {
    if !waited.is_zero() {
        let mut r = registry();
        let key = ("aml_arm_client_wait_seconds_total", vec![]);
        // Stored in milliseconds in the counter map; rendered as seconds.
        *r.counters.entry(key).or_insert(0) += waited.as_millis() as u64;
    }
}

/// A reconcile gave its worker back until the write budget earns its token.
pub fn write_deferred() {
    counter("aml_arm_writes_deferred_total", vec![], 1);
}

/// Objects of one principal, and how many its read budget can check per resync period.
pub fn principal_objects(subscription: &str, client_id: &str, objects: u64, capacity: u64) {
    let labels = || vec![("subscription", subscription.to_string()), ("client_id", client_id.to_string())];
    let mut r = registry();
    r.gauges.insert(("aml_arm_principal_objects", labels()), objects as f64);
    r.gauges.insert(("aml_arm_principal_object_capacity", labels()), capacity as f64);
}

/// A token acquisition: `ok` or `error`.
pub fn token_request(result: &'static str) {
    counter("aml_token_requests_total", vec![("result", result.to_string())], 1);
}

fn labels_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let r = registry();
    let mut out = String::new();
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((n, labels), v) in r.counters.iter().filter(|((n, _), _)| n == name) {
            let value = if *n == "aml_arm_client_wait_seconds_total" { *v as f64 / 1000.0 } else { *v as f64 };
            let _ = writeln!(out, "{n}{} {value}", labels_text(labels, None));
        }
        for ((n, labels), v) in r.gauges.iter().filter(|((n, _), _)| n == name) {
            let _ = writeln!(out, "{n}{} {v}", labels_text(labels, None));
        }
        for ((n, labels), h) in r.histograms.iter().filter(|((n, _), _)| n == name) {
            for (i, b) in BUCKETS.iter().enumerate() {
                let c = h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(out, "{n}_bucket{} {c}", labels_text(labels, Some(("le", b.to_string()))));
            }
            let _ = writeln!(out, "{n}_bucket{} {}", labels_text(labels, Some(("le", "+Inf".into()))), h.count);
            let _ = writeln!(out, "{n}_sum{} {}", labels_text(labels, None), h.sum);
            let _ = writeln!(out, "{n}_count{} {}", labels_text(labels, None), h.count);
        }
    }
    out
}
