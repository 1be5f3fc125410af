//! OTLP spans in Zipkin's model, mapped as OpenTelemetry's Zipkin exporter specification says:
//! the resource's `service.name` is the local service, span kinds carry over (INTERNAL has
//! none), times become microseconds, attributes become string tags, an error status becomes the
//! `error` tag and events become annotations. A span with unusable ids is rejected on its own
//! (OTLP's partial success); the rest of the request is kept.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

use crate::span::{Annotation, Endpoint, Kind, Span};

/// The service of spans whose resource names none, as OpenTelemetry's SDKs default it.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Attributes that name the remote side, most specific first.
const REMOTE_SERVICE_KEYS: [&str; 3] = ["peer.service", "server.address", "net.peer.name"];

/// The spans of a request, and how many were rejected and why (the first reason).
#[derive(Debug, Default)]
pub struct Converted {
    pub spans: Vec<Span>,
    pub rejected: i64,
    pub first_error: Option<String>,
}

/// Maps every span of an export request.
pub fn convert(request: &ExportTraceServiceRequest) -> Converted {
    let mut converted = Converted::default();
    for resource_spans in &request.resource_spans {
        let attributes = resource_spans.resource.as_ref().map(|resource| resource.attributes.as_slice()).unwrap_or(&[]);
        let service = attributes
            .iter()
            .find(|pair| pair.key == "service.name")
            .and_then(|pair| pair.value.as_ref())
            .map(text)
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for otlp in &scope_spans.spans {
                let index = converted.spans.len() + converted.rejected as usize;
                match span(otlp, &service, scope.map(|scope| (scope.name.as_str(), scope.version.as_str()))) {
                    Ok(span) => converted.spans.push(span),
                    Err(reason) => {
                        converted.rejected += 1;
                        converted
                            .first_error
                            .get_or_insert_with(|| format!("span {index} ({:?}): {reason}", otlp.name));
                    }
                }
            }
        }
    }
    converted
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why one OTLP span cannot be kept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be {length} bytes, not all zero (got {got} bytes)")]
pub struct BadId {
    field: &'static str,
    length: usize,
    got: usize,
}

fn id(bytes: &[u8], length: usize, field: &'static str) -> Result<String, BadId> {
    if bytes.len() != length || bytes.iter().all(|byte| *byte == 0) {
        return Err(BadId { field, length, got: bytes.len() });
    }
    Ok(hex(bytes))
}

/// An attribute's value as a tag: strings as they are, the rest as JSON would write them.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => hex(bytes),
        Some(any_value::Value::ArrayValue(array)) => {
            let items: Vec<serde_json::Value> = array.values.iter().map(json).collect();
            serde_json::Value::Array(items).to_string()
        }
        Some(any_value::Value::KvlistValue(list)) => json_object(&list.values).to_string(),
        _ => String::new(),
    }
}

fn json(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        Some(any_value::Value::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(any_value::Value::IntValue(number)) => serde_json::Value::from(*number),
        Some(any_value::Value::DoubleValue(number)) => serde_json::Value::from(*number),
        Some(any_value::Value::ArrayValue(array)) => serde_json::Value::Array(array.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(list)) => json_object(&list.values),
        _ => serde_json::Value::String(text(value)),
    }
}

fn json_object(pairs: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(
        pairs
            .iter()
            .map(|pair| (pair.key.clone(), pair.value.as_ref().map(json).unwrap_or(serde_json::Value::Null)))
            .collect(),
    )
}

fn span(otlp: &OtlpSpan, service: &str, scope: Option<(&str, &str)>) -> Result<Span, BadId> {
    let trace_id = id(&otlp.trace_id, 16, "trace_id")?;
    let span_id = id(&otlp.span_id, 8, "span_id")?;
    let parent_id = match otlp.parent_span_id.as_slice() {
        [] => None,
        bytes if bytes.iter().all(|byte| *byte == 0) => None,
        bytes => Some(id(bytes, 8, "parent_span_id")?),
    };
    let kind = match SpanKind::try_from(otlp.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => Some(Kind::Server),
        SpanKind::Client => Some(Kind::Client),
        SpanKind::Producer => Some(Kind::Producer),
        SpanKind::Consumer => Some(Kind::Consumer),
        SpanKind::Internal | SpanKind::Unspecified => None,
    };
    let mut tags: std::collections::BTreeMap<String, String> = otlp
        .attributes
        .iter()
        .map(|pair| (pair.key.clone(), pair.value.as_ref().map(text).unwrap_or_default()))
        .collect();
    if let Some((name, version)) = scope.filter(|(name, _)| !name.is_empty()) {
        tags.insert("otel.scope.name".into(), name.to_string());
        if !version.is_empty() {
            tags.insert("otel.scope.version".into(), version.to_string());
        }
    }
    if let Some(status) = &otlp.status {
        match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
            StatusCode::Error => {
                tags.insert("otel.status_code".into(), "ERROR".into());
                tags.insert("error".into(), status.message.clone());
            }
            StatusCode::Ok => {
                tags.insert("otel.status_code".into(), "OK".into());
            }
            StatusCode::Unset => {}
        }
    }
    let remote_service = REMOTE_SERVICE_KEYS.iter().find_map(|key| tags.get(*key).cloned());
    let annotations = otlp
        .events
        .iter()
        .map(|event| {
            let value = if event.attributes.is_empty() {
                event.name.clone()
            } else {
                format!("\"{}\":{}", event.name, json_object(&event.attributes))
            };
            Annotation { timestamp: event.time_unix_nano / 1000, value }
        })
        .collect();
    let start = otlp.start_time_unix_nano / 1000;
    let end = otlp.end_time_unix_nano / 1000;
    let span = Span {
        trace_id,
        parent_id,
        id: span_id,
        kind,
        name: (!otlp.name.is_empty()).then(|| otlp.name.to_lowercase()),
        timestamp: (start > 0).then_some(start),
        duration: (start > 0 && end >= start).then(|| (end - start).max(1)),
        local_endpoint: Some(Endpoint { service_name: Some(service.to_lowercase()), ..Endpoint::default() }),
        remote_endpoint: remote_service
            .map(|name| Endpoint { service_name: Some(name.to_lowercase()), ..Endpoint::default() }),
        annotations,
        tags,
        ..Span::default()
    };
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Status};

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            ..Default::default()
        }
    }

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", "Reviews.default")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn otlp_spans_map_as_the_zipkin_exporter_specification_says() {
        let otlp = OtlpSpan {
            trace_id: vec![0x46; 16],
            span_id: vec![0xa2; 8],
            parent_span_id: vec![0x01; 8],
            name: "GET /reviews/0".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_002_500_000,
            attributes: vec![
                string("peer.service", "ratings.default"),
                KeyValue {
                    key: "http.status_code".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(503)) }),
                    ..Default::default()
                },
            ],
            events: vec![Event {
                time_unix_nano: 1_700_000_000_001_000_000,
                name: "retry".into(),
                ..Default::default()
            }],
            status: Some(Status { code: StatusCode::Error as i32, message: "upstream reset".into() }),
            ..Default::default()
        };
        let converted = convert(&request(vec![otlp]));
        assert_eq!(converted.rejected, 0);
        let span = &converted.spans[0];
        assert_eq!(span.trace_id, "46".repeat(16));
        assert_eq!(span.id, "a2".repeat(8));
        assert_eq!(span.parent_id.as_deref(), Some("0101010101010101"));
        assert_eq!(span.kind, Some(Kind::Client));
        assert_eq!(span.name.as_deref(), Some("get /reviews/0"));
        assert_eq!((span.timestamp, span.duration), (Some(1_700_000_000_000_000), Some(2500)));
        assert_eq!(span.local_service(), Some("reviews.default"));
        assert_eq!(span.remote_service(), Some("ratings.default"));
        assert_eq!(span.tags["http.status_code"], "503");
        assert_eq!(span.tags["error"], "upstream reset");
        assert_eq!(span.annotations, [Annotation { timestamp: 1_700_000_000_001_000, value: "retry".into() }]);
    }

    #[test]
    fn a_span_with_bad_ids_is_rejected_alone() {
        let good = OtlpSpan { trace_id: vec![1; 16], span_id: vec![2; 8], name: "ok".into(), ..Default::default() };
        let short = OtlpSpan { trace_id: vec![1; 3], span_id: vec![2; 8], name: "short".into(), ..Default::default() };
        let converted = convert(&request(vec![good, short]));
        assert_eq!((converted.spans.len(), converted.rejected), (1, 1));
        assert_eq!(
            converted.first_error.as_deref(),
            Some("span 1 (\"short\"): trace_id must be 16 bytes, not all zero (got 3 bytes)")
        );
        // No service name: OpenTelemetry's default.
        let bare = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![OtlpSpan { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(convert(&bare).spans[0].local_service(), Some(UNKNOWN_SERVICE));
    }
}
