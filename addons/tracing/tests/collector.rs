//! The collector binary end to end: Zipkin v2 JSON and OTLP (gRPC and HTTP protobuf) in,
//! Zipkin's query API out, and bad batches refused with a reason while the rest is kept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

/// The collector process, killed when dropped.
struct Collector {
    child: Child,
    zipkin: SocketAddr,
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Collector {
    let mut child = Command::new(env!("CARGO_BIN_EXE_istio-tracing"))
        .args(["--address", "127.0.0.1", "--zipkinPort", "0", "--otlpGrpcPort", "0", "--otlpHttpPort", "0"])
        .args(["--maxSpans", "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("istio-tracing starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("banner");
    // istio-tracing: Zipkin on A, OTLP gRPC on B, OTLP HTTP on C
    let addresses: Vec<SocketAddr> = line.split(&[' ', ','][..]).filter_map(|word| word.trim().parse().ok()).collect();
    assert_eq!(addresses.len(), 3, "{line}");
    Collector { child, zipkin: addresses[0], otlp_grpc: addresses[1], otlp_http: addresses[2] }
}

/// One HTTP/1.1 exchange: the status and the body.
fn http(address: SocketAddr, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
    assert!(
        head.to_ascii_lowercase().contains("access-control-allow-origin: *") || !path.starts_with("/api"),
        "{head}"
    );
    let mut body = response[split..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|window| window == b"\r\n").expect("chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).expect("utf8").trim(), 16).expect("hex");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

fn get_json(collector: &Collector, path: &str) -> Value {
    let (status, body) = http(collector.zipkin, "GET", path, "text/plain", b"");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn otlp_request(service: &str, trace: u8, spans: Vec<(u8, Option<u8>, &str)>) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![string("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: spans
                    .into_iter()
                    .map(|(id, parent, name)| Span {
                        trace_id: vec![trace; 16],
                        span_id: vec![id; 8],
                        parent_span_id: parent.map(|parent| vec![parent; 8]).unwrap_or_default(),
                        name: name.into(),
                        kind: SpanKind::Server as i32,
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn zipkin_and_otlp_in_zipkins_query_api_out() {
    let collector = start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64;
    // Zipkin v2 JSON, as Envoy's tracer posts it: a gateway's client span and productpage's server span.
    let zipkin = serde_json::json!([
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "id": "b7ad6b7169203331", "kind": "CLIENT",
         "name": "productpage.default.svc.cluster.local:9080/productpage", "timestamp": now, "duration": 5000,
         "localEndpoint": {"serviceName": "istio-ingressgateway"}, "tags": {"http.status_code": "200"}},
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "id": "c7ad6b7169203331", "parentId": "b7ad6b7169203331",
         "kind": "SERVER", "name": "productpage.default.svc.cluster.local:9080/productpage", "timestamp": now + 100,
         "duration": 4000, "localEndpoint": {"serviceName": "productpage.default"}}
    ]);
    let (status, body) =
        http(collector.zipkin, "POST", "/api/v2/spans", "application/json", zipkin.to_string().as_bytes());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));

    // OTLP over gRPC and over HTTP (protobuf).
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.otlp_grpc)).await.expect("gRPC");
    let answer = client
        .export(otlp_request("reviews.default", 7, vec![(1, None, "reviews.default.svc.cluster.local:9080/*")]))
        .await
        .expect("export");
    assert_eq!(answer.get_ref().partial_success, None);
    let body = otlp_request("ratings.default", 7, vec![(2, Some(1), "ratings.default.svc.cluster.local:9080/*")])
        .encode_to_vec();
    let (status, answer) = http(collector.otlp_http, "POST", "/v1/traces", "application/x-protobuf", &body);
    assert_eq!(status, 200);
    assert_eq!(ExportTraceServiceResponse::decode(answer.as_slice()).expect("protobuf").partial_success, None);

    assert_eq!(
        get_json(&collector, "/api/v2/services"),
        serde_json::json!(["istio-ingressgateway", "productpage.default", "ratings.default", "reviews.default"])
    );
    assert_eq!(
        get_json(&collector, "/api/v2/spans?serviceName=istio-ingressgateway"),
        serde_json::json!(["productpage.default.svc.cluster.local:9080/productpage"])
    );
    let trace = get_json(&collector, "/api/v2/trace/0af7651916cd43dd8448eb211c80319c");
    assert_eq!(trace.as_array().map(Vec::len), Some(2));
    assert_eq!(trace[1]["parentId"], "b7ad6b7169203331");
    let trace = get_json(&collector, &format!("/api/v2/trace/{}", "07".repeat(16)));
    assert_eq!(trace.as_array().map(Vec::len), Some(2), "OTLP spans from two transports join one trace");
    let traces = get_json(&collector, "/api/v2/traces?serviceName=ratings.default&limit=5");
    assert_eq!(traces.as_array().map(Vec::len), Some(1));
    assert_eq!(traces[0][0]["traceId"], "07".repeat(16));
    let traces = get_json(&collector, "/api/v2/traces?annotationQuery=http.status_code%3D200");
    assert_eq!(traces[0][0]["localEndpoint"]["serviceName"], "istio-ingressgateway");
    let (status, _) = http(collector.zipkin, "GET", &format!("/api/v2/trace/{}", "9".repeat(32)), "text/plain", b"");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn garbage_is_refused_with_a_reason_and_nothing_else_is_lost() {
    let collector = start();
    let good = r#"[{"traceId":"1","id":"1","name":"kept","localEndpoint":{"serviceName":"sleep.default"}}]"#;
    assert_eq!(http(collector.zipkin, "POST", "/api/v2/spans", "application/json", good.as_bytes()).0, 202);

    let (status, body) = http(collector.zipkin, "POST", "/api/v2/spans", "application/json", b"{\"not\": \"a list\"}");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).starts_with("malformed Zipkin v2 JSON at .: invalid type: map"), "{body:?}");
    let bad_id = r#"[{"traceId":"2","id":"1"},{"traceId":"zz","id":"1"}]"#;
    let (status, body) = http(collector.zipkin, "POST", "/api/v2/spans", "application/json", bad_id.as_bytes());
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (400, r#"span 1: traceId "zz" is not 1 to 32 hex characters"#)
    );
    let (status, body) = http(collector.zipkin, "POST", "/api/v2/spans", "application/x-protobuf", b"\x0a\x01");
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    let (status, body) = http(collector.otlp_http, "POST", "/v1/traces", "application/x-protobuf", b"\xff\xff\xff");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).starts_with("malformed OTLP protobuf"), "{body:?}");
    let (status, body) = http(collector.zipkin, "GET", "/api/v2/traces?limit=ten", "text/plain", b"");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (400, r#"limit="ten": should be a whole number of at least 0"#)
    );
    let (status, _) = http(collector.zipkin, "GET", "/api/v2/spans", "text/plain", b"");
    assert_eq!(status, 400, "serviceName is required");

    // OTLP: the bad span is rejected alone, as partial success says.
    let mut request = otlp_request("details.default", 3, vec![(1, None, "good"), (2, None, "bad")]);
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![3; 5];
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.otlp_grpc)).await.expect("gRPC");
    let answer = client.export(request).await.expect("export").into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace_id must be 16 bytes"), "{}", partial.error_message);

    // Everything good is still there.
    assert_eq!(get_json(&collector, "/api/v2/services"), serde_json::json!(["details.default", "sleep.default"]));
    assert_eq!(get_json(&collector, "/api/v2/trace/1").as_array().map(Vec::len), Some(1));
    assert!(get_json(&collector, "/api/v2/spans?serviceName=details.default") == serde_json::json!(["good"]));
}
