//! The data plane's statistics, named as Envoy names them (`cluster.<name>.upstream_rq_total`,
//! `listener.<address>.downstream_cx_active`, `http.<prefix>.downstream_rq_2xx`, …) so the tools
//! and dashboards written for Envoy read them unchanged. Counters and gauges are atomics handed
//! out once and updated lock-free; `/stats` prints them as text and `/stats/prometheus` with
//! Envoy's tag extraction (`envoy_cluster_upstream_rq_total{envoy_cluster_name="…"}`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (active connections, requests in flight).
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub(crate) fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Raises the gauge if it is below `limit` (a circuit breaker taking a slot); the guard
    /// gives the slot back.
    pub(crate) fn try_track(&self, limit: u32) -> Option<GaugeGuard> {
        let limit = i64::from(limit);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| (value < limit).then_some(value + 1))
            .ok()
            .map(|_| GaugeGuard(self.clone()))
    }

    /// Raises the gauge now and lowers it when the returned guard is dropped.
    pub(crate) fn track(&self) -> GaugeGuard {
        self.inc();
        GaugeGuard(self.clone())
    }
}

/// Lowers its gauge when dropped.
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Clone)]
enum Stat {
    Counter(Counter),
    Gauge(Gauge),
}

/// One Prometheus sample: its labels and value.
type Sample = (Vec<(&'static str, String)>, i128);

/// Every stat of the process, by full name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    stats: Arc<RwLock<BTreeMap<String, Stat>>>,
}

impl Stats {
    /// The counter called `name`, created at zero on first use.
    pub(crate) fn counter(&self, name: &str) -> Counter {
        if let Some(Stat::Counter(counter)) = self.read().get(name) {
            return counter.clone();
        }
        let mut stats = istio_runtime::sync::write(&self.stats);
        match stats.entry(name.to_string()).or_insert_with(|| Stat::Counter(Counter::default())) {
            Stat::Counter(counter) => counter.clone(),
            Stat::Gauge(_) => Counter::default(),
        }
    }

    /// The gauge called `name`, created at zero on first use.
    pub(crate) fn gauge(&self, name: &str) -> Gauge {
        if let Some(Stat::Gauge(gauge)) = self.read().get(name) {
            return gauge.clone();
        }
        let mut stats = istio_runtime::sync::write(&self.stats);
        match stats.entry(name.to_string()).or_insert_with(|| Stat::Gauge(Gauge::default())) {
            Stat::Gauge(gauge) => gauge.clone(),
            Stat::Counter(_) => Gauge::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Stat>> {
        istio_runtime::sync::read(&self.stats)
    }

    /// Current values by name, in name order.
    pub(crate) fn snapshot(&self) -> Vec<(String, i128, bool)> {
        self.read()
            .iter()
            .map(|(name, stat)| match stat {
                Stat::Counter(counter) => (name.clone(), counter.value() as i128, true),
                Stat::Gauge(gauge) => (name.clone(), gauge.value() as i128, false),
            })
            .collect()
    }

    /// `/stats`: `name: value` lines, optionally only names matching `filter`.
    pub(crate) fn render_text(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut text = String::new();
        for (name, value, is_counter) in self.snapshot() {
            if filter.is_some_and(|filter| !filter.is_match(&name)) || (used_only && is_counter && value == 0) {
                continue;
            }
            let _ = writeln!(text, "{name}: {value}");
        }
        text
    }

    /// `/stats/prometheus`: Envoy's exposition, with its default tag extraction.
    pub(crate) fn render_prometheus(&self) -> String {
        let mut families: BTreeMap<String, (bool, Vec<Sample>)> = BTreeMap::new();
        for (name, value, is_counter) in self.snapshot() {
            let (metric, tags) = extract_tags(&name);
            let metric = format!("envoy_{}", sanitize(&metric));
            families.entry(metric).or_insert_with(|| (is_counter, Vec::new())).1.push((tags, value));
        }
        let mut text = String::new();
        for (metric, (is_counter, samples)) in families {
            let _ = writeln!(text, "# TYPE {metric} {}", if is_counter { "counter" } else { "gauge" });
            for (tags, value) in samples {
                if tags.is_empty() {
                    let _ = writeln!(text, "{metric} {value}");
                } else {
                    let labels: Vec<String> =
                        tags.iter().map(|(key, value)| format!("{key}=\"{}\"", escape_label(value))).collect();
                    let _ = writeln!(text, "{metric}{{{}}} {value}", labels.join(","));
                }
            }
        }
        text
    }
}

/// Envoy's default tag extractors for the stats this data plane has: the cluster name, the
/// listener address, the HTTP connection manager prefix and the response code (class).
fn extract_tags(name: &str) -> (String, Vec<(&'static str, String)>) {
    let mut tags = Vec::new();
    let mut metric = name.to_string();
    for (prefix, tag) in [
        ("cluster.", "envoy_cluster_name"),
        ("listener.", "envoy_listener_address"),
        ("http.", "envoy_http_conn_manager_prefix"),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            // The tagged part is everything up to the stat's own (known) suffix.
            if let Some((tagged, suffix)) = split_known_suffix(rest) {
                if !(prefix == "listener." && tagged == "admin") {
                    tags.push((tag, tagged.to_string()));
                    metric = format!("{}{suffix}", prefix);
                }
            }
            break;
        }
    }
    if let Some(code) =
        metric.rsplit('_').next().filter(|last| last.len() == 3 && last.chars().all(|c| c.is_ascii_digit()))
    {
        let code = code.to_string();
        metric.truncate(metric.len() - 4);
        tags.push(("envoy_response_code", code));
    } else if let Some(class) = metric.rsplit('_').next().filter(|last| last.len() == 3 && last.ends_with("xx")) {
        let class = class[..1].to_string();
        metric.truncate(metric.len() - 4);
        metric.push_str("_xx");
        tags.push(("envoy_response_code_class", class));
    }
    (metric, tags)
}

/// Splits `<tagged>.<suffix>` where the suffix starts with one of the stat families this data
/// plane emits; cluster and listener names contain dots, so the split point is found by suffix.
fn split_known_suffix(rest: &str) -> Option<(&str, &str)> {
    const SUFFIX_STARTS: &[&str] = &[
        "upstream_",
        "membership_",
        "outlier_detection.",
        "update_",
        "lb_",
        "circuit_breakers.",
        "downstream_",
        "no_route",
        "no_cluster",
        "rq_",
        "max_host_weight",
        "version",
        "assignment_",
        "bind_errors",
        "rds.",
    ];
    let mut search_from = 0;
    while let Some(offset) = rest[search_from..].find('.') {
        let dot = search_from + offset;
        let suffix = &rest[dot + 1..];
        if SUFFIX_STARTS.iter().any(|start| suffix.starts_with(start)) {
            return Some((&rest[..dot], &rest[dot + 1..]));
        }
        search_from = dot + 1;
    }
    None
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_text() {
        let stats = Stats::default();
        stats.counter("cluster_manager.cds.update_success").inc();
        stats.counter("cluster_manager.cds.update_success").inc();
        let active = stats.gauge("listener.0.0.0.0_15001.downstream_cx_active");
        {
            let _connection = active.track();
            assert_eq!(active.value(), 1);
        }
        assert_eq!(active.value(), 0);
        let text = stats.render_text(None, false);
        assert!(text.contains("cluster_manager.cds.update_success: 2\n"), "{text}");
        let filter = regex::Regex::new("cds").expect("regex");
        assert_eq!(stats.render_text(Some(&filter), false), "cluster_manager.cds.update_success: 2\n");
    }

    #[test]
    fn prometheus_names_and_tags_follow_envoy() {
        let stats = Stats::default();
        stats.counter("cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total").add(3);
        stats.counter("cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200").add(2);
        stats.counter("cluster.inbound|9080||.upstream_rq_5xx").inc();
        stats.gauge("listener.0.0.0.0_15006.downstream_cx_active").set(4);
        stats.counter("http.outbound_0.0.0.0_9080.downstream_rq_total").inc();
        stats.counter("server.live").inc();
        let text = stats.render_prometheus();
        for line in [
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9080|v1|reviews.default.svc.cluster.local\"} 3",
            "envoy_cluster_upstream_rq{envoy_cluster_name=\"outbound|9080|v1|reviews.default.svc.cluster.local\",envoy_response_code=\"200\"} 2",
            "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"inbound|9080||\",envoy_response_code_class=\"5\"} 1",
            "envoy_listener_downstream_cx_active{envoy_listener_address=\"0.0.0.0_15006\"} 4",
            "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"outbound_0.0.0.0_9080\"} 1",
            "envoy_server_live 1",
            "# TYPE envoy_listener_downstream_cx_active gauge",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }
}
