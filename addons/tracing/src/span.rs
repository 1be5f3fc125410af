//! Zipkin's v2 span model as the collector keeps it: decoding a `POST /api/v2/spans` body,
//! checking and normalising each span as Zipkin's server does (lower-hex ids padded to 16 or 32
//! characters, lower-case names), and the JSON the query API answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who reported a span, or whom it called.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An event inside a span, at a time in microseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub timestamp: u64,
    pub value: String,
}

/// Zipkin v2's span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

/// One span, as Zipkin v2 JSON has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start, in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// In microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Why a batch of spans was refused; nothing of the batch is kept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpanError {
    #[error("malformed Zipkin v2 JSON at {path}: {message}")]
    Json { path: String, message: String },
    #[error("span {index}: {field} {value:?} is not {expected}")]
    Id { index: usize, field: &'static str, value: String, expected: &'static str },
    #[error("span {index}: {field} must not be empty")]
    Missing { index: usize, field: &'static str },
}

impl Span {
    /// The service that reported the span.
    pub fn local_service(&self) -> Option<&str> {
        self.local_endpoint.as_ref().and_then(|endpoint| endpoint.service_name.as_deref())
    }

    /// The service the span's caller or callee names at the other end.
    pub fn remote_service(&self) -> Option<&str> {
        self.remote_endpoint.as_ref().and_then(|endpoint| endpoint.service_name.as_deref())
    }

    /// Checks the ids and normalises the span as Zipkin's server stores it.
    fn normalise(mut self, index: usize) -> Result<Span, SpanError> {
        self.trace_id = normalise_id(&self.trace_id, index, "traceId", true)?;
        self.id = normalise_id(&self.id, index, "id", false)?;
        self.parent_id = match self.parent_id.take() {
            // Zipkin treats an all-zero parent as none.
            Some(parent) if parent.chars().all(|c| c == '0') => None,
            Some(parent) => Some(normalise_id(&parent, index, "parentId", false)?),
            None => None,
        };
        if self.parent_id.as_deref() == Some(self.id.as_str()) {
            self.parent_id = None;
        }
        self.name = self.name.map(|name| name.to_lowercase()).filter(|name| !name.is_empty());
        for endpoint in [&mut self.local_endpoint, &mut self.remote_endpoint] {
            if let Some(service) = endpoint.as_mut().and_then(|endpoint| endpoint.service_name.as_mut()) {
                *service = service.to_lowercase();
            }
            if endpoint.as_ref() == Some(&Endpoint::default()) {
                *endpoint = None;
            }
        }
        Ok(self)
    }
}

/// A hex id as Zipkin keeps it: lower case, left-padded with zeros to 16 characters (or to 32
/// for 128-bit trace ids).
pub fn normalise_id(id: &str, index: usize, field: &'static str, trace: bool) -> Result<String, SpanError> {
    let most = if trace { 32 } else { 16 };
    let expected = if trace { "1 to 32 hex characters" } else { "1 to 16 hex characters" };
    if id.is_empty() {
        return Err(SpanError::Missing { index, field });
    }
    if id.len() > most || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(SpanError::Id { index, field, value: id.to_string(), expected });
    }
    let width = if id.len() > 16 { 32 } else { 16 };
    Ok(format!("{:0>width$}", id.to_ascii_lowercase()))
}

/// Decodes and checks a Zipkin v2 JSON list of spans; one bad span refuses the whole batch.
pub fn decode_json(body: &[u8]) -> Result<Vec<Span>, SpanError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let spans: Vec<Span> = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        SpanError::Json { path, message: error.into_inner().to_string() }
    })?;
    spans.into_iter().enumerate().map(|(index, span)| span.normalise(index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_normalised_as_zipkin_stores_them() {
        let body = br#"[{"traceId":"ABC","id":"1","parentId":"0000000000000000","name":"GET /Productpage",
            "kind":"SERVER","timestamp":1,"duration":2,
            "localEndpoint":{"serviceName":"ProductPage.default","ipv4":"10.44.1.2"},"remoteEndpoint":{},
            "tags":{"http.status_code":"200"}}]"#;
        let spans = decode_json(body).expect("valid");
        assert_eq!(spans[0].trace_id, "0000000000000abc");
        assert_eq!(spans[0].id, "0000000000000001");
        assert_eq!(spans[0].parent_id, None);
        assert_eq!(spans[0].name.as_deref(), Some("get /productpage"));
        assert_eq!(spans[0].local_service(), Some("productpage.default"));
        assert_eq!(spans[0].remote_endpoint, None);
        assert_eq!(spans[0].kind, Some(Kind::Server));
        let long = decode_json(br#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312"}]"#)
            .expect("128-bit");
        assert_eq!(long[0].trace_id, "463ac35c9f6413ad48485a3953bb6124");
        // Absent fields stay absent when answered.
        let json = serde_json::to_string(&long[0]).expect("encode");
        assert_eq!(json, r#"{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312"}"#);
    }

    #[test]
    fn bad_spans_name_the_span_and_the_field() {
        let error = decode_json(br#"[{"traceId":"1","id":"2"},{"traceId":"xyz","id":"2"}]"#).expect_err("bad id");
        assert_eq!(error.to_string(), r#"span 1: traceId "xyz" is not 1 to 32 hex characters"#);
        let error = decode_json(br#"[{"traceId":"1","id":"12345678901234567"}]"#).expect_err("long id");
        assert_eq!(error.to_string(), r#"span 0: id "12345678901234567" is not 1 to 16 hex characters"#);
        let error = decode_json(br#"[{"traceId":"","id":"1"}]"#).expect_err("empty");
        assert_eq!(error.to_string(), "span 0: traceId must not be empty");
        let error = decode_json(br#"[{"traceId":"1","id":"2","timestamp":"soon"}]"#).expect_err("type");
        assert!(error.to_string().starts_with("malformed Zipkin v2 JSON at [0].timestamp: invalid type"), "{error}");
        let error = decode_json(br#"[{"traceId":"1","id":"2","kind":"SIDEWAYS"}]"#).expect_err("kind");
        assert!(error.to_string().contains("[0].kind: unknown variant `SIDEWAYS`"), "{error}");
        let error = decode_json(b"not json").expect_err("garbage");
        assert!(error.to_string().starts_with("malformed Zipkin v2 JSON at .: expected ident"), "{error}");
    }
}
