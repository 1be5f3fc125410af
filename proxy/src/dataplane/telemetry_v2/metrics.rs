//! The in-proxy metrics and their Prometheus exposition: per label set, `<prefix>_requests_total`
//! (a counter) and `<prefix>_request_duration_milliseconds`, `<prefix>_request_bytes` and
//! `<prefix>_response_bytes` (histograms with Envoy's default buckets, which 1.4 kept). Sums
//! are exact, where Envoy's histograms approximate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::dimensions::{Dimensions, LABELS};

/// Envoy's default histogram bucket bounds.
pub(crate) const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Samples at or below each bound (not cumulative; summed when rendered).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn record(&mut self, value: f64) {
        if let Some(bucket) = BUCKETS.iter().position(|bound| value <= *bound) {
            self.counts[bucket] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

#[derive(Debug, Clone, Default)]
struct Series {
    requests: u64,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// One request's measures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Measures {
    pub duration_ms: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// Every series the stats plugins of this data plane record, by metric prefix and labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct IstioMetrics {
    series: Arc<Mutex<HashMap<(String, Dimensions), Series>>>,
}

impl IstioMetrics {
    /// Counts one request.
    pub(crate) fn record(&self, prefix: &str, dimensions: Dimensions, measures: Measures) {
        let mut series = istio_runtime::sync::lock(&self.series);
        let entry = series.entry((prefix.to_string(), dimensions)).or_default();
        entry.requests += 1;
        entry.duration.record(measures.duration_ms as f64);
        entry.request_bytes.record(measures.request_bytes as f64);
        entry.response_bytes.record(measures.response_bytes as f64);
    }

    /// The Prometheus text exposition of every series (nothing before the first request).
    pub(crate) fn render_prometheus(&self) -> String {
        let mut series: Vec<((String, Dimensions), Series)> =
            istio_runtime::sync::lock(&self.series).iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        series.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut prefixes: Vec<&str> = series.iter().map(|((prefix, _), _)| prefix.as_str()).collect();
        prefixes.dedup();
        let mut text = String::new();
        for prefix in prefixes {
            let of_prefix = || series.iter().filter(move |((p, _), _)| p == prefix);
            let _ = writeln!(text, "# TYPE {prefix}_requests_total counter");
            for ((_, dimensions), values) in of_prefix() {
                let _ = writeln!(text, "{prefix}_requests_total{{{}}} {}", labels(dimensions), values.requests);
            }
            type Pick = fn(&Series) -> &Histogram;
            let histograms: [(&str, Pick); 3] = [
                ("request_duration_milliseconds", |s| &s.duration),
                ("request_bytes", |s| &s.request_bytes),
                ("response_bytes", |s| &s.response_bytes),
            ];
            for (name, pick) in histograms {
                let metric = format!("{prefix}_{name}");
                let _ = writeln!(text, "# TYPE {metric} histogram");
                for ((_, dimensions), values) in of_prefix() {
                    let labels = labels(dimensions);
                    let histogram = pick(values);
                    let mut cumulative = 0;
                    for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
                        cumulative += count;
                        let _ = writeln!(text, "{metric}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                    }
                    let _ = writeln!(text, "{metric}_bucket{{{labels},le=\"+Inf\"}} {}", histogram.count);
                    let _ = writeln!(text, "{metric}_sum{{{labels}}} {}", histogram.sum);
                    let _ = writeln!(text, "{metric}_count{{{labels}}} {}", histogram.count);
                }
            }
        }
        text
    }
}

fn labels(dimensions: &Dimensions) -> String {
    LABELS
        .iter()
        .zip(dimensions)
        .map(|(name, value)| {
            format!("{name}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dimensions(code: &str) -> Dimensions {
        std::array::from_fn(|index| if index == 15 { code.to_string() } else { format!("v{index}") })
    }

    #[test]
    fn series_count_and_bucket_per_label_set() {
        let metrics = IstioMetrics::default();
        metrics.record(
            "istio",
            dimensions("200"),
            Measures { duration_ms: 3, request_bytes: 700, response_bytes: 1200 },
        );
        metrics.record(
            "istio",
            dimensions("200"),
            Measures { duration_ms: 40, request_bytes: 700, response_bytes: 5000 },
        );
        metrics.record("istio", dimensions("503"), Measures { duration_ms: 0, request_bytes: 10, response_bytes: 0 });
        let text = metrics.render_prometheus();
        let ok = labels(&dimensions("200"));
        assert!(text.contains(&format!("istio_requests_total{{{ok}}} 2\n")), "{text}");
        assert!(text.contains(&format!("istio_request_duration_milliseconds_bucket{{{ok},le=\"1\"}} 0\n")), "{text}");
        assert!(text.contains(&format!("istio_request_duration_milliseconds_bucket{{{ok},le=\"5\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("istio_request_duration_milliseconds_bucket{{{ok},le=\"50\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("istio_request_duration_milliseconds_sum{{{ok}}} 43\n")), "{text}");
        assert!(text.contains(&format!("istio_response_bytes_bucket{{{ok},le=\"+Inf\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("istio_request_bytes_bucket{{{ok},le=\"0.5\"}} 0\n")), "{text}");
        assert!(text.contains("response_code=\"503\""));
        assert_eq!(text.matches("# TYPE istio_requests_total counter").count(), 1);
        assert!(IstioMetrics::default().render_prometheus().is_empty());
    }
}
