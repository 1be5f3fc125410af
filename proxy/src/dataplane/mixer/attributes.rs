//! A request's attributes as 1.4's proxy described it to Mixer: the connection (`source.ip`,
//! `destination.port`, `connection.mtls`, the peer's principal), the request (`request.headers`,
//! `request.path`, `request.method`, …), then what Pilot configured (`mixer_attributes`, the
//! route's service), then what the calling sidecar forwarded in `x-istio-attributes`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine;
use http::HeaderMap;
use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::value::ip_to_16_bytes;
use istio_attribute::wire::compressed::{from_attributes, to_attributes};
use istio_attribute::{MapBag, Timestamp, Value};
use prost::Message;

use super::super::http::downstream::Downstream;

/// The header sidecars pass attributes to the next one in.
pub(crate) const FORWARD_HEADER: &str = "x-istio-attributes";

/// The attributes a sidecar takes from the one that called it; all others are ignored.
const FORWARDED: [&str; 6] = [
    "source.uid",
    "source.namespace",
    "destination.service.name",
    "destination.service.uid",
    "destination.service.host",
    "destination.service.namespace",
];

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

/// A SPIFFE URI as 1.4's principals wrote it (`cluster.local/ns/default/sa/x`).
fn principal(uri: &str) -> String {
    uri.strip_prefix("spiffe://").unwrap_or(uri).to_string()
}

/// Which side checks what: a server sidecar its inbound requests and connections, a gateway (or
/// a client sidecar) its outbound ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    pub outbound: bool,
    pub http: bool,
}

impl Checked {
    /// From the filter's `mixer_attributes` (`context.reporter.kind`).
    pub(crate) fn of(configured: &MapBag, http: bool) -> Checked {
        let outbound = configured.get_value("context.reporter.kind").and_then(|kind| kind.as_str()) == Some("outbound");
        Checked { outbound, http }
    }
}

/// What the connection says: addresses, mutual TLS and the peer's identity. The caller's
/// address is always `origin.ip`; an outbound check has no destination address yet (the
/// route's service is the destination), and an outbound request's source address comes from
/// its identity, as 1.4's client filter left it to Mixer.
pub(crate) fn connection(downstream: &Downstream, checked: Checked) -> MapBag {
    let mut bag = MapBag::new();
    let address = |socket: SocketAddr| Value::Bytes(Cow::Owned(ip_to_16_bytes(socket.ip()).to_vec()));
    bag.set("origin.ip", address(downstream.remote));
    if !(checked.outbound && checked.http) {
        bag.set("source.ip", address(downstream.remote));
        bag.set("source.port", Value::Int64(i64::from(downstream.remote.port())));
    }
    if !checked.outbound {
        bag.set("destination.ip", address(downstream.local));
        bag.set("destination.port", Value::Int64(i64::from(downstream.local.port())));
    }
    let peer = downstream.peer.as_ref().and_then(|peer| peer.0.uris.first().cloned());
    bag.set("connection.mtls", Value::Bool(peer.is_some()));
    if let Some(uri) = peer {
        bag.set("source.principal", text(&principal(&uri)));
        bag.set("source.user", text(&principal(&uri)));
    }
    if let Some(name) = &downstream.server_name {
        bag.set("connection.requested_server_name", text(name));
    }
    bag.set("context.time", Value::Timestamp(Timestamp::now()));
    bag
}

/// What the request says.
pub(crate) fn request(bag: &mut MapBag, parts: &http::request::Parts, authority: &str, scheme: &str) {
    let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let mut headers: HashMap<String, String> = parts
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != FORWARD_HEADER)
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str().to_string(), value.to_string())))
        .collect();
    headers.insert(":authority".to_string(), authority.to_string());
    headers.insert(":path".to_string(), path.to_string());
    headers.insert(":method".to_string(), parts.method.as_str().to_string());
    let grpc = header("content-type").is_some_and(|content_type| content_type.starts_with("application/grpc"));
    bag.set("context.protocol", text(if grpc { "grpc" } else { "http" }));
    bag.set("request.headers", Value::StringMap(Cow::Owned(headers)));
    bag.set("request.host", text(authority));
    istio_attribute::request::set_path(bag, path);
    bag.set("request.method", text(parts.method.as_str()));
    bag.set("request.scheme", text(&header("x-forwarded-proto").unwrap_or_else(|| scheme.to_string())));
    bag.set("request.time", Value::Timestamp(Timestamp::now()));
    for (name, attribute) in
        [("user-agent", "request.useragent"), ("referer", "request.referer"), ("x-request-id", "request.id")]
    {
        if let Some(value) = header(name) {
            bag.set(attribute, text(&value));
        }
    }
}

/// How a request ended, for its report.
pub(crate) struct Outcome<'a> {
    pub code: u16,
    pub headers: &'a HeaderMap,
    pub request_header_bytes: u64,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub duration: std::time::Duration,
    /// The response flags (`-` when none), 1.4's `context.proxy_error_code`.
    pub flags: String,
    /// The upstream host the request went to, if it got that far.
    pub upstream: Option<SocketAddr>,
}

/// The bytes a header block takes on the wire (HTTP/1 form).
pub(crate) fn header_bytes(headers: &HeaderMap) -> u64 {
    headers.iter().map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64).sum()
}

/// What the response says, added to the request's attributes for its report: code, sizes,
/// duration, headers and flags; a client-side report also names the upstream host as its
/// destination.
pub(crate) fn response(bag: &mut MapBag, outcome: &Outcome<'_>, outbound: bool) {
    let response_header_bytes = header_bytes(outcome.headers);
    let headers: HashMap<String, String> = outcome
        .headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str().to_string(), value.to_string())))
        .collect();
    let size = |bytes: u64| Value::Int64(i64::try_from(bytes).unwrap_or(i64::MAX));
    bag.set("response.code", Value::Int64(i64::from(outcome.code)));
    bag.set("response.headers", Value::StringMap(Cow::Owned(headers)));
    bag.set("response.size", size(outcome.response_body_bytes));
    bag.set("response.total_size", size(outcome.response_body_bytes + response_header_bytes));
    bag.set("request.size", size(outcome.request_body_bytes));
    bag.set("request.total_size", size(outcome.request_body_bytes + outcome.request_header_bytes));
    bag.set("response.duration", Value::Duration(i64::try_from(outcome.duration.as_nanos()).unwrap_or(i64::MAX)));
    bag.set("response.time", Value::Timestamp(Timestamp::now()));
    bag.set("context.proxy_error_code", text(&outcome.flags));
    for (header, attribute) in [("grpc-status", "response.grpc_status"), ("grpc-message", "response.grpc_message")] {
        if let Some(value) = outcome.headers.get(header).and_then(|value| value.to_str().ok()) {
            bag.set(attribute, text(value));
        }
    }
    if let (true, Some(upstream)) = (outbound, outcome.upstream) {
        bag.set("destination.ip", Value::Bytes(Cow::Owned(ip_to_16_bytes(upstream.ip()).to_vec())));
        bag.set("destination.port", Value::Int64(i64::from(upstream.port())));
    }
}

/// The attributes forwarded in `x-istio-attributes` that a sidecar takes (non-empty strings
/// of 1.4's six names); an unreadable header is ignored.
pub(crate) fn forwarded(headers: &HeaderMap) -> MapBag {
    let mut bag = MapBag::new();
    let Some(value) = headers.get(FORWARD_HEADER).and_then(|value| value.to_str().ok()) else { return bag };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value) else { return bag };
    let Ok(attributes) = mixer::Attributes::decode(bytes.as_slice()) else { return bag };
    let decoded = from_attributes(&attributes);
    for name in FORWARDED {
        if let Some(value) = decoded.get_value(name).filter(|value| value.as_str().is_some_and(|text| !text.is_empty()))
        {
            bag.set(name, value.clone());
        }
    }
    bag
}

/// The `x-istio-attributes` value for `attributes`.
pub(crate) fn forward_header(attributes: &MapBag) -> Option<http::HeaderValue> {
    if attributes.is_empty() {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(to_attributes(attributes).encode_to_vec());
    http::HeaderValue::from_str(&encoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_six_names_are_taken_from_a_forwarding_sidecar() {
        let sent = MapBag::new()
            .with("source.uid", text("kubernetes://productpage-v1-abc.default"))
            .with("source.namespace", text("default"))
            .with("destination.service.host", text(""))
            .with("source.labels", text("not taken"));
        let mut headers = HeaderMap::new();
        headers.insert(FORWARD_HEADER, forward_header(&sent).expect("encodes"));
        let taken = forwarded(&headers);
        assert_eq!(taken.len(), 2);
        assert_eq!(taken.get_value("source.uid"), Some(&text("kubernetes://productpage-v1-abc.default")));
        headers.insert(FORWARD_HEADER, http::HeaderValue::from_static("!!!"));
        assert!(forwarded(&headers).is_empty());
    }

    #[test]
    fn a_response_completes_the_report_and_names_the_upstream_for_a_client() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", http::HeaderValue::from_static("178"));
        headers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let outcome = Outcome {
            code: 200,
            headers: &headers,
            request_header_bytes: 120,
            request_body_bytes: 7,
            response_body_bytes: 178,
            duration: std::time::Duration::from_millis(12),
            flags: "-".to_string(),
            upstream: Some("10.44.1.5:9080".parse().expect("address")),
        };
        let mut server = MapBag::new();
        response(&mut server, &outcome, false);
        assert_eq!(server.get_value("response.code"), Some(&Value::Int64(200)));
        assert_eq!(server.get_value("response.size"), Some(&Value::Int64(178)));
        assert_eq!(server.get_value("request.total_size"), Some(&Value::Int64(127)));
        assert_eq!(server.get_value("response.duration"), Some(&Value::Duration(12_000_000)));
        assert_eq!(server.get_value("response.grpc_status"), Some(&text("0")));
        assert_eq!(server.get_value("context.proxy_error_code"), Some(&text("-")));
        assert!(server.get_value("destination.ip").is_none(), "a server's destination is itself, set before");
        let mut client = MapBag::new();
        response(&mut client, &outcome, true);
        assert_eq!(client.get_value("destination.port"), Some(&Value::Int64(9080)));
        assert!(client
            .get_value("destination.ip")
            .and_then(Value::as_ip)
            .is_some_and(|ip| ip.to_string().ends_with("10.44.1.5")));
    }

    #[test]
    fn a_request_is_described_as_1_4_did() {
        let request = http::Request::get("/productpage?u=normal")
            .header("user-agent", "curl/8")
            .header(FORWARD_HEADER, "xx")
            .header("content-type", "application/grpc")
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        let mut bag = MapBag::new();
        super::request(&mut bag, &parts, "productpage:9080", "http");
        assert_eq!(bag.get_value("request.url_path"), Some(&text("/productpage")));
        assert_eq!(bag.get_value("context.protocol"), Some(&text("grpc")));
        assert_eq!(bag.get_value("request.useragent"), Some(&text("curl/8")));
        assert!(
            matches!(bag.get_value("request.headers"), Some(Value::StringMap(h)) if h[":authority"] == "productpage:9080" && !h.contains_key(FORWARD_HEADER))
        );
    }
}
