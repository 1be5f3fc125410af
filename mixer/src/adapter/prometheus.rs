//! `prometheus`: 1.4's Prometheus adapter. Each `metric` instance a handler names becomes a
//! counter, gauge or histogram (`istio_requests_total`, …) with the handler's label names, and
//! every Mixer process serves all of them on one endpoint (`:42422/metrics`), as 1.4's did.
//!
//! A metric keeps its series across config updates that leave its definition unchanged; a
//! redefined metric starts over. With a `metricsExpirationPolicy`, series that have not been
//! updated for the expiry duration are dropped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use istio_api::pb::adapter::prometheus::config::params::metric_info::buckets_definition::Definition;
use istio_api::pb::adapter::prometheus::config::params::metric_info::{BucketsDefinition, Kind};
use istio_api::pb::adapter::prometheus::config::params::MetricInfo;
use istio_api::pb::adapter::prometheus::config::Params;
use istio_attribute::Value;
use prometheus::core::Collector;
use prost::Message;

use super::api::{decode_params, duration, each_handled, AdapterError, BuildContext, BuildError, Handler};
use crate::template::{Instance, Template};

const PARAMS: &str = "adapter.prometheus.config.Params";

/// The namespace metric names get when their config names none.
const DEFAULT_NAMESPACE: &str = "istio";

/// Prometheus' default histogram buckets (Go client's `DefBuckets`).
const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One registered metric: its definition (to tell a redefinition) and its collector.
#[derive(Clone)]
struct Family {
    definition: Vec<u8>,
    series: Series,
}

#[derive(Clone)]
enum Series {
    Counter(prometheus::CounterVec),
    Gauge(prometheus::GaugeVec),
    Histogram(prometheus::HistogramVec),
}

impl Series {
    fn collector(&self) -> Box<dyn Collector> {
        match self {
            Series::Counter(vec) => Box::new(vec.clone()),
            Series::Gauge(vec) => Box::new(vec.clone()),
            Series::Histogram(vec) => Box::new(vec.clone()),
        }
    }

    fn remove(&self, labels: &[&str]) {
        let _ = match self {
            Series::Counter(vec) => vec.remove_label_values(labels),
            Series::Gauge(vec) => vec.remove_label_values(labels),
            Series::Histogram(vec) => vec.remove_label_values(labels),
        };
    }
}

/// The process' metrics and the endpoint that serves them.
#[derive(Default)]
pub struct Exporter {
    /// Replaced whole when a metric is redefined: a registry keeps each name's labels for life.
    registry: std::sync::RwLock<prometheus::Registry>,
    /// By full metric name (`istio_requests_total`).
    families: Mutex<HashMap<String, Family>>,
    serving: tokio::sync::OnceCell<SocketAddr>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("serving", &self.serving.get()).finish()
    }
}

impl Exporter {
    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        let families = self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner()).gather();
        if let Err(error) = encoder.encode_utf8(&families, &mut text) {
            tracing::warn!(%error, "Prometheus handler error");
        }
        text
    }

    /// Starts serving `/metrics` on `address` (once per process); the bound address.
    pub async fn serve(self: &Arc<Self>, address: SocketAddr) -> Result<SocketAddr, String> {
        let exporter = self.clone();
        self.serving
            .get_or_try_init(|| async move {
                let router = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let exporter = exporter.clone();
                        async move {
                            (
                                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                                exporter.render(),
                            )
                        }
                    }),
                );
                let bound = istio_runtime::monitoring::serve(address, router, std::future::pending())
                    .await
                    .map_err(|error| format!("could not start prometheus metrics server: {error}"))?;
                tracing::info!("prometheus adapter serving metrics on {bound}");
                Ok(bound)
            })
            .await
            .copied()
    }

    /// The family for a metric definition: the registered one when it is unchanged, else a new
    /// one in its place.
    fn family(&self, full_name: &str, info: &MetricInfo, help: &str, labels: &[String]) -> Result<Family, String> {
        let definition = info.encode_to_vec();
        let mut families = istio_runtime::sync::lock(&self.families);
        if let Some(existing) = families.get(full_name) {
            if existing.definition == definition {
                return Ok(existing.clone());
            }
            tracing::warn!("Metric {} redefined. Reloading adapter.", info.name);
            families.remove(full_name);
            let fresh = prometheus::Registry::new();
            for family in families.values() {
                let _ = fresh.register(family.series.collector());
            }
            *self.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        }
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let series = match Kind::try_from(info.kind).unwrap_or(Kind::Unspecified) {
            Kind::Counter => {
                prometheus::CounterVec::new(prometheus::Opts::new(full_name, help), &labels).map(Series::Counter)
            }
            Kind::Gauge => {
                prometheus::GaugeVec::new(prometheus::Opts::new(full_name, help), &labels).map(Series::Gauge)
            }
            Kind::Distribution => prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(full_name, help).buckets(buckets(info.buckets.as_ref())),
                &labels,
            )
            .map(Series::Histogram),
            Kind::Unspecified => {
                return Err(format!("unknown metric kind ({}); could not register metric {}", info.kind, info.name))
            }
        }
        .map_err(|error| format!("could not register metric: {error}"))?;
        self.registry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .register(series.collector())
            .map_err(|error| format!("could not register metric: {error}"))?;
        let family = Family { definition, series };
        families.insert(full_name.to_string(), family.clone());
        Ok(family)
    }
}

/// The exporter every `prometheus` handler of this process shares.
pub fn exporter() -> Arc<Exporter> {
    static EXPORTER: OnceLock<Arc<Exporter>> = OnceLock::new();
    EXPORTER.get_or_init(Default::default).clone()
}

/// Metric and label names as Prometheus allows them (1.4 replaced `/`, `.` and `-` by `_`).
fn safe_name(name: &str) -> String {
    name.trim_start_matches('/').replace(['/', '.', '-'], "_")
}

/// A histogram's bucket bounds (Go's `LinearBuckets`/`ExponentialBuckets` with one more bound
/// than the finite buckets asked for, as 1.4 called them).
fn buckets(definition: Option<&BucketsDefinition>) -> Vec<f64> {
    match definition.and_then(|definition| definition.definition.as_ref()) {
        Some(Definition::ExplicitBuckets(explicit)) => explicit.bounds.clone(),
        Some(Definition::LinearBuckets(linear)) => {
            (0..=linear.num_finite_buckets.max(0)).map(|i| linear.offset + linear.width * f64::from(i)).collect()
        }
        Some(Definition::ExponentialBuckets(exponential)) => (0..=exponential.num_finite_buckets.max(0))
            .map(|i| exponential.scale * exponential.growth_factor.powi(i))
            .collect(),
        None => DEFAULT_BUCKETS.to_vec(),
    }
}

/// A metric as a handler records it.
struct Metric {
    full_name: String,
    family: Family,
    label_names: Vec<String>,
    /// Each label's position in `label_names`.
    label_index: HashMap<String, usize, foldhash::fast::RandomState>,
}

/// When series were last updated, for the expiration policy. Series are found by a hash of
/// their instance and label values, so a request that updates a known series allocates nothing.
#[derive(Default)]
struct LastSeen {
    hasher: foldhash::fast::RandomState,
    series: Mutex<HashMap<u64, Vec<SeenSeries>>>,
}

struct SeenSeries {
    instance: Arc<str>,
    labels: Vec<String>,
    at: Instant,
}

impl LastSeen {
    fn touch(&self, instance: &Arc<str>, labels: &[&str]) {
        use std::hash::BuildHasher as _;
        let key = self.hasher.hash_one((&**instance, labels));
        let now = Instant::now();
        let mut series = istio_runtime::sync::lock(&self.series);
        let bucket = series.entry(key).or_default();
        match bucket.iter_mut().find(|seen| *seen.instance == **instance && seen.labels.iter().eq(labels.iter())) {
            Some(seen) => seen.at = now,
            None => bucket.push(SeenSeries {
                instance: instance.clone(),
                labels: labels.iter().map(|label| (*label).to_string()).collect(),
                at: now,
            }),
        }
    }
}

pub struct PrometheusHandler {
    /// By instance name (`requestcount.instance.istio-system`).
    metrics: HashMap<String, Metric>,
    expiry: Option<(Duration, Arc<LastSeen>)>,
}

impl std::fmt::Debug for PrometheusHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.metrics.values().map(|metric| metric.full_name.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("PrometheusHandler").field("metrics", &names).finish()
    }
}

pub(super) async fn build(context: &BuildContext<'_>) -> Result<Arc<PrometheusHandler>, BuildError> {
    build_with(context, &exporter()).await
}

pub(super) async fn build_with(
    context: &BuildContext<'_>,
    exporter: &Arc<Exporter>,
) -> Result<Arc<PrometheusHandler>, BuildError> {
    let params: Params = decode_params(PARAMS, context.params)?;
    let mut expiry = None;
    if let Some(policy) = &params.metrics_expiration_policy {
        let after = duration(policy.metrics_expiry_duration.as_ref());
        if after.is_zero() {
            return Err(BuildError::Invalid(vec![(
                "metricsExpiryDuration".to_string(),
                format!("metricsExpiryDuration {} is invalid, must be > 0", istio_duration::format(after)),
            )]));
        }
        let check = duration(policy.expiry_check_interval_duration.as_ref());
        expiry = Some((after, if check.is_zero() { after / 2 } else { check }));
    }
    let mut metrics = HashMap::new();
    let mut errors = Vec::new();
    for info in &params.metrics {
        let namespace =
            if info.namespace.is_empty() { DEFAULT_NAMESPACE.to_string() } else { safe_name(&info.namespace) };
        let name = if info.name.is_empty() { &info.instance_name } else { &info.name };
        let full_name = format!("{namespace}_{}", safe_name(name));
        let help = if info.description.is_empty() { name.as_str() } else { info.description.as_str() };
        let label_names: Vec<String> = info.label_names.iter().map(|label| safe_name(label)).collect();
        match exporter.family(&full_name, info, help, &label_names) {
            Ok(family) => {
                let label_index = label_names.iter().enumerate().map(|(index, name)| (name.clone(), index)).collect();
                metrics.insert(info.instance_name.clone(), Metric { full_name, family, label_names, label_index });
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(BuildError::Instantiation(errors.join("; ")));
    }
    if let Some(address) = context.environment.prometheus_address() {
        exporter.serve(address).await.map_err(BuildError::Instantiation)?;
    }
    let last_seen = Arc::new(LastSeen::default());
    let handler = Arc::new(PrometheusHandler { metrics, expiry: expiry.map(|(after, _)| (after, last_seen.clone())) });
    if let Some((after, every)) = expiry {
        tokio::spawn(expire(Arc::downgrade(&handler), after, every));
    }
    Ok(handler)
}

/// Drops the series not updated for `after`, every `every`, while the handler lives.
async fn expire(handler: Weak<PrometheusHandler>, after: Duration, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(handler) = handler.upgrade() else { return };
        handler.expire_older_than(after);
    }
}

impl PrometheusHandler {
    fn expire_older_than(&self, after: Duration) {
        let Some((_, last_seen)) = &self.expiry else { return };
        let now = Instant::now();
        let mut series = istio_runtime::sync::lock(&last_seen.series);
        series.retain(|_, bucket| {
            bucket.retain(|seen| {
                if now.duration_since(seen.at) < after {
                    return true;
                }
                if let Some(metric) = self.metrics.get(&*seen.instance) {
                    let values: Vec<&str> = seen.labels.iter().map(String::as_str).collect();
                    metric.family.series.remove(&values);
                }
                false
            });
            !bucket.is_empty()
        });
    }

    fn record(&self, instance: &Instance) -> Result<(), String> {
        let Some(metric) = self.metrics.get(&*instance.name) else {
            return Err(format!("could not find metric info from adapter config for {}", instance.name));
        };
        let value = instance
            .field("value")
            .ok_or_else(|| format!("could not get value for metric {}: no value", instance.name))
            .and_then(|value| {
                numeric(value).map_err(|error| format!("could not get value for metric {}: {error}", instance.name))
            })?;
        // Each dimension goes to the label of its (safe) name; one named exactly as the label
        // wins over one that only becomes that name once made safe.
        let mut labels: Vec<Option<Cow<'_, str>>> = vec![None; metric.label_names.len()];
        let mut dimensions = 0;
        for (dimension, value) in instance.map_entries("dimensions") {
            dimensions += 1;
            if let Some(&index) = metric.label_index.get(dimension) {
                labels[index] = Some(label_text(value));
            } else if let Some(&index) = metric.label_index.get(safe_name(dimension).as_str()) {
                labels[index].get_or_insert_with(|| label_text(value));
            }
        }
        if let Some(index) = labels.iter().position(Option::is_none) {
            return Err(format!(
                "metric {}: inconsistent label cardinality: no dimension for label {}",
                instance.name, metric.label_names[index]
            ));
        }
        if dimensions != metric.label_names.len() {
            return Err(format!(
                "metric {}: inconsistent label cardinality: {} dimensions for {} labels",
                instance.name,
                dimensions,
                metric.label_names.len()
            ));
        }
        let values: Vec<&str> = labels.iter().map(|label| label.as_deref().unwrap_or_default()).collect();
        let failed = |error: prometheus::Error| format!("metric {}: {error}", instance.name);
        match &metric.family.series {
            Series::Counter(vec) => {
                if value < 0.0 {
                    return Err(format!("metric {}: counter cannot decrease in value", instance.name));
                }
                vec.get_metric_with_label_values(&values).map_err(failed)?.inc_by(value);
            }
            Series::Gauge(vec) => vec.get_metric_with_label_values(&values).map_err(failed)?.set(value),
            Series::Histogram(vec) => vec.get_metric_with_label_values(&values).map_err(failed)?.observe(value),
        }
        if let Some((_, last_seen)) = &self.expiry {
            last_seen.touch(&instance.name, &values);
        }
        Ok(())
    }
}

/// A dimension's value as a label value: text as it is, anything else as it prints.
fn label_text<'a>(value: &'a Value<'_>) -> Cow<'a, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}

/// A metric value as a number: numbers as they are, durations in seconds, numeric strings.
fn numeric(value: &Value<'_>) -> Result<f64, String> {
    match value {
        Value::Double(number) => Ok(*number),
        Value::Int64(number) => Ok(*number as f64),
        Value::Duration(nanos) => Ok(*nanos as f64 / 1e9),
        Value::String(text) => {
            text.parse().map_err(|_| format!("strconv.ParseFloat: parsing {text:?}: invalid syntax"))
        }
        other => Err(format!("could not extract numeric value for {other}")),
    }
}

#[async_trait]
impl Handler for PrometheusHandler {
    async fn report(&self, instances: &[Instance]) -> Result<(), AdapterError> {
        each_handled(
            instances
                .iter()
                .filter(|instance| instance.template == Template::Metric)
                .filter_map(|instance| self.record(instance).err()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::env::Environment;

    fn instance(name: &str, value: Value<'static>, dimensions: &[(&str, &str)]) -> Instance {
        let mut fields = BTreeMap::new();
        fields.insert("value".into(), value);
        for (key, text) in dimensions {
            fields.insert(format!("dimensions.{key}").into(), Value::String(text.to_string().into()));
        }
        Instance { name: name.into(), template: Template::Metric, fields }
    }

    async fn handler(
        exporter: &Arc<Exporter>,
        params: serde_json::Value,
    ) -> Result<Arc<PrometheusHandler>, BuildError> {
        let environment = Environment::default();
        let context = BuildContext {
            handler: "prometheus.istio-system",
            params: &params,
            instances: &[],
            environment: &environment,
        };
        build_with(&context, exporter).await
    }

    fn default_params() -> serde_json::Value {
        json!({"metrics": [
            {"name": "requests_total", "instance_name": "requestcount.instance.istio-system", "kind": "COUNTER",
             "label_names": ["reporter", "response_code"]},
            {"name": "request_duration_seconds", "instance_name": "requestduration.instance.istio-system",
             "kind": "DISTRIBUTION", "label_names": ["reporter"],
             "buckets": {"explicit_buckets": {"bounds": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]}}},
            {"name": "request_bytes", "instance_name": "requestsize.instance.istio-system", "kind": "DISTRIBUTION",
             "label_names": ["reporter"],
             "buckets": {"exponentialBuckets": {"numFiniteBuckets": 8, "scale": 1, "growthFactor": 10}}},
        ]})
    }

    #[tokio::test]
    async fn counters_and_histograms_render_with_1_4_names_and_buckets() {
        let exporter = Arc::new(Exporter::default());
        let handler = handler(&exporter, default_params()).await.expect("builds");
        let reported = [
            instance(
                "requestcount.instance.istio-system",
                Value::Int64(1),
                &[("reporter", "destination"), ("response_code", "200")],
            ),
            instance(
                "requestcount.instance.istio-system",
                Value::Int64(1),
                &[("reporter", "destination"), ("response_code", "200")],
            ),
            instance("requestduration.instance.istio-system", Value::Duration(30_000_000), &[("reporter", "source")]),
            instance("requestsize.instance.istio-system", Value::Int64(178), &[("reporter", "source")]),
        ];
        handler.report(&reported).await.expect("recorded");
        let text = exporter.render();
        assert!(text.contains("istio_requests_total{reporter=\"destination\",response_code=\"200\"} 2"), "{text}");
        assert!(text.contains("istio_request_duration_seconds_bucket{reporter=\"source\",le=\"0.05\"} 1"), "{text}");
        assert!(text.contains("istio_request_duration_seconds_bucket{reporter=\"source\",le=\"0.025\"} 0"), "{text}");
        assert!(text.contains("istio_request_bytes_bucket{reporter=\"source\",le=\"1000\"} 1"), "{text}");
        assert!(text.contains("istio_request_bytes_bucket{reporter=\"source\",le=\"100000000\"}"), "{text}");
        assert!(!text.contains("le=\"1000000000\""), "nine bounds for eight finite buckets: {text}");
        assert!(text.contains("# TYPE istio_requests_total counter"), "{text}");
    }

    #[tokio::test]
    async fn an_unchanged_definition_keeps_its_series_and_a_changed_one_starts_over() {
        let exporter = Arc::new(Exporter::default());
        let first = handler(&exporter, default_params()).await.expect("builds");
        let one = [instance(
            "requestcount.instance.istio-system",
            Value::Int64(1),
            &[("reporter", "source"), ("response_code", "200")],
        )];
        first.report(&one).await.expect("recorded");
        let again = handler(&exporter, default_params()).await.expect("builds again");
        again.report(&one).await.expect("recorded");
        assert!(exporter.render().contains("istio_requests_total{reporter=\"source\",response_code=\"200\"} 2"));
        let changed = json!({"metrics": [{"name": "requests_total", "instance_name": "requestcount.instance.istio-system",
            "kind": "COUNTER", "label_names": ["reporter"]}]});
        let redefined = handler(&exporter, changed).await.expect("redefined");
        redefined
            .report(&[instance("requestcount.instance.istio-system", Value::Int64(1), &[("reporter", "source")])])
            .await
            .expect("recorded");
        let text = exporter.render();
        assert!(text.contains("istio_requests_total{reporter=\"source\"} 1"), "{text}");
        assert!(!text.contains("response_code"), "{text}");
    }

    #[tokio::test]
    async fn bad_config_and_bad_values_are_errors() {
        let exporter = Arc::new(Exporter::default());
        let error = handler(&exporter, json!({"metrics": [{"name": "x", "instance_name": "x.instance.default"}]}))
            .await
            .expect_err("no kind");
        assert!(error.to_string().contains("unknown metric kind (0)"), "{error}");
        let error =
            handler(&exporter, json!({"metrics": [], "metricsExpirationPolicy": {"metricsExpiryDuration": "0s"}}))
                .await
                .expect_err("zero expiry");
        assert!(
            error.to_string().contains("metricsExpiryDuration: metricsExpiryDuration 0s is invalid, must be > 0"),
            "{error}"
        );
        let error =
            handler(&exporter, json!({"metrics": [{"name": "x", "kind": "HISTOGRAM"}]})).await.expect_err("bad kind");
        assert!(error.to_string().contains("HISTOGRAM"), "{error}");
        let handler = handler(&exporter, default_params()).await.expect("builds");
        let wrong = [
            instance(
                "requestcount.instance.istio-system",
                Value::String("many".into()),
                &[("reporter", "a"), ("response_code", "1")],
            ),
            instance("requestcount.instance.istio-system", Value::Int64(1), &[("reporter", "a")]),
            instance("nosuch.instance.istio-system", Value::Int64(1), &[]),
            instance(
                "requestcount.instance.istio-system",
                Value::Int64(1),
                &[("reporter", "b"), ("response_code", "1")],
            ),
        ];
        let error = handler.report(&wrong).await.expect_err("three bad instances");
        assert!(error.0.contains("invalid syntax"), "{error}");
        assert!(error.0.contains("inconsistent label cardinality"), "{error}");
        assert!(error.0.contains("could not find metric info from adapter config for nosuch"), "{error}");
        assert!(
            exporter.render().contains("istio_requests_total{reporter=\"b\",response_code=\"1\"} 1"),
            "the good one counts"
        );
    }

    #[tokio::test]
    async fn series_not_updated_within_the_expiry_are_dropped() {
        let exporter = Arc::new(Exporter::default());
        let params = json!({"metrics": [{"name": "gone_total", "instance_name": "gone.instance.default", "kind": "COUNTER",
            "label_names": ["who"]}], "metricsExpirationPolicy": {"metricsExpiryDuration": "100ms", "expiryCheckIntervalDuration": "20ms"}});
        let handler = handler(&exporter, params).await.expect("builds");
        handler
            .report(&[instance("gone.instance.default", Value::Int64(3), &[("who", "old")])])
            .await
            .expect("recorded");
        assert!(exporter.render().contains("istio_gone_total{who=\"old\"} 3"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!exporter.render().contains("who=\"old\""), "{}", exporter.render());
    }
}
