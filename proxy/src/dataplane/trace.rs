//! Distributed tracing as Envoy's Zipkin tracer does it: B3 propagation (`x-b3-traceid`,
//! `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`), a span per request — `CLIENT` on
//! outbound and gateway listeners, `SERVER` on inbound ones — sampled by the connection
//! manager's `random_sampling` unless the caller already decided, and spans sent in batches as
//! Zipkin v2 JSON to the collector cluster the bootstrap names.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::trace::v3::{tracing::http::ConfigType, ZipkinConfig};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use prost::Message;
use serde_json::{json, Value};

use super::body;
use super::stats::Stats;
use super::upstream::pool::checkout;
use super::upstream::ClusterManager;

const ZIPKIN_TRACER: &str = "envoy.tracers.zipkin";

/// How often buffered spans are sent.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a batch of spans did not reach the collector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("no collector cluster")]
    NoCluster,
    #[error("the collector cluster has no host")]
    NoHost,
    #[error("bad collector endpoint {0:?}")]
    Endpoint(String),
    #[error("encoding spans: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Connection(#[from] super::upstream::pool::PoolError),
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Send(#[from] hyper::Error),
    #[error("the collector answered {0}")]
    Status(http::StatusCode),
}

/// The tracer the bootstrap configures.
#[derive(Debug)]
pub(crate) struct Tracer {
    collector_cluster: String,
    collector_endpoint: String,
    trace_id_128bit: bool,
    service_name: String,
    node_id: String,
    local_ip: String,
    spans: Mutex<Vec<Value>>,
}

/// A request's place in a trace.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
    pub sampled: bool,
    pub server: bool,
    start: SystemTime,
    started: Instant,
}

/// What a finished span records.
#[derive(Debug, Default)]
pub(crate) struct SpanTags {
    pub name: String,
    pub method: String,
    pub url: String,
    pub protocol: String,
    pub status: u16,
    pub request_id: Option<String>,
    pub upstream_cluster: Option<String>,
    pub response_flags: String,
    pub user_agent: Option<String>,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).filter(|value| !value.is_empty())
}

impl Tracer {
    /// The Zipkin tracer of a bootstrap, if it has one (`tracing.http`).
    pub(crate) fn from_bootstrap(bootstrap: &Bootstrap) -> Option<Arc<Tracer>> {
        #[allow(deprecated)]
        let http = bootstrap.tracing.as_ref()?.http.as_ref()?;
        if http.name != ZIPKIN_TRACER {
            tracing::warn!("tracer {} is not supported; requests are not traced", http.name);
            return None;
        }
        let Some(ConfigType::TypedConfig(config)) = &http.config_type else { return None };
        let zipkin = ZipkinConfig::decode(config.value.as_slice()).ok()?;
        let node = bootstrap.node.clone().unwrap_or_default();
        let local_ip = node.id.split('~').nth(1).unwrap_or("127.0.0.1").to_string();
        Some(Arc::new(Tracer {
            collector_cluster: zipkin.collector_cluster,
            collector_endpoint: if zipkin.collector_endpoint.is_empty() {
                "/api/v2/spans".into()
            } else {
                zipkin.collector_endpoint
            },
            trace_id_128bit: zipkin.trace_id_128bit,
            service_name: node.cluster.clone(),
            node_id: node.id,
            local_ip,
            spans: Mutex::new(Vec::new()),
        }))
    }

    /// Starts the span of a request and writes the B3 headers the upstream request carries.
    /// `sampling` is the connection manager's percentage.
    pub(crate) fn start_span(&self, headers: &mut HeaderMap, sampling: f64, server: bool) -> Span {
        let incoming_trace = header(headers, "x-b3-traceid").map(str::to_string);
        let incoming_span = header(headers, "x-b3-spanid").map(str::to_string);
        let decided = header(headers, "x-b3-sampled").map(|value| value == "1" || value.eq_ignore_ascii_case("true"));
        let forced = header(headers, "x-envoy-force-trace").is_some();
        let sampled = forced || decided.unwrap_or_else(|| super::config::matcher::roll(sampling / 100.0));
        let span = Span {
            trace_id: incoming_trace.unwrap_or_else(|| random_hex(if self.trace_id_128bit { 16 } else { 8 })),
            span_id: random_hex(8),
            parent_id: incoming_span,
            sampled,
            server,
            start: SystemTime::now(),
            started: Instant::now(),
        };
        headers.remove("x-b3-parentspanid");
        let parent = span.parent_id.clone().unwrap_or_default();
        for (name, value) in [
            ("x-b3-traceid", span.trace_id.as_str()),
            ("x-b3-spanid", span.span_id.as_str()),
            ("x-b3-parentspanid", parent.as_str()),
            ("x-b3-sampled", if sampled { "1" } else { "0" }),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                if !value.is_empty() {
                    headers.insert(name, value);
                }
            }
        }
        span
    }

    /// Records a finished span (if it was sampled) for the next flush.
    pub(crate) fn finish(&self, span: &Span, tags: SpanTags) {
        if !span.sampled {
            return;
        }
        let micros = |duration: Duration| duration.as_micros() as u64;
        let mut tag_map = serde_json::Map::new();
        let mut tag = |key: &str, value: String| {
            tag_map.insert(key.to_string(), Value::String(value));
        };
        tag("component", "proxy".into());
        tag("node_id", self.node_id.clone());
        tag("http.method", tags.method);
        tag("http.url", tags.url);
        tag("http.protocol", tags.protocol);
        tag("http.status_code", tags.status.to_string());
        tag("response_flags", tags.response_flags);
        if let Some(id) = tags.request_id {
            tag("guid:x-request-id", id);
        }
        if let Some(cluster) = tags.upstream_cluster {
            tag("upstream_cluster", cluster);
        }
        if let Some(agent) = tags.user_agent {
            tag("user_agent", agent);
        }
        if tags.status >= 500 || tags.status == 0 {
            tag("error", "true".into());
        }
        let mut value = json!({
            "traceId": span.trace_id,
            "id": span.span_id,
            "name": tags.name,
            "kind": if span.server { "SERVER" } else { "CLIENT" },
            "timestamp": micros(span.start.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()),
            "duration": micros(span.started.elapsed()).max(1),
            "localEndpoint": {"serviceName": self.service_name, "ipv4": self.local_ip},
            "tags": Value::Object(tag_map),
        });
        if let Some(parent) = &span.parent_id {
            value["parentId"] = json!(parent);
        }
        istio_runtime::sync::lock(&self.spans).push(value);
    }

    /// Sends buffered spans to the collector every second while the data plane runs.
    pub(crate) async fn flush_forever(self: Arc<Self>, clusters: Arc<ClusterManager>, stats: Stats) {
        let (sent, dropped) =
            (stats.counter("tracing.zipkin.reports_sent"), stats.counter("tracing.zipkin.reports_dropped"));
        let mut interval = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            interval.tick().await;
            let spans = std::mem::take(&mut *istio_runtime::sync::lock(&self.spans));
            if spans.is_empty() {
                continue;
            }
            if let Err(error) = self.send(&clusters, spans).await {
                dropped.inc();
                tracing::debug!("sending spans to {}: {error}", self.collector_cluster);
            } else {
                sent.inc();
            }
        }
    }

    async fn send(&self, clusters: &ClusterManager, spans: Vec<Value>) -> Result<(), ExportError> {
        let cluster = clusters.get(&self.collector_cluster).ok_or(ExportError::NoCluster)?;
        let host = cluster.choose_host(None, &[]).ok_or(ExportError::NoHost)?;
        let body = serde_json::to_vec(&Value::Array(spans))?;
        let mut request = http::Request::new(body::full(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() =
            self.collector_endpoint.parse().map_err(|_| ExportError::Endpoint(self.collector_endpoint.clone()))?;
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(host_header) = HeaderValue::from_str(&host.address.to_string()) {
            request.headers_mut().insert(http::header::HOST, host_header);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let lease = checkout(&cluster, &host, Some(deadline)).await?;
        let response = tokio::time::timeout(Duration::from_secs(5), lease.send(&cluster, &host, request))
            .await
            .map_err(|_| ExportError::Timeout)??;
        let status = response.status();
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportError::Status(status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer() -> Tracer {
        Tracer {
            collector_cluster: "zipkin".into(),
            collector_endpoint: "/api/v2/spans".into(),
            trace_id_128bit: true,
            service_name: "istio-ingressgateway".into(),
            node_id: "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local".into(),
            local_ip: "10.0.0.1".into(),
            spans: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn new_traces_get_ids_and_b3_headers() {
        let tracer = tracer();
        let mut headers = HeaderMap::new();
        let span = tracer.start_span(&mut headers, 100.0, false);
        assert_eq!(span.trace_id.len(), 32);
        assert_eq!(headers["x-b3-traceid"], span.trace_id.as_str());
        assert_eq!(headers["x-b3-spanid"], span.span_id.as_str());
        assert_eq!(headers["x-b3-sampled"], "1");
        assert!(headers.get("x-b3-parentspanid").is_none());
        tracer.finish(&span, SpanTags { name: "gw/x".into(), status: 200, ..Default::default() });
        let spans = tracer.spans.lock().expect("lock");
        assert_eq!(spans[0]["kind"], "CLIENT");
        assert_eq!(spans[0]["localEndpoint"]["serviceName"], "istio-ingressgateway");
    }

    #[test]
    fn incoming_traces_are_joined_and_their_decision_kept() {
        let tracer = tracer();
        let mut headers = HeaderMap::new();
        headers.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad48485a3953bb6124"));
        headers.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        headers.insert("x-b3-sampled", HeaderValue::from_static("0"));
        let span = tracer.start_span(&mut headers, 100.0, true);
        assert_eq!(span.trace_id, "463ac35c9f6413ad48485a3953bb6124");
        assert_eq!(span.parent_id.as_deref(), Some("a2fb4a1d1a96d312"));
        assert_ne!(span.span_id, "a2fb4a1d1a96d312");
        assert_eq!(headers["x-b3-parentspanid"], "a2fb4a1d1a96d312");
        assert_eq!(headers["x-b3-sampled"], "0");
        tracer.finish(&span, SpanTags::default());
        assert!(tracer.spans.lock().expect("lock").is_empty(), "unsampled spans are not reported");
    }
}
