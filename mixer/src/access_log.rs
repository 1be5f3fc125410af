//! Envoy's gRPC access log service (`envoy.service.accesslog.v3.AccessLogService`), answered by
//! Mixer: how a stock Envoy, which has no `mixer` filter, reports. Pilot gives such a proxy
//! gRPC access loggers named after the side that writes them (`istio_attribute::access_log`);
//! each entry becomes the attributes 1.4's filter would have reported — the request and
//! response (headers, codes, sizes, duration, response flags), the addresses, mutual TLS and
//! the peer's principal, the upstream cluster's service as `destination.service.*`, and the
//! proxy (from the stream's node) as the reporter — and goes through the same report dispatch.
//! A TCP entry, written when its connection closes, becomes an `open` and a `close` report.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{address, Address, Node, RequestMethod};
use envoy_types::pb::envoy::data::accesslog::v3::{
    tls_properties::certificate_properties::subject_alt_name::San, AccessLogCommon, HttpAccessLogEntry, ResponseFlags,
    TcpAccessLogEntry,
};
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogService;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{StreamAccessLogsMessage, StreamAccessLogsResponse};
use istio_attribute::access_log::reporter_kind;
use istio_attribute::value::ip_to_16_bytes;
use istio_attribute::{MapBag, Timestamp, Value};
use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use crate::api::MixerService;
use crate::dispatch::Dispatcher;

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

fn bytes(count: u64) -> Value<'static> {
    Value::Int64(i64::try_from(count).unwrap_or(i64::MAX))
}

/// Who wrote a stream: the reporter's side and its pod, from the stream's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    /// `inbound` or `outbound`.
    pub kind: &'static str,
    /// `kubernetes://POD.NAMESPACE`, as 1.4's uids were written.
    pub uid: String,
    pub namespace: String,
}

impl Reporter {
    /// From the node (`sidecar~IP~POD.NAMESPACE~DOMAIN`) and the log name; `None` for a log
    /// that is not a report or a node that does not name its pod.
    pub fn of(node: Option<&Node>, log_name: &str) -> Option<Reporter> {
        let kind = reporter_kind(log_name)?;
        let pod = node?.id.split('~').nth(2)?;
        let (_, namespace) = pod.split_once('.')?;
        Some(Reporter { kind, uid: format!("kubernetes://{pod}"), namespace: namespace.to_string() })
    }

    fn add_to(&self, bag: &mut MapBag) {
        bag.set("context.reporter.kind", text(self.kind));
        bag.set("context.reporter.uid", text(&self.uid));
        let side = if self.kind == "inbound" { "destination" } else { "source" };
        bag.set(format!("{side}.uid"), text(&self.uid));
        bag.set(format!("{side}.namespace"), text(&self.namespace));
    }
}

fn socket(address: Option<&Address>) -> Option<(IpAddr, u32)> {
    let address::Address::SocketAddress(socket) = address?.address.as_ref()? else { return None };
    let port = match socket.port_specifier {
        Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port)) => port,
        _ => 0,
    };
    Some((socket.address.parse().ok()?, port))
}

fn set_address(bag: &mut MapBag, side: &str, address: Option<&Address>) {
    if let Some((ip, port)) = socket(address) {
        bag.set(format!("{side}.ip"), Value::Bytes(Cow::Owned(ip_to_16_bytes(ip).to_vec())));
        bag.set(format!("{side}.port"), Value::Int64(i64::from(port)));
    }
}

/// Envoy's short response flags (`UH`, `NR`, …) joined as its access log prints them; `-`
/// when there are none.
pub fn flags_text(flags: Option<&ResponseFlags>) -> String {
    let Some(flags) = flags else { return "-".to_string() };
    let codes = [
        (flags.failed_local_healthcheck, "LH"),
        (flags.no_healthy_upstream, "UH"),
        (flags.upstream_request_timeout, "UT"),
        (flags.local_reset, "LR"),
        (flags.upstream_remote_reset, "UR"),
        (flags.upstream_connection_failure, "UF"),
        (flags.upstream_connection_termination, "UC"),
        (flags.upstream_overflow, "UO"),
        (flags.no_route_found, "NR"),
        (flags.delay_injected, "DI"),
        (flags.fault_injected, "FI"),
        (flags.rate_limited, "RL"),
        (flags.unauthorized_details.is_some(), "UAEX"),
        (flags.rate_limit_service_error, "RLSE"),
        (flags.downstream_connection_termination, "DC"),
        (flags.upstream_retry_limit_exceeded, "URX"),
        (flags.stream_idle_timeout, "SI"),
        (flags.invalid_envoy_request_headers, "IH"),
        (flags.downstream_protocol_error, "DPE"),
        (flags.upstream_max_stream_duration_reached, "UMSDR"),
        (flags.response_from_cache_filter, "RFCF"),
        (flags.no_filter_config_found, "NFCF"),
        (flags.duration_timeout, "DT"),
        (flags.upstream_protocol_error, "UPE"),
        (flags.no_cluster_found, "NC"),
        (flags.overload_manager, "OM"),
    ];
    let set: Vec<&str> = codes.iter().filter(|(on, _)| *on).map(|(_, code)| *code).collect();
    if set.is_empty() {
        "-".to_string()
    } else {
        set.join(",")
    }
}

/// 1.4's `destination.service.*` for an upstream cluster (`outbound|9080|v1|HOST`,
/// `inbound|9080|http|HOST`); the passthrough and blackhole clusters name themselves.
fn set_service(bag: &mut MapBag, cluster: &str) {
    if cluster == "PassthroughCluster" || cluster == "BlackHoleCluster" || cluster == "InboundPassthroughClusterIpv4" {
        bag.set("destination.service.name", text(cluster));
        return;
    }
    let mut parts = cluster.split('|');
    let (Some(_direction), Some(_port), Some(_subset), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    bag.set("destination.service.host", text(host));
    let mut labels = host.split('.');
    if let Some(name) = labels.next().filter(|name| !name.is_empty()) {
        bag.set("destination.service.name", text(name));
        if let Some(namespace) = labels.next().filter(|_| host.contains(".svc.")) {
            bag.set("destination.service.namespace", text(namespace));
            bag.set("destination.service.uid", text(&format!("istio://{namespace}/services/{name}")));
        }
    }
}

fn timestamp(value: Option<&envoy_types::pb::google::protobuf::Timestamp>) -> Option<Timestamp> {
    value.map(|time| Timestamp::from_parts(time.seconds, time.nanos))
}

fn nanos(value: Option<&envoy_types::pb::google::protobuf::Duration>) -> Option<i64> {
    value.map(|duration| duration.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(duration.nanos)))
}

/// What every entry says: the addresses, the peer, the reporter and the upstream's service.
fn common(bag: &mut MapBag, reporter: &Reporter, common: &AccessLogCommon) {
    reporter.add_to(bag);
    if reporter.kind == "inbound" {
        set_address(bag, "source", common.downstream_remote_address.as_ref());
        set_address(bag, "destination", common.downstream_local_address.as_ref());
    } else {
        set_address(bag, "destination", common.upstream_remote_address.as_ref());
    }
    if let Some((ip, _)) = socket(common.downstream_remote_address.as_ref()) {
        bag.set("origin.ip", Value::Bytes(Cow::Owned(ip_to_16_bytes(ip).to_vec())));
    }
    let peer =
        common.tls_properties.as_ref().and_then(|tls| tls.peer_certificate_properties.as_ref()).and_then(|peer| {
            peer.subject_alt_name.iter().find_map(|name| match &name.san {
                Some(San::Uri(uri)) => Some(uri.clone()),
                _ => None,
            })
        });
    bag.set("connection.mtls", Value::Bool(peer.is_some() && reporter.kind == "inbound"));
    if let Some(uri) = peer.filter(|_| reporter.kind == "inbound") {
        let principal = uri.strip_prefix("spiffe://").unwrap_or(&uri).to_string();
        bag.set("source.principal", text(&principal));
        bag.set("source.user", text(&principal));
    }
    if let Some(sni) =
        common.tls_properties.as_ref().map(|tls| tls.tls_sni_hostname.as_str()).filter(|sni| !sni.is_empty())
    {
        bag.set("connection.requested_server_name", text(sni));
    }
    set_service(bag, &common.upstream_cluster);
    bag.set("context.proxy_error_code", text(&flags_text(common.response_flags.as_ref())));
}

/// The report of an HTTP entry.
pub fn http_attributes(reporter: &Reporter, entry: &HttpAccessLogEntry) -> MapBag {
    let mut bag = MapBag::new();
    let properties = entry.common_properties.clone().unwrap_or_default();
    common(&mut bag, reporter, &properties);
    let request = entry.request.clone().unwrap_or_default();
    let response = entry.response.clone().unwrap_or_default();
    let method = RequestMethod::try_from(request.request_method)
        .ok()
        .filter(|method| *method != RequestMethod::MethodUnspecified)
        .map(|method| method.as_str_name().to_string())
        .unwrap_or_default();
    let mut headers: HashMap<String, String> = request.request_headers.clone();
    headers.insert(":authority".into(), request.authority.clone());
    headers.insert(":path".into(), request.path.clone());
    headers.insert(":method".into(), method.clone());
    for (name, value) in [
        ("user-agent", &request.user_agent),
        ("referer", &request.referer),
        ("x-forwarded-for", &request.forwarded_for),
        ("x-request-id", &request.request_id),
    ] {
        if !value.is_empty() {
            headers.insert(name.into(), value.clone());
        }
    }
    let grpc = headers.get("content-type").is_some_and(|content_type| content_type.starts_with("application/grpc"));
    bag.set("context.protocol", text(if grpc { "grpc" } else { "http" }));
    bag.set("request.headers", Value::StringMap(Cow::Owned(headers)));
    bag.set("request.host", text(&request.authority));
    istio_attribute::request::set_path(&mut bag, &request.path);
    if !method.is_empty() {
        bag.set("request.method", text(&method));
    }
    let scheme = request.request_headers.get("x-forwarded-proto").cloned().unwrap_or_else(|| request.scheme.clone());
    bag.set("request.scheme", text(if scheme.is_empty() { "http" } else { &scheme }));
    for (attribute, value) in [
        ("request.useragent", &request.user_agent),
        ("request.referer", &request.referer),
        ("request.id", &request.request_id),
    ] {
        if !value.is_empty() {
            bag.set(attribute, text(value));
        }
    }
    let start = timestamp(properties.start_time.as_ref());
    if let Some(start) = start {
        bag.set("request.time", Value::Timestamp(start));
    }
    bag.set("request.size", bytes(request.request_body_bytes));
    bag.set("request.total_size", bytes(request.request_body_bytes + request.request_headers_bytes));
    bag.set("response.code", Value::Int64(i64::from(response.response_code.map_or(0, |code| code.value))));
    bag.set("response.size", bytes(response.response_body_bytes));
    bag.set("response.total_size", bytes(response.response_body_bytes + response.response_headers_bytes));
    let mut response_headers = response.response_headers.clone();
    for (name, value) in &response.response_trailers {
        response_headers.entry(name.clone()).or_insert_with(|| value.clone());
    }
    for (header, attribute) in [("grpc-status", "response.grpc_status"), ("grpc-message", "response.grpc_message")] {
        if let Some(value) = response_headers.get(header) {
            bag.set(attribute, text(value));
        }
    }
    bag.set("response.headers", Value::StringMap(Cow::Owned(response_headers)));
    let duration = nanos(properties.time_to_last_downstream_tx_byte.as_ref()).unwrap_or(0);
    bag.set("response.duration", Value::Duration(duration));
    let (seconds, subsec) = start.map_or((0, 0), Timestamp::to_parts);
    let end = i128::from(seconds) * 1_000_000_000 + i128::from(subsec) + i128::from(duration);
    let end_seconds = i64::try_from(end.div_euclid(1_000_000_000)).unwrap_or(0);
    let end_nanos = i32::try_from(end.rem_euclid(1_000_000_000)).unwrap_or(0);
    bag.set("response.time", Value::Timestamp(Timestamp::from_parts(end_seconds, end_nanos)));
    bag
}

/// The reports of a TCP entry: the connection's `open`, then its `close` with its bytes.
pub fn tcp_attributes(reporter: &Reporter, entry: &TcpAccessLogEntry) -> [MapBag; 2] {
    let mut bag = MapBag::new();
    let properties = entry.common_properties.clone().unwrap_or_default();
    common(&mut bag, reporter, &properties);
    bag.set("context.protocol", text("tcp"));
    let connection = entry.connection_properties.unwrap_or_default();
    let start = timestamp(properties.start_time.as_ref()).unwrap_or_else(Timestamp::now);
    let mut open = bag.clone();
    open.set("connection.event", text("open"));
    open.set("context.time", Value::Timestamp(start));
    for name in ["connection.received.bytes", "connection.sent.bytes"] {
        open.set(name, bytes(0));
    }
    let mut close = bag;
    close.set("connection.event", text("close"));
    close.set("context.time", Value::Timestamp(Timestamp::now()));
    for (name, count) in [
        ("connection.received.bytes", connection.received_bytes),
        ("connection.received.bytes_total", connection.received_bytes),
        ("connection.sent.bytes", connection.sent_bytes),
        ("connection.sent.bytes_total", connection.sent_bytes),
    ] {
        close.set(name, bytes(count));
    }
    close.set("connection.duration", Value::Duration(nanos(properties.duration.as_ref()).unwrap_or(0)));
    [open, close]
}

#[tonic::async_trait]
impl AccessLogService for MixerService {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, GrpcStatus> {
        let mut stream = request.into_inner();
        let mut reporter: Option<Reporter> = None;
        let mut identified = false;
        while let Some(message) = stream.message().await? {
            if let Some(identifier) = &message.identifier {
                identified = true;
                reporter = Reporter::of(identifier.node.as_ref(), &identifier.log_name);
                if reporter.is_none() {
                    tracing::warn!(
                        log = identifier.log_name,
                        node = identifier.node.as_ref().map(|node| node.id.as_str()).unwrap_or_default(),
                        "access log stream ignored: not a report log of a known pod"
                    );
                }
            }
            if !identified {
                return Err(GrpcStatus::invalid_argument("the stream's first message has no identifier"));
            }
            let Some(reporter) = &reporter else { continue };
            let bags: Vec<MapBag> = match message.log_entries {
                Some(LogEntries::HttpLogs(logs)) => {
                    logs.log_entry.iter().map(|entry| http_attributes(reporter, entry)).collect()
                }
                Some(LogEntries::TcpLogs(logs)) => {
                    logs.log_entry.iter().flat_map(|entry| tcp_attributes(reporter, entry)).collect()
                }
                None => Vec::new(),
            };
            let table = self.table.load_full();
            let dispatcher = Dispatcher { table: &table, metrics: &self.metrics };
            for bag in bags {
                self.metrics.reports.inc();
                if let Err(error) = dispatcher.report(&bag).await {
                    tracing::debug!(%error, "report from an access log");
                }
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::SocketAddress;
    use envoy_types::pb::envoy::data::accesslog::v3::{
        tls_properties, HttpRequestProperties, HttpResponseProperties, TlsProperties,
    };
    use envoy_types::pb::google::protobuf::UInt32Value;

    use super::*;

    fn address(ip: &str, port: u32) -> Option<Address> {
        Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(
                    envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port),
                ),
                ..Default::default()
            })),
        })
    }

    fn node(id: &str) -> Node {
        Node { id: id.to_string(), ..Default::default() }
    }

    #[test]
    fn the_reporter_is_the_node_and_the_log_name() {
        let reporter = Reporter::of(
            Some(&node("sidecar~10.1.0.7~reviews-v3-abc.default~default.svc.cluster.local")),
            "istio-mixer-inbound",
        )
        .expect("reporter");
        assert_eq!(
            reporter,
            Reporter {
                kind: "inbound",
                uid: "kubernetes://reviews-v3-abc.default".into(),
                namespace: "default".into()
            }
        );
        assert!(Reporter::of(Some(&node("sidecar~10.1.0.7~reviews")), "istio-mixer-inbound").is_none());
        assert!(Reporter::of(Some(&node("sidecar~1~a.b~c")), "other").is_none());
    }

    #[test]
    fn an_inbound_http_entry_reads_as_1_4s_report() {
        let reporter = Reporter::of(
            Some(&node("sidecar~10.1.0.7~reviews-v3-abc.default~default.svc.cluster.local")),
            "istio-mixer-inbound",
        )
        .expect("reporter");
        let entry = HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                downstream_remote_address: address("10.1.0.4", 40000),
                downstream_local_address: address("10.1.0.7", 9080),
                tls_properties: Some(TlsProperties {
                    peer_certificate_properties: Some(tls_properties::CertificateProperties {
                        subject_alt_name: vec![tls_properties::certificate_properties::SubjectAltName {
                            san: Some(San::Uri("spiffe://cluster.local/ns/default/sa/bookinfo-productpage".into())),
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                upstream_cluster: "inbound|9080|http|reviews.default.svc.cluster.local".into(),
                start_time: Some(envoy_types::pb::google::protobuf::Timestamp { seconds: 100, nanos: 0 }),
                time_to_last_downstream_tx_byte: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: 12_000_000,
                }),
                response_flags: Some(ResponseFlags {
                    upstream_overflow: true,
                    upstream_retry_limit_exceeded: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request: Some(HttpRequestProperties {
                request_method: RequestMethod::Get as i32,
                authority: "reviews:9080".into(),
                path: "/reviews/0?x=1".into(),
                user_agent: "curl/8".into(),
                request_headers: [("content-type".to_string(), "application/grpc".to_string())].into(),
                request_headers_bytes: 100,
                request_body_bytes: 5,
                ..Default::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(UInt32Value { value: 503 }),
                response_body_bytes: 19,
                response_headers_bytes: 81,
                response_trailers: [("grpc-status".to_string(), "14".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bag = http_attributes(&reporter, &entry);
        let get = |name: &str| bag.get_value(name).cloned();
        assert_eq!(get("context.reporter.kind"), Some(text("inbound")));
        assert_eq!(get("destination.uid"), Some(text("kubernetes://reviews-v3-abc.default")));
        assert_eq!(get("destination.service.host"), Some(text("reviews.default.svc.cluster.local")));
        assert_eq!(get("destination.service.namespace"), Some(text("default")));
        assert_eq!(get("source.principal"), Some(text("cluster.local/ns/default/sa/bookinfo-productpage")));
        assert_eq!(get("connection.mtls"), Some(Value::Bool(true)));
        assert_eq!(get("context.protocol"), Some(text("grpc")));
        assert_eq!(get("request.method"), Some(text("GET")));
        assert_eq!(get("request.url_path"), Some(text("/reviews/0")));
        assert_eq!(get("response.code"), Some(Value::Int64(503)));
        assert_eq!(get("response.total_size"), Some(Value::Int64(100)));
        assert_eq!(get("request.total_size"), Some(Value::Int64(105)));
        assert_eq!(get("response.duration"), Some(Value::Duration(12_000_000)));
        assert_eq!(get("response.grpc_status"), Some(text("14")));
        assert_eq!(get("context.proxy_error_code"), Some(text("UO,URX")));
        assert!(get("source.ip").is_some() && get("destination.port") == Some(Value::Int64(9080)));
    }

    #[test]
    fn an_outbound_tcp_entry_opens_and_closes() {
        let reporter = Reporter::of(
            Some(&node("router~10.1.0.2~istio-ingressgateway-x.istio-system~istio-system.svc.cluster.local")),
            "istio-mixer-outbound",
        )
        .expect("reporter");
        let entry = TcpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                upstream_remote_address: address("10.1.0.9", 9000),
                upstream_cluster: "outbound|9000||tcp-echo.default.svc.cluster.local".into(),
                ..Default::default()
            }),
            connection_properties: Some(envoy_types::pb::envoy::data::accesslog::v3::ConnectionProperties {
                received_bytes: 12,
                sent_bytes: 30,
            }),
        };
        let [open, close] = tcp_attributes(&reporter, &entry);
        assert_eq!(open.get_value("connection.event"), Some(&text("open")));
        assert_eq!(open.get_value("connection.sent.bytes"), Some(&Value::Int64(0)));
        assert_eq!(close.get_value("connection.event"), Some(&text("close")));
        assert_eq!(close.get_value("connection.sent.bytes"), Some(&Value::Int64(30)));
        assert_eq!(close.get_value("source.uid"), Some(&text("kubernetes://istio-ingressgateway-x.istio-system")));
        assert_eq!(close.get_value("destination.service.name"), Some(&text("tcp-echo")));
        assert_eq!(close.get_value("context.proxy_error_code"), Some(&text("-")));
        assert_eq!(close.get_value("connection.mtls"), Some(&Value::Bool(false)));
    }
}
