//! Envoy's external authorization service (`envoy.service.auth.v3.Authorization`), answered by
//! Mixer: how a stock Envoy, which has no `mixer` filter, enforces the same policy. Each
//! `CheckRequest` (the peer, the request's headers, path and method, and the route's context
//! extensions that Pilot filled with the `mixer_attributes` and bound quota specs) becomes 1.4's
//! attribute bag; the same `Check` runs, quotas included; the answer is 1.4's status and body
//! (`PERMISSION_DENIED:handler.ns:message` as 403, `RESOURCE_EXHAUSTED:Quota is exhausted for:
//! requestcountquota` as 429), and an allowed request gets the rules' header operations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{address, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, check_response, AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse,
    OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc;
use istio_api::pb::istio::mixer::v1::config::client::{network_fail_policy::FailPolicy, ServiceConfig};
use istio_attribute::ext_authz::{decode_service_config, SERVICE_CONFIG_EXTENSION, SERVICE_CONFIG_METADATA};
use istio_attribute::quota_spec::requirements;
use istio_attribute::value::ip_to_16_bytes;
use istio_attribute::wire::compressed::from_attributes;
use istio_attribute::{MapBag, Timestamp, Value};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::api::MixerService;
use crate::dispatch::{HeaderOp, QuotaRequest};
use crate::status::{self, http_status, Status};

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

/// A SPIFFE URI as 1.4's principals wrote it (`cluster.local/ns/default/sa/x`).
fn principal(uri: &str) -> String {
    uri.strip_prefix("spiffe://").unwrap_or(uri).to_string()
}

fn socket(peer: Option<&attribute_context::Peer>) -> Option<(IpAddr, u32)> {
    let address = peer?.address.as_ref()?.address.as_ref()?;
    let address::Address::SocketAddress(socket) = address else { return None };
    let port = match socket.port_specifier {
        Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port)) => port,
        _ => 0,
    };
    Some((socket.address.parse().ok()?, port))
}

/// 1.4's attributes for what Envoy tells of a request (or a connection, without `request`).
pub fn attributes(context: &AttributeContext, service: &ServiceConfig) -> MapBag {
    let mut bag = MapBag::new();
    bag.set("context.reporter.kind", text("inbound"));
    // A gateway's (or client's) check: the peer is the caller, but the destination is the
    // route's service, not this proxy; the source's address comes from its identity, as 1.4's
    // outbound checks sent only `origin.ip`.
    let outbound = service
        .mixer_attributes
        .as_ref()
        .and_then(|attributes| attributes.attributes.get("context.reporter.kind"))
        .and_then(|kind| kind.value.as_ref())
        .is_some_and(|kind| {
            matches!(kind, istio_api::pb::istio::mixer::v1::attributes::attribute_value::Value::StringValue(kind) if kind == "outbound")
        });
    if let Some((ip, _)) = socket(context.source.as_ref()) {
        bag.set("origin.ip", Value::Bytes(Cow::Owned(ip_to_16_bytes(ip).to_vec())));
    }
    for (peer, side) in [(context.source.as_ref(), "source"), (context.destination.as_ref(), "destination")] {
        let addressed = !outbound || (side == "source" && context.request.is_none());
        if let Some((ip, port)) = socket(peer).filter(|_| addressed) {
            bag.set(format!("{side}.ip"), Value::Bytes(Cow::Owned(ip_to_16_bytes(ip).to_vec())));
            bag.set(format!("{side}.port"), Value::Int64(i64::from(port)));
        }
        if let Some(peer) = peer.filter(|peer| !peer.principal.is_empty()) {
            bag.set(format!("{side}.principal"), text(&principal(&peer.principal)));
            if side == "source" {
                bag.set("source.user", text(&principal(&peer.principal)));
            }
        }
    }
    let mutual_tls = context.source.as_ref().is_some_and(|peer| !peer.principal.is_empty());
    bag.set("connection.mtls", Value::Bool(mutual_tls));
    if let Some(sni) = context.tls_session.as_ref().map(|tls| tls.sni.clone()).filter(|sni| !sni.is_empty()) {
        bag.set("connection.requested_server_name", text(&sni));
    }
    match context.request.as_ref().and_then(|request| request.http.as_ref().map(|http| (request, http))) {
        Some((request, http)) => {
            let mut headers: HashMap<String, String> = http
                .headers
                .iter()
                .filter(|(name, _)| name.as_str() != "x-istio-attributes")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let header = |name: &str| headers.get(name).cloned();
            let grpc = header("content-type").is_some_and(|content_type| content_type.starts_with("application/grpc"));
            bag.set("context.protocol", text(if grpc { "grpc" } else { "http" }));
            bag.set("api.protocol", text(if grpc { "grpc" } else { "http" }));
            bag.set("request.method", text(&http.method));
            bag.set("request.host", text(&http.host));
            bag.set("request.scheme", text(if http.scheme.is_empty() { "http" } else { &http.scheme }));
            istio_attribute::request::set_path(&mut bag, &http.path);
            if let Some(id) = header("x-request-id").or_else(|| (!http.id.is_empty()).then(|| http.id.clone())) {
                bag.set("request.id", text(&id));
            }
            if let Some(agent) = header("user-agent") {
                bag.set("request.useragent", text(&agent));
            }
            if let Some(referer) = header("referer") {
                bag.set("request.referer", text(&referer));
            }
            if http.size >= 0 {
                bag.set("request.size", Value::Int64(http.size));
            }
            if let Some(time) = &request.time {
                bag.set("request.time", Value::Timestamp(Timestamp::from_parts(time.seconds, time.nanos)));
            }
            headers.entry(":authority".to_string()).or_insert_with(|| http.host.clone());
            headers.entry(":path".to_string()).or_insert_with(|| http.path.clone());
            headers.entry(":method".to_string()).or_insert_with(|| http.method.clone());
            bag.set("request.headers", Value::StringMap(Cow::Owned(headers)));
        }
        None => bag.set("context.protocol", text("tcp")),
    }
    bag.set("context.time", Value::Timestamp(Timestamp::now()));
    // What Pilot said of the route wins over what was read from the request.
    if let Some(configured) = &service.mixer_attributes {
        bag.merge(&from_attributes(configured));
    }
    bag
}

fn rpc_status(code: i32, message: &str) -> rpc::Status {
    rpc::Status { code, message: message.to_string(), details: Vec::new() }
}

fn header(name: &str, value: &str, append: bool) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: name.to_string(), value: value.to_string(), ..Default::default() }),
        append: Some(BoolValue { value: append }),
        ..Default::default()
    }
}

fn denied(status: &Status, http: bool) -> CheckResponse {
    let http_response = http.then(|| {
        check_response::HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(http_status(status.code)) }),
            headers: vec![header("content-type", "text/plain", false)],
            body: status.body(),
        })
    });
    CheckResponse { status: Some(rpc_status(status.code, &status.message)), http_response, ..Default::default() }
}

fn allowed(request_ops: &[HeaderOp], response_ops: &[HeaderOp], http: bool) -> CheckResponse {
    const REMOVE: i32 = 1;
    const APPEND: i32 = 2;
    let http_response = http.then(|| {
        let mut ok = OkHttpResponse::default();
        for op in request_ops {
            match op.operation {
                REMOVE => ok.headers_to_remove.push(op.name.clone()),
                operation => ok.headers.push(header(&op.name, &op.value, operation == APPEND)),
            }
        }
        for op in response_ops.iter().filter(|op| op.operation != REMOVE) {
            ok.response_headers_to_add.push(header(&op.name, &op.value, op.operation == APPEND));
        }
        check_response::HttpResponse::OkResponse(ok)
    });
    CheckResponse { status: Some(rpc_status(status::OK, "")), http_response, ..Default::default() }
}

#[tonic::async_trait]
impl Authorization for MixerService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, GrpcStatus> {
        // A network filter's check carries the ServiceConfig as call metadata instead.
        let from_metadata =
            request.metadata().get(SERVICE_CONFIG_METADATA).and_then(|value| value.to_str().ok()).map(str::to_string);
        let context = request.into_inner().attributes.unwrap_or_default();
        let http = context.request.as_ref().is_some_and(|request| request.http.is_some());
        let service = match context.context_extensions.get(SERVICE_CONFIG_EXTENSION).or(from_metadata.as_ref()) {
            Some(text) => {
                decode_service_config(text).map_err(|error| GrpcStatus::invalid_argument(error.to_string()))?
            }
            None => ServiceConfig::default(),
        };
        let fail_open =
            service.network_fail_policy.as_ref().is_some_and(|policy| policy.policy == FailPolicy::FailOpen as i32);
        if service.disable_check_calls {
            return Ok(Response::new(allowed(&[], &[], http)));
        }
        let bag = attributes(&context, &service);
        let charged = requirements(&service.quota_spec, &bag);
        let quotas: Vec<QuotaRequest> = charged
            .iter()
            .map(|requirement| QuotaRequest {
                name: requirement.quota.clone(),
                amount: requirement.charge,
                best_effort: false,
            })
            .collect();
        let deduplication_id = uuid::Uuid::new_v4().to_string();
        let outcome = match self.check_bag(&bag, &quotas, &deduplication_id).await {
            Ok(outcome) => outcome,
            // Mixer could not decide: the proxy's fail policy decides, as 1.4's client did.
            Err(error) if fail_open => {
                tracing::warn!(%error, "check failed; allowed by the fail-open policy");
                return Ok(Response::new(allowed(&[], &[], http)));
            }
            Err(error) => return Ok(Response::new(denied(&Status::new(status::INTERNAL, error.message()), http))),
        };
        // An INTERNAL answer is an allow when failing open, as 1.4's client took it.
        let allowed_anyway = fail_open && outcome.status.code == status::INTERNAL;
        if !(outcome.status.is_ok() || allowed_anyway) {
            return Ok(Response::new(denied(&outcome.status, http)));
        }
        // A quota is exhausted when less than the charge was granted.
        let exhausted: Vec<&str> = charged
            .iter()
            .filter(|requirement| {
                outcome
                    .quotas
                    .iter()
                    .find(|(name, _)| *name == requirement.quota)
                    .is_some_and(|(_, quota)| quota.result.amount < requirement.charge)
            })
            .map(|requirement| requirement.quota.as_str())
            .collect();
        if !exhausted.is_empty() {
            let status =
                Status::new(status::RESOURCE_EXHAUSTED, format!("Quota is exhausted for: {}", exhausted.join(",")));
            return Ok(Response::new(denied(&status, http)));
        }
        let (request_ops, response_ops) = outcome
            .directive
            .as_ref()
            .map_or((&[][..], &[][..]), |directive| (&directive.request[..], &directive.response[..]));
        Ok(Response::new(allowed(request_ops, response_ops, http)))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{socket_address::PortSpecifier, Address, SocketAddress};
    use istio_api::pb::istio::mixer::v1::attributes::{attribute_value, AttributeValue};
    use istio_api::pb::istio::mixer::v1::Attributes;

    use super::*;

    fn peer(ip: &str, port: u32, principal: &str) -> attribute_context::Peer {
        attribute_context::Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            principal: principal.into(),
            ..Default::default()
        }
    }

    #[test]
    fn maps_a_request_to_1_4s_vocabulary() {
        let http = attribute_context::HttpRequest {
            method: "GET".into(),
            path: "/productpage?u=normal".into(),
            host: "productpage:9080".into(),
            headers: [("user-agent".into(), "curl/8".into()), ("x-istio-attributes".into(), "xx".into())].into(),
            size: -1,
            ..Default::default()
        };
        let context = AttributeContext {
            source: Some(peer("10.1.0.9", 41000, "spiffe://cluster.local/ns/default/sa/bookinfo-reviews")),
            destination: Some(peer("10.1.0.4", 9080, "")),
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        };
        let configured = ServiceConfig {
            mixer_attributes: Some(Attributes {
                attributes: [(
                    "destination.service.host".to_string(),
                    AttributeValue {
                        value: Some(attribute_value::Value::StringValue(
                            "productpage.default.svc.cluster.local".into(),
                        )),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        };
        let bag = attributes(&context, &configured);
        let string = |name: &str| bag.get_value(name).and_then(|v| v.as_str()).map(str::to_string);
        assert_eq!(string("source.principal").as_deref(), Some("cluster.local/ns/default/sa/bookinfo-reviews"));
        assert_eq!(string("request.url_path").as_deref(), Some("/productpage"));
        assert_eq!(string("request.useragent").as_deref(), Some("curl/8"));
        assert_eq!(string("context.protocol").as_deref(), Some("http"));
        assert_eq!(string("destination.service.host").as_deref(), Some("productpage.default.svc.cluster.local"));
        assert_eq!(bag.get_value("destination.port"), Some(&Value::Int64(9080)));
        assert_eq!(bag.get_value("connection.mtls"), Some(&Value::Bool(true)));
        assert!(
            matches!(bag.get_value("request.headers"), Some(Value::StringMap(h)) if !h.contains_key("x-istio-attributes") && h[":path"] == "/productpage?u=normal")
        );
        assert!(matches!(bag.get_value("request.query_params"), Some(Value::StringMap(q)) if q["u"] == "normal"));
        assert_eq!(bag.get_value("request.size"), None);
    }

    #[test]
    fn a_gateways_check_names_the_route_not_the_gateway_as_destination() {
        let http =
            attribute_context::HttpRequest { method: "GET".into(), path: "/productpage".into(), ..Default::default() };
        let context = AttributeContext {
            source: Some(peer("10.44.0.1", 41000, "")),
            destination: Some(peer("10.44.0.30", 8080, "")),
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        };
        let text = |value: &str| AttributeValue { value: Some(attribute_value::Value::StringValue(value.into())) };
        let configured = ServiceConfig {
            mixer_attributes: Some(Attributes {
                attributes: [
                    ("context.reporter.kind".to_string(), text("outbound")),
                    ("source.uid".to_string(), text("kubernetes://istio-ingressgateway-1.istio-system")),
                ]
                .into(),
            }),
            ..Default::default()
        };
        let bag = attributes(&context, &configured);
        assert_eq!(bag.get_value("source.ip"), None, "the gateway's own address comes from its uid");
        assert_eq!(bag.get_value("destination.ip"), None);
        assert_eq!(bag.get_value("destination.port"), None);
        assert!(bag.get_value("origin.ip").is_some());
        assert_eq!(bag.get_value("context.reporter.kind").and_then(|v| v.as_str()), Some("outbound"));
    }

    #[test]
    fn denials_carry_1_4s_status_and_body() {
        let response =
            denied(&Status::new(status::PERMISSION_DENIED, "denyreviewsv3handler.default:Not allowed"), true);
        let Some(check_response::HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("denied")
        };
        assert_eq!(denied.status.map(|s| s.code), Some(403));
        assert_eq!(denied.body, "PERMISSION_DENIED:denyreviewsv3handler.default:Not allowed");
        assert_eq!(response.status.map(|s| s.code), Some(status::PERMISSION_DENIED));
    }
}
