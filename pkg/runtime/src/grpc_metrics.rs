//! gRPC server metrics under the names 1.4's components exported, so its dashboards' queries
//! find them: Mixer's OpenCensus `ocgrpc` views (`grpc_io_server_completed_rpcs` by method and
//! status, `grpc_io_server_server_latency` in milliseconds) and Citadel's go-grpc-prometheus
//! series (`grpc_server_started_total`, `grpc_server_handled_total` by code,
//! `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`,
//! `grpc_server_handling_seconds`, each method's series created at zero as `Register` did).
//! A tower layer on the tonic server records every call: the status comes from the response's
//! headers (a trailers-only answer) or from its trailers when the body ends; a call dropped
//! before it ends counts as cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::ExactCounter;

/// Which 1.4 library's names the metrics take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// OpenCensus `ocgrpc` server views (Mixer).
    OpenCensus,
    /// go-grpc-prometheus server metrics (Citadel).
    GoGrpcPrometheus,
}

/// gRPC status codes by number, as go-grpc-prometheus (Go's `codes.Code`) and OpenCensus name them.
const CODES: [(&str, &str); 17] = [
    ("OK", "OK"),
    ("Canceled", "CANCELLED"),
    ("Unknown", "UNKNOWN"),
    ("InvalidArgument", "INVALID_ARGUMENT"),
    ("DeadlineExceeded", "DEADLINE_EXCEEDED"),
    ("NotFound", "NOT_FOUND"),
    ("AlreadyExists", "ALREADY_EXISTS"),
    ("PermissionDenied", "PERMISSION_DENIED"),
    ("ResourceExhausted", "RESOURCE_EXHAUSTED"),
    ("FailedPrecondition", "FAILED_PRECONDITION"),
    ("Aborted", "ABORTED"),
    ("OutOfRange", "OUT_OF_RANGE"),
    ("Unimplemented", "UNIMPLEMENTED"),
    ("Internal", "INTERNAL"),
    ("Unavailable", "UNAVAILABLE"),
    ("DataLoss", "DATA_LOSS"),
    ("Unauthenticated", "UNAUTHENTICATED"),
];
const CANCELLED: usize = 1;

/// A gRPC status code as Go's `codes.Code` prints it (`InvalidArgument`), as 1.4's metrics label it.
pub fn go_code_name(code: i32) -> &'static str {
    usize::try_from(code).ok().and_then(|index| CODES.get(index)).map_or(CODES[UNKNOWN].0, |(go, _)| go)
}
const UNKNOWN: usize = 2;

/// OpenCensus' default millisecond distribution.
const LATENCY_MS_BUCKETS: [f64; 40] = [
    0.01, 0.05, 0.1, 0.3, 0.6, 0.8, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0,
    65.0, 80.0, 100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0, 10000.0,
    20000.0, 50000.0, 100000.0,
];
/// The Go client's default buckets, in seconds.
const HANDLING_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CompletedLabels {
    grpc_server_method: String,
    grpc_server_status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LatencyLabels {
    grpc_server_method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: String,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: String,
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
struct Inner {
    naming: Naming,
    /// `service/method` of the streaming methods, with their go-grpc-prometheus type.
    streaming: Vec<(String, &'static str)>,
    completed: Family<CompletedLabels, ExactCounter>,
    latency: HistogramFamily<LatencyLabels>,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    received: Family<MethodLabels, Counter>,
    sent: Family<MethodLabels, Counter>,
    handling: HistogramFamily<MethodLabels>,
}

/// The metrics and the layer that records them.
#[derive(Debug, Clone)]
pub struct GrpcServerMetrics {
    inner: Arc<Inner>,
}

/// A method the server offers: `("istio.v1.auth.IstioCertificateService", "CreateCertificate",
/// "unary")`; the type is go-grpc-prometheus' (`unary`, `client_stream`, `server_stream`,
/// `bidi_stream`).
pub type Method<'a> = (&'a str, &'a str, &'static str);

impl GrpcServerMetrics {
    /// Registers the metrics of `naming` in `registry`; go-grpc-prometheus' series for `methods`
    /// are created at zero.
    pub fn register(registry: &mut Registry, naming: Naming, methods: &[Method<'_>]) -> GrpcServerMetrics {
        let inner = Inner {
            naming,
            streaming: methods
                .iter()
                .filter(|(_, _, kind)| *kind != "unary")
                .map(|(service, method, kind)| (format!("{service}/{method}"), *kind))
                .collect(),
            completed: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_MS_BUCKETS)),
            started: Family::default(),
            handled: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            handling: Family::new_with_constructor(|| Histogram::new(HANDLING_BUCKETS)),
        };
        match naming {
            Naming::OpenCensus => {
                registry.register(
                    "grpc_io_server_completed_rpcs",
                    "Count of RPCs by method and status.",
                    inner.completed.clone(),
                );
                registry.register(
                    "grpc_io_server_server_latency",
                    "Distribution of server latency in milliseconds, by method.",
                    inner.latency.clone(),
                );
            }
            Naming::GoGrpcPrometheus => {
                registry.register(
                    "grpc_server_started",
                    "Total number of RPCs started on the server.",
                    inner.started.clone(),
                );
                registry.register(
                    "grpc_server_handled",
                    "Total number of RPCs completed on the server, regardless of success or failure.",
                    inner.handled.clone(),
                );
                registry.register(
                    "grpc_server_msg_received",
                    "Total number of RPC stream messages received on the server.",
                    inner.received.clone(),
                );
                registry.register(
                    "grpc_server_msg_sent",
                    "Total number of gRPC stream messages sent by the server.",
                    inner.sent.clone(),
                );
                registry.register(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    inner.handling.clone(),
                );
                for (service, method, kind) in methods {
                    let labels = method_labels(service, method, kind);
                    let _ = inner.started.get_or_create(&labels);
                    let _ = inner.received.get_or_create(&labels);
                    let _ = inner.sent.get_or_create(&labels);
                    let _ = inner.handling.get_or_create(&labels);
                    for (code, _) in CODES {
                        let _ = inner.handled.get_or_create(&handled_labels(&labels, code));
                    }
                }
            }
        }
        GrpcServerMetrics { inner: Arc::new(inner) }
    }

    /// Records the start of a call to `path` (`/service/method`).
    fn start(&self, path: &str) -> Call {
        let method = path.trim_start_matches('/').to_string();
        if self.inner.naming == Naming::GoGrpcPrometheus {
            let labels = self.method_labels(&method);
            self.inner.started.get_or_create(&labels).inc();
            self.inner.received.get_or_create(&labels).inc();
        }
        Call { metrics: self.clone(), method, started: Instant::now(), status: None, finished: false }
    }

    fn method_labels(&self, method: &str) -> MethodLabels {
        let (service, name) = method.split_once('/').unwrap_or(("unknown", method));
        let kind = self.inner.streaming.iter().find(|(path, _)| path == method).map_or("unary", |(_, kind)| *kind);
        method_labels(service, name, kind)
    }

    fn finish(&self, method: &str, code: usize, started: Instant) {
        let (go_name, census_name) = CODES.get(code).copied().unwrap_or(CODES[UNKNOWN]);
        let elapsed = started.elapsed();
        match self.inner.naming {
            Naming::OpenCensus => {
                let labels = CompletedLabels {
                    grpc_server_method: method.to_string(),
                    grpc_server_status: census_name.to_string(),
                };
                self.inner.completed.get_or_create(&labels).inc();
                let labels = LatencyLabels { grpc_server_method: method.to_string() };
                self.inner.latency.get_or_create(&labels).observe(elapsed.as_secs_f64() * 1000.0);
            }
            Naming::GoGrpcPrometheus => {
                let labels = self.method_labels(method);
                self.inner.handled.get_or_create(&handled_labels(&labels, go_name)).inc();
                self.inner.handling.get_or_create(&labels).observe(elapsed.as_secs_f64());
                if code == 0 {
                    self.inner.sent.get_or_create(&labels).inc();
                }
            }
        }
    }
}

fn method_labels(service: &str, method: &str, kind: &str) -> MethodLabels {
    MethodLabels { grpc_type: kind.to_string(), grpc_service: service.to_string(), grpc_method: method.to_string() }
}

fn handled_labels(labels: &MethodLabels, code: &str) -> HandledLabels {
    HandledLabels {
        grpc_type: labels.grpc_type.clone(),
        grpc_service: labels.grpc_service.clone(),
        grpc_method: labels.grpc_method.clone(),
        grpc_code: code.to_string(),
    }
}

/// A call in progress; it records its end once, when its status is known or when it is dropped.
struct Call {
    metrics: GrpcServerMetrics,
    method: String,
    started: Instant,
    status: Option<usize>,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if !self.finished {
            self.finished = true;
            self.metrics.finish(&self.method, code, self.started);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELLED);
    }
}

/// The `grpc-status` a header map carries.
fn status_of(headers: &http::HeaderMap) -> Option<usize> {
    headers.get("grpc-status").and_then(|value| value.to_str().ok()).and_then(|text| text.parse().ok())
}

impl<S> tower::Layer<S> for GrpcServerMetrics {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded { inner, metrics: self.clone() }
    }
}

/// A service whose calls are recorded.
#[derive(Debug, Clone)]
pub struct Recorded<S> {
    inner: S,
    metrics: GrpcServerMetrics,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for Recorded<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Body + Unpin,
{
    type Response = http::Response<RecordedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let mut call = self.metrics.start(request.uri().path());
        let answer = self.inner.call(request);
        Box::pin(async move {
            match answer.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    call.status = status_of(&parts.headers);
                    Ok(http::Response::from_parts(parts, RecordedBody { inner: body, call }))
                }
                Err(error) => {
                    call.finish(UNKNOWN);
                    Err(error)
                }
            }
        })
    }
}

/// A response body that records its call's end.
pub struct RecordedBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(status_of) {
                    this.call.status = Some(status);
                    this.call.finish(status);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(UNKNOWN),
            Poll::Ready(None) => {
                let status = this.call.status.unwrap_or(UNKNOWN);
                this.call.finish(status);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};

    use super::*;

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    type Answer = http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>>;

    /// A unary answer with its status in trailers.
    fn answered(
        code: &'static str,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = Answer,
        Error = Infallible,
        Future = std::future::Ready<Result<Answer, Infallible>>,
    > + Clone {
        tower::service_fn(move |_request: http::Request<()>| {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(code));
            let body = Full::new(Bytes::from_static(b"answer")).with_trailers(async move { Some(Ok(trailers)) });
            std::future::ready(Ok(http::Response::new(BodyExt::boxed_unsync(body))))
        })
    }

    async fn call(service: impl tower::Service<http::Request<()>, Response = http::Response<impl Body>>, path: &str) {
        let response = service.oneshot(http::Request::builder().uri(path).body(()).unwrap()).await.ok().unwrap();
        let _ = response.into_body().collect().await;
    }

    #[tokio::test]
    async fn opencensus_names_count_calls_by_method_and_status() {
        let mut registry = Registry::default();
        let metrics = GrpcServerMetrics::register(&mut registry, Naming::OpenCensus, &[]);
        call(metrics.layer(answered("0")), "/istio.mixer.v1.Mixer/Report").await;
        call(metrics.layer(answered("0")), "/istio.mixer.v1.Mixer/Report").await;
        call(metrics.layer(answered("7")), "/istio.mixer.v1.Mixer/Check").await;
        let text = render(&registry);
        assert!(text.contains("# TYPE grpc_io_server_completed_rpcs counter"), "{text}");
        assert!(
            text.contains(
                "grpc_io_server_completed_rpcs{grpc_server_method=\"istio.mixer.v1.Mixer/Report\",grpc_server_status=\"OK\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "grpc_server_method=\"istio.mixer.v1.Mixer/Check\",grpc_server_status=\"PERMISSION_DENIED\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("grpc_io_server_server_latency_count{grpc_server_method=\"istio.mixer.v1.Mixer/Report\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn go_names_start_at_zero_and_count_codes() {
        let mut registry = Registry::default();
        let service = "istio.v1.auth.IstioCertificateService";
        let metrics = GrpcServerMetrics::register(
            &mut registry,
            Naming::GoGrpcPrometheus,
            &[(service, "CreateCertificate", "unary")],
        );
        let before = render(&registry);
        assert!(before.contains("grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"istio.v1.auth.IstioCertificateService\",grpc_method=\"CreateCertificate\",grpc_code=\"Unauthenticated\"} 0"), "{before}");
        call(metrics.layer(answered("16")), "/istio.v1.auth.IstioCertificateService/CreateCertificate").await;
        call(metrics.layer(answered("0")), "/istio.v1.auth.IstioCertificateService/CreateCertificate").await;
        let text = render(&registry);
        let labels = "grpc_type=\"unary\",grpc_service=\"istio.v1.auth.IstioCertificateService\",grpc_method=\"CreateCertificate\"";
        assert!(text.contains(&format!("grpc_server_started_total{{{labels}}} 2")), "{text}");
        assert!(text.contains(&format!("grpc_server_msg_received_total{{{labels}}} 2")), "{text}");
        assert!(text.contains(&format!("grpc_server_msg_sent_total{{{labels}}} 1")), "{text}");
        assert!(
            text.contains(&format!("grpc_server_handled_total{{{labels},grpc_code=\"Unauthenticated\"}} 1")),
            "{text}"
        );
        assert!(text.contains(&format!("grpc_server_handled_total{{{labels},grpc_code=\"OK\"}} 1")), "{text}");
        assert!(text.contains(&format!("grpc_server_handling_seconds_count{{{labels}}} 2")), "{text}");
    }

    #[tokio::test]
    async fn a_trailers_only_answer_and_a_dropped_call_are_counted() {
        let mut registry = Registry::default();
        let metrics = GrpcServerMetrics::register(&mut registry, Naming::OpenCensus, &[]);
        let refused = tower::service_fn(|_request: http::Request<()>| {
            let response = http::Response::builder().header("grpc-status", "12").body(Full::new(Bytes::new())).unwrap();
            std::future::ready(Ok::<_, Infallible>(response))
        });
        call(metrics.layer(refused), "/a.B/C").await;
        let dropped = metrics
            .layer(answered("0"))
            .oneshot(http::Request::builder().uri("/a.B/D").body(()).unwrap())
            .await
            .ok()
            .unwrap();
        drop(dropped);
        let text = render(&registry);
        assert!(text.contains("grpc_server_method=\"a.B/C\",grpc_server_status=\"UNIMPLEMENTED\"} 1"), "{text}");
        assert!(text.contains("grpc_server_method=\"a.B/D\",grpc_server_status=\"CANCELLED\"} 1"), "{text}");
    }
}
