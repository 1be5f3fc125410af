//! PromQL the views share. Request durations come from Mixer's `istio_request_duration_seconds`
//! or, with telemetry v2, from the proxies' own `istio_request_duration_milliseconds` (scraped
//! by the `envoy-stats` job); a quantile reads whichever has the series, in seconds.

/// The `q` quantile of request durations matching `selector` over `window`, in seconds, by
/// `by` (plus `le`), from either histogram.
pub fn duration_quantile(q: &str, selector: &str, window: &str, by: &str) -> String {
    let by = if by.is_empty() { "le".to_string() } else { format!("le, {by}") };
    format!(
        "(histogram_quantile({q}, sum(rate(istio_request_duration_seconds_bucket{{{selector}}}[{window}])) by ({by})) \
         or histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket{{{selector}}}[{window}])) by ({by})) / 1000)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_read_either_histogram_in_seconds() {
        assert_eq!(
            duration_quantile("0.99", "reporter=\"destination\"", "1m", "source_workload"),
            "(histogram_quantile(0.99, sum(rate(istio_request_duration_seconds_bucket{reporter=\"destination\"}[1m])) by (le, source_workload)) \
             or histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\"}[1m])) by (le, source_workload)) / 1000)"
        );
        assert!(duration_quantile("0.5", "", "5m", "").contains("by (le))"));
    }
}
