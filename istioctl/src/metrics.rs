//! `istioctl x metrics WORKLOAD[.NAMESPACE]…`: each workload's server-side request rate, error
//! rate and p50/p90/p99 latency over the last minute, from the mesh's Prometheus (this host's,
//! or the `app=prometheus` pod of a cluster through the API server), with 1.4's queries and
//! table.

use anyhow::{bail, Context as _};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Workloads, as `name` or `name.namespace` (names are prefixes, as 1.4 matched them).
    #[arg(required = true)]
    workloads: Vec<String>,
    #[command(flatten)]
    kube: crate::kube::KubeArgs,
}

/// One workload's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkloadMetrics {
    pub workload: String,
    pub total_rps: f64,
    pub error_rps: f64,
    /// Latencies in whole milliseconds.
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
}

/// 1.4's queries for a workload: total rate, non-200 rate, and the three latency quantiles.
pub(crate) fn queries(workload: &str) -> [String; 5] {
    let (name, namespace) = workload.split_once('.').unwrap_or((workload, ""));
    let selector = format!(
        "destination_workload=~\"{name}.*\", destination_workload_namespace=~\"{namespace}.*\",reporter=\"destination\""
    );
    let quantile = |q: f64| {
        format!(
            "histogram_quantile({q:.6}, sum(rate(istio_request_duration_seconds_bucket{{{selector}}}[1m])) by (le))"
        )
    };
    [
        format!("sum(rate(istio_requests_total{{{selector}}}[1m]))"),
        format!("sum(rate(istio_requests_total{{{selector},response_code!=\"200\"}}[1m]))"),
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
    ]
}

/// The first sample of a Prometheus instant-query answer (0 when there is none, as 1.4).
fn first_value(answer: &Value) -> anyhow::Result<f64> {
    if answer["status"] != "success" {
        bail!("Prometheus answered: {}", answer["error"].as_str().unwrap_or("not success"));
    }
    let Some(sample) = answer["data"]["result"].as_array().and_then(|result| result.first()) else { return Ok(0.0) };
    let value = sample["value"][1].as_str().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
    Ok(if value.is_nan() { 0.0 } else { value })
}

/// Go's `time.Duration` text for whole milliseconds: `0s`, `12ms`, `1.5s`.
fn go_duration(ms: u64) -> String {
    match ms {
        0 => "0s".to_string(),
        1..=999 => format!("{ms}ms"),
        _ => {
            let text = format!("{}.{:03}", ms / 1000, ms % 1000);
            format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// One right-aligned row as 1.4's tabwriter made it: the first column 40 wide, the others at
/// least 13 (text plus two spaces of padding).
fn row(cells: &[String]) -> String {
    let mut line = String::new();
    for (index, cell) in cells.iter().enumerate() {
        let width = if index == 0 { cell.len().max(40) + 2 } else { (cell.len() + 2).max(13) };
        line += &format!("{cell:>width$}");
    }
    line + "\n"
}

pub(crate) fn header() -> String {
    row(&["WORKLOAD", "TOTAL RPS", "ERROR RPS", "P50 LATENCY", "P90 LATENCY", "P99 LATENCY"].map(str::to_string))
}

pub(crate) fn render(metrics: &WorkloadMetrics) -> String {
    row(&[
        metrics.workload.clone(),
        format!("{:.3}", metrics.total_rps),
        format!("{:.3}", metrics.error_rps),
        go_duration(metrics.p50_ms),
        go_duration(metrics.p90_ms),
        go_duration(metrics.p99_ms),
    ])
}

/// Asks Prometheus one instant query.
fn query(prometheus: &Prometheus, expression: &str) -> anyhow::Result<f64> {
    let encoded: String = form_urlencoded::Serializer::new(String::new()).append_pair("query", expression).finish();
    let path = format!("/api/v1/query?{encoded}");
    let body = match prometheus {
        Prometheus::Address(address) => crate::proxy_status::http_get(address, &path)
            .with_context(|| format!("query() failure for '{expression}'"))?,
        Prometheus::Pod { client, runtime, namespace, pod } => runtime
            .block_on(crate::kube::pod_http(client, namespace, pod, 9090, "GET", &path))
            .with_context(|| format!("query() failure for '{expression}'"))?,
    };
    first_value(&serde_json::from_str(&body).context("Prometheus's answer is not JSON")?)
}

enum Prometheus {
    Address(String),
    Pod { client: kube::Client, runtime: tokio::runtime::Runtime, namespace: String, pod: String },
}

fn prometheus(kube_args: &crate::kube::KubeArgs) -> anyhow::Result<Prometheus> {
    let layout = istio_local::Layout::from_env();
    if kube_args.wants_cluster(&layout) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = runtime.block_on(kube_args.client())?;
        let namespace = kube_args.istio_namespace.clone();
        let pod = runtime
            .block_on(crate::kube::first_pod(&client, &namespace, "app=prometheus", "Prometheus"))
            .context("not able to locate Prometheus pod")?;
        return Ok(Prometheus::Pod { client, runtime, namespace, pod });
    }
    if !layout.install_file().exists() {
        bail!("no mesh is installed on this host and no kubeconfig was given");
    }
    let plan = istio_local::install::Plan::load(&layout)?;
    if !plan.components().contains(&istio_local::install::PROMETHEUS) {
        bail!("no Prometheus in this installation (values.prometheus.enabled, and Debian's prometheus installed)");
    }
    Ok(Prometheus::Address(format!(
        "{}:{}",
        istio_local::install::PROMETHEUS.address,
        istio_local::install::PROMETHEUS_PORT
    )))
}

pub(crate) fn run(args: &MetricsArgs) -> anyhow::Result<i32> {
    let prometheus = prometheus(&args.kube)?;
    print!("{}", header());
    for workload in &args.workloads {
        let values: Vec<f64> = queries(workload)
            .iter()
            .map(|expression| query(&prometheus, expression))
            .collect::<anyhow::Result<_>>()
            .with_context(|| format!("could not build metrics for workload '{workload}'"))?;
        let ms = |seconds: f64| (seconds * 1000.0) as u64;
        print!(
            "{}",
            render(&WorkloadMetrics {
                workload: workload.clone(),
                total_rps: values[0],
                error_rps: values[1],
                p50_ms: ms(values[2]),
                p90_ms: ms(values[3]),
                p99_ms: ms(values[4]),
            })
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn queries_are_1_4s() {
        let [total, errors, p50, _, p99] = queries("productpage-v1.default");
        assert_eq!(
            total,
            "sum(rate(istio_requests_total{destination_workload=~\"productpage-v1.*\", destination_workload_namespace=~\"default.*\",reporter=\"destination\"}[1m]))"
        );
        assert!(errors.ends_with(",reporter=\"destination\",response_code!=\"200\"}[1m]))"), "{errors}");
        assert!(
            p50.starts_with("histogram_quantile(0.500000, sum(rate(istio_request_duration_seconds_bucket{"),
            "{p50}"
        );
        assert!(p99.starts_with("histogram_quantile(0.990000,"), "{p99}");
        assert!(queries("reviews")[0].contains("destination_workload_namespace=~\".*\""));
    }

    #[test]
    fn the_table_is_1_4s() {
        assert_eq!(
            header(),
            "                                  WORKLOAD    TOTAL RPS    ERROR RPS  P50 LATENCY  P90 LATENCY  P99 LATENCY\n"
        );
        let metrics = WorkloadMetrics {
            workload: "productpage-v1".into(),
            total_rps: 0.2,
            error_rps: 0.0,
            p50_ms: 12,
            p90_ms: 0,
            p99_ms: 1500,
        };
        assert_eq!(
            render(&metrics),
            "                            productpage-v1        0.200        0.000         12ms           0s         1.5s\n"
        );
    }

    #[test]
    fn prometheus_answers() {
        let answer = json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "0.25"]}]}});
        assert_eq!(first_value(&answer).unwrap(), 0.25);
        let empty = json!({"status": "success", "data": {"result": []}});
        assert_eq!(first_value(&empty).unwrap(), 0.0);
        let nan = json!({"status": "success", "data": {"result": [{"value": [1.0, "NaN"]}]}});
        assert_eq!(first_value(&nan).unwrap(), 0.0);
        assert!(first_value(&json!({"status": "error", "error": "bad query"})).is_err());
    }
}
