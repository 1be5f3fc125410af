//! Istio 1.4's mixer plugin: Mixer policy checks and reports on a sidecar's inbound ports.
//!
//! When the mesh names a `mixerCheckServer` and policy checks are on, every inbound port asks
//! Mixer before letting a request (or a connection) through, as 1.4's server-side proxies did;
//! when it names a `mixerReportServer`, requests and connections are reported after they end
//! (HTTP unless `disableMixerHttpReports`):
//! - a proxy that announces the `mixer` filter (the built-in data plane) gets it, with 1.4's
//!   `HttpClientConfig` / `TcpClientConfig`: the check cluster, the fail policy, and the
//!   `mixer_attributes` (`destination.uid`, `destination.namespace`, `context.reporter.kind`,
//!   …); each inbound route carries a `ServiceConfig` with the service's
//!   `destination.service.*` attributes and the `QuotaSpec`s bound to it;
//! - any other proxy (a stock Envoy) gets Envoy's `ext_authz`, a gRPC call to Mixer's check
//!   cluster, with the same `ServiceConfig` as the route's context extension, so Mixer runs the
//!   same check and quotas. Policy is never skipped for a proxy that cannot run the filter.

use envoy_types::pb::envoy::config::core::v3::{grpc_service, ApiVersion, GrpcService, HeaderValue};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as http_ext_authz;
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3 as network_ext_authz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::Any;
use istio_api::pb::istio::mixer::v1::attributes::{attribute_value, AttributeValue};
use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_api::pb::istio::mixer::v1::Attributes;
use istio_xds::ClusterName;
use prost::Message;

use super::any;
use crate::model::{PushContext, Service};
use crate::node::{Proxy, MIXER_FILTER};

/// Envoy's filter names.
pub(crate) const EXT_AUTHZ_HTTP: &str = "envoy.filters.http.ext_authz";
pub(super) const EXT_AUTHZ_NETWORK: &str = "envoy.filters.network.ext_authz";
/// How long a proxy waits for Mixer (1.4's client used 5 s).
const CHECK_TIMEOUT_SECONDS: i64 = 5;

/// 1.4's retry defaults for policy checks.
const DEFAULT_BASE_RETRY_WAIT_MS: i32 = 80;
const DEFAULT_MAX_RETRY_WAIT_MS: i32 = 1000;

pub(super) fn string(value: &str) -> AttributeValue {
    AttributeValue { value: Some(attribute_value::Value::StringValue(value.to_string())) }
}

/// `outbound|PORT||HOST` for a `HOST:PORT` server address; `None` when there is none.
pub(super) fn upstream_cluster(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u32 = port.parse().ok()?;
    (!host.is_empty()).then(|| ClusterName::outbound(port, "", host).to_string())
}

/// Whether inbound checks are off for this proxy: the mesh's setting, overridden by the
/// proxy's `POLICY_CHECK`.
fn checks_disabled(push: &PushContext, proxy: &Proxy) -> bool {
    match proxy.policy_check.mode.as_str() {
        "disable" => true,
        "enable" | "allow-on-error" => false,
        _ => push.mesh.mixer.disable_policy_checks,
    }
}

pub(super) fn fail_open(push: &PushContext, proxy: &Proxy) -> bool {
    match proxy.policy_check.mode.as_str() {
        "enable" => false,
        "allow-on-error" | "disable" => true,
        _ => push.mesh.mixer.policy_check_fail_open,
    }
}

/// Where inbound checks go, when this proxy checks at all.
fn check_cluster(push: &PushContext, proxy: &Proxy) -> Option<String> {
    if checks_disabled(push, proxy) {
        return None;
    }
    upstream_cluster(&push.mesh.mixer.check_server)
}

/// Where reports go, when the mesh names a `mixerReportServer`.
pub(crate) fn report_cluster(push: &PushContext) -> Option<String> {
    upstream_cluster(&push.mesh.mixer.report_server)
}

/// Whether HTTP requests are not reported: no report server, or `disableMixerHttpReports`.
pub(super) fn http_reports_disabled(push: &PushContext) -> bool {
    report_cluster(push).is_none() || push.mesh.mixer.disable_http_reports
}

fn millis(ms: i32) -> prost_types::Duration {
    prost_types::Duration { seconds: i64::from(ms / 1000), nanos: (ms % 1000) * 1_000_000 }
}

fn go_duration(text: &str, default_ms: i32) -> prost_types::Duration {
    istio_duration::parse(text).ok().map_or_else(
        || millis(default_ms),
        |d| prost_types::Duration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        },
    )
}

pub(super) fn network_fail_policy(push: &PushContext, proxy: &Proxy) -> mcc::NetworkFailPolicy {
    let policy = if fail_open(push, proxy) {
        mcc::network_fail_policy::FailPolicy::FailOpen
    } else {
        mcc::network_fail_policy::FailPolicy::FailClose
    };
    mcc::NetworkFailPolicy {
        policy: policy as i32,
        max_retry: proxy.policy_check.retries.parse().unwrap_or(0),
        base_retry_wait: Some(go_duration(&proxy.policy_check.base_retry_wait, DEFAULT_BASE_RETRY_WAIT_MS)),
        max_retry_wait: Some(go_duration(&proxy.policy_check.max_retry_wait, DEFAULT_MAX_RETRY_WAIT_MS)),
    }
}

pub(super) fn transport(push: &PushContext, proxy: &Proxy) -> mcc::TransportConfig {
    let mixer = &push.mesh.mixer;
    mcc::TransportConfig {
        check_cluster: upstream_cluster(&mixer.check_server).unwrap_or_default(),
        report_cluster: upstream_cluster(&mixer.report_server).unwrap_or_default(),
        network_fail_policy: Some(network_fail_policy(push, proxy)),
        report_batch_max_entries: mixer.report_batch_max_entries,
        report_batch_max_time: mixer.report_batch_max_time,
        ..Default::default()
    }
}

/// The proxy's uid as 1.4 wrote it: `kubernetes://POD.NAMESPACE`.
pub(super) fn uid(proxy: &Proxy) -> String {
    format!("kubernetes://{}", proxy.workload)
}

/// What a server-side proxy says of itself in every check.
fn inbound_attributes(proxy: &Proxy, listen_port: u32) -> Attributes {
    let mut attributes = std::collections::BTreeMap::from([
        ("destination.uid".to_string(), string(&uid(proxy))),
        ("destination.namespace".to_string(), string(&proxy.namespace)),
        ("context.reporter.uid".to_string(), string(&uid(proxy))),
        ("context.reporter.kind".to_string(), string("inbound")),
        (
            "destination.port".to_string(),
            AttributeValue { value: Some(attribute_value::Value::Int64Value(i64::from(listen_port))) },
        ),
    ]);
    if let Some(ip) = proxy.ips.first().and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        let bytes = match ip {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        attributes.insert(
            "destination.ip".to_string(),
            AttributeValue { value: Some(attribute_value::Value::BytesValue(bytes)) },
        );
    }
    if !proxy.istio_version.is_empty() {
        attributes.insert("context.proxy_version".to_string(), string(&proxy.istio_version));
    }
    Attributes { attributes }
}

/// 1.4's `destination.service.*` attributes of a service.
pub(super) fn service_attributes(service: &Service) -> Vec<(String, AttributeValue)> {
    let mut attributes = vec![("destination.service.host".to_string(), string(&service.hostname))];
    let name = service.hostname.split('.').next().unwrap_or_default();
    if !name.is_empty() {
        attributes.push(("destination.service.name".to_string(), string(name)));
    }
    if !service.namespace.is_empty() {
        attributes.push(("destination.service.namespace".to_string(), string(&service.namespace)));
        attributes.push((
            "destination.service.uid".to_string(),
            string(&format!("istio://{}/services/{name}", service.namespace)),
        ));
    }
    attributes
}

/// A binding's service as a host name, as 1.4's `ResolveHostname` built it: `service` as
/// written, else `name.namespace` with the binding's namespace by default and `.DOMAIN` (or
/// `.svc.` and the mesh's domain).
fn bound_host(target: &mcc::IstioService, binding_namespace: &str, mesh_domain: &str) -> String {
    if !target.service.is_empty() {
        return target.service.clone();
    }
    let namespace = if target.namespace.is_empty() { binding_namespace } else { &target.namespace };
    let mut host = format!("{}.{namespace}", target.name);
    if !target.domain.is_empty() {
        host = format!("{host}.{}", target.domain);
    } else if !mesh_domain.is_empty() {
        host = format!("{host}.svc.{mesh_domain}");
    }
    host
}

/// 1.4's wildcard services: `*`, or `*.NAMESPACE.*` (the host contains `.NAMESPACE.`).
fn wildcard_matches(host: &str, pattern: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*').and_then(|rest| rest.strip_suffix('*')) {
        Some(middle) => host.contains(middle),
        None => {
            tracing::warn!("Wildcard pattern '{pattern}' is not allowed. Only '*' or '*.<ns>.*' is allowed.");
            false
        }
    }
}

/// The `QuotaSpec`s bound to a service (1.4's `QuotaSpecByDestination`), in name order.
fn quota_specs(push: &PushContext, service: &Service) -> Vec<mcc::QuotaSpec> {
    let mut specs = Vec::new();
    for binding in &push.quota_spec_bindings {
        let bound = binding.spec.services.iter().any(|target| {
            wildcard_matches(&service.hostname, &target.service)
                || bound_host(target, &binding.namespace, &push.mesh.domain_suffix) == service.hostname
        });
        if !bound {
            continue;
        }
        for reference in &binding.spec.quota_specs {
            let namespace = if reference.namespace.is_empty() { &binding.namespace } else { &reference.namespace };
            match push.quota_specs.iter().find(|spec| spec.name == reference.name && &spec.namespace == namespace) {
                Some(spec) => specs.push((format!("{}/{}", spec.namespace, spec.name), spec.spec.clone())),
                None => tracing::warn!(
                    "QuotaSpecBinding {}/{}: QuotaSpec {namespace}/{} does not exist",
                    binding.namespace,
                    binding.name,
                    reference.name
                ),
            }
        }
    }
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    specs.dedup_by(|a, b| a.0 == b.0);
    specs.into_iter().map(|(_, spec)| spec).collect()
}

pub(super) fn typed(type_name: &str, message: &impl Message) -> Any {
    Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec() }
}

/// The route's `ServiceConfig`: the service's attributes and quota specs.
fn service_config(
    push: &PushContext,
    proxy: &Proxy,
    service: Option<&Service>,
    extra: Option<&Attributes>,
) -> mcc::ServiceConfig {
    let mut attributes = extra.cloned().unwrap_or_default();
    if let Some(service) = service {
        attributes.attributes.extend(service_attributes(service));
    }
    mcc::ServiceConfig {
        disable_check_calls: checks_disabled(push, proxy),
        disable_report_calls: http_reports_disabled(push),
        mixer_attributes: Some(attributes),
        quota_spec: service.map(|service| quota_specs(push, service)).unwrap_or_default(),
        network_fail_policy: Some(network_fail_policy(push, proxy)),
        ..Default::default()
    }
}

/// A gRPC service on a cluster. The authority is `mixer`, as 1.4's client sent it: Envoy's
/// default, the cluster name, has `|` in it, which HTTP/2 servers may refuse.
pub(super) fn grpc_to(cluster: &str) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(grpc_service::EnvoyGrpc {
            cluster_name: cluster.to_string(),
            authority: "mixer".to_string(),
            ..Default::default()
        })),
        timeout: Some(super::seconds(CHECK_TIMEOUT_SECONDS)),
        ..Default::default()
    }
}

/// The HTTP filter of an inbound port, and what its route carries for it, when this proxy checks.
pub(crate) struct InboundHttpPolicy {
    pub filter: HttpFilter,
    /// `typed_per_filter_config` entry for the port's route.
    pub route_config: (String, Any),
}

/// Mixer's part of an inbound HTTP port: the `mixer` filter, which checks and reports, for the
/// built-in data plane; Envoy's `ext_authz` for a stock Envoy that checks (its reports are
/// access logs, [`super::mixer_telemetry`]).
pub(crate) fn inbound_http(
    push: &PushContext,
    proxy: &Proxy,
    service: Option<&Service>,
    listen_port: u32,
) -> Option<InboundHttpPolicy> {
    let listener_attributes = inbound_attributes(proxy, listen_port);
    if proxy.mixer_filter {
        if check_cluster(push, proxy).is_none() && http_reports_disabled(push) {
            return None;
        }
        let config = mcc::HttpClientConfig {
            transport: Some(transport(push, proxy)),
            service_configs: [(
                "default".to_string(),
                mcc::ServiceConfig {
                    disable_check_calls: checks_disabled(push, proxy),
                    disable_report_calls: http_reports_disabled(push),
                    ..Default::default()
                },
            )]
            .into(),
            default_destination_service: "default".to_string(),
            mixer_attributes: Some(listener_attributes),
            ..Default::default()
        };
        let route = service_config(push, proxy, service, None);
        return Some(InboundHttpPolicy {
            filter: mixer_http_filter(&config),
            route_config: (MIXER_FILTER.to_string(), service_config_any(&route)),
        });
    }
    let cluster = check_cluster(push, proxy)?;
    let route = service_config(push, proxy, service, Some(&listener_attributes));
    Some(InboundHttpPolicy {
        filter: ext_authz_http_filter(push, proxy, &cluster),
        route_config: (EXT_AUTHZ_HTTP.to_string(), ext_authz_route(&route)),
    })
}

/// The `mixer` HTTP filter with its config.
pub(super) fn mixer_http_filter(config: &mcc::HttpClientConfig) -> HttpFilter {
    HttpFilter {
        name: MIXER_FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(typed(
            "istio.mixer.v1.config.client.HttpClientConfig",
            config,
        ))),
        ..Default::default()
    }
}

/// A route's (or virtual host's) `mixer` filter config.
pub(super) fn service_config_any(config: &mcc::ServiceConfig) -> Any {
    typed("istio.mixer.v1.config.client.ServiceConfig", config)
}

/// Envoy's HTTP `ext_authz` filter asking Mixer's check cluster.
pub(super) fn ext_authz_http_filter(push: &PushContext, proxy: &Proxy, cluster: &str) -> HttpFilter {
    let ext_authz = http_ext_authz::ExtAuthz {
        services: Some(http_ext_authz::ext_authz::Services::GrpcService(grpc_to(cluster))),
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: fail_open(push, proxy),
        // Mixer unreachable and failing closed: 1.4's proxies answered 503 UNAVAILABLE.
        status_on_error: Some(HttpStatus { code: StatusCode::ServiceUnavailable as i32 }),
        ..Default::default()
    };
    HttpFilter {
        name: EXT_AUTHZ_HTTP.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(ext_authz))),
        ..Default::default()
    }
}

/// A route's (or virtual host's) `ext_authz` config: the `ServiceConfig` as context extension.
pub(super) fn ext_authz_route(config: &mcc::ServiceConfig) -> Any {
    let per_route = http_ext_authz::ExtAuthzPerRoute {
        r#override: Some(http_ext_authz::ext_authz_per_route::Override::CheckSettings(http_ext_authz::CheckSettings {
            context_extensions: [(
                istio_attribute::ext_authz::SERVICE_CONFIG_EXTENSION.to_string(),
                istio_attribute::ext_authz::encode_service_config(config),
            )]
            .into(),
            ..Default::default()
        })),
    };
    any(per_route)
}

/// The `mixer` network filter with its config.
pub(super) fn mixer_tcp_filter(config: &mcc::TcpClientConfig) -> Filter {
    Filter {
        name: MIXER_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(typed(
            "istio.mixer.v1.config.client.TcpClientConfig",
            config,
        ))),
    }
}

/// Envoy's network `ext_authz` filter asking Mixer's check cluster. What the `mixer` filter's
/// config would say (`attributes`: whose check it is, and for which service) goes with every
/// call as gRPC metadata, and the TLS session (the SNI) in the request, as the `mixer` filter
/// reported `connection.requested_server_name`.
pub(super) fn ext_authz_tcp_filter(
    push: &PushContext,
    proxy: &Proxy,
    cluster: &str,
    stat_prefix: &str,
    attributes: Attributes,
) -> Filter {
    let service_config = mcc::ServiceConfig {
        mixer_attributes: Some(attributes),
        network_fail_policy: Some(network_fail_policy(push, proxy)),
        ..Default::default()
    };
    let mut grpc_service = grpc_to(cluster);
    grpc_service.initial_metadata.push(HeaderValue {
        key: istio_attribute::ext_authz::SERVICE_CONFIG_METADATA.to_string(),
        value: istio_attribute::ext_authz::encode_service_config(&service_config),
        ..Default::default()
    });
    let ext_authz = network_ext_authz::ExtAuthz {
        stat_prefix: stat_prefix.to_string(),
        grpc_service: Some(grpc_service),
        failure_mode_allow: fail_open(push, proxy),
        transport_api_version: ApiVersion::V3 as i32,
        include_tls_session: true,
        ..Default::default()
    };
    Filter { name: EXT_AUTHZ_NETWORK.to_string(), config_type: Some(filter::ConfigType::TypedConfig(any(ext_authz))) }
}

/// Mixer's network filter for an inbound TCP port, to go before the TCP proxy: the `mixer`
/// filter (checks and connection reports) for the built-in data plane, `ext_authz` for a stock
/// Envoy that checks.
pub(crate) fn inbound_tcp(
    push: &PushContext,
    proxy: &Proxy,
    service: Option<&Service>,
    listen_port: u32,
) -> Option<Filter> {
    let check = check_cluster(push, proxy);
    let mut attributes = inbound_attributes(proxy, listen_port);
    if let Some(service) = service {
        attributes.attributes.extend(service_attributes(service));
    }
    if proxy.mixer_filter {
        if check.is_none() && report_cluster(push).is_none() {
            return None;
        }
        let config = mcc::TcpClientConfig {
            transport: Some(transport(push, proxy)),
            mixer_attributes: Some(attributes),
            disable_check_calls: check.is_none(),
            disable_report_calls: report_cluster(push).is_none(),
            ..Default::default()
        };
        return Some(mixer_tcp_filter(&config));
    }
    Some(ext_authz_tcp_filter(push, proxy, &check?, &format!("inbound_{listen_port}"), attributes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MixerSettings, Named};
    use crate::testing::{push, reviews, sidecar};

    fn mesh_with_checks(push: &mut PushContext, fail_open: bool) {
        push.mesh.mixer = MixerSettings {
            check_server: "istio-policy.istio-system.svc.cluster.local:9091".into(),
            report_server: "istio-telemetry.istio-system.svc.cluster.local:9091".into(),
            policy_check_fail_open: fail_open,
            ..Default::default()
        };
    }

    fn decode<T: Message + Default>(any: &Any) -> T {
        T::decode(any.value.as_slice()).expect("decodes")
    }

    fn binding(yaml: serde_json::Value) -> Named<mcc::QuotaSpecBinding> {
        Named {
            name: "request-count".into(),
            namespace: "istio-system".into(),
            spec: istio_api::json::decode("istio.mixer.v1.config.client.QuotaSpecBinding", &yaml).expect("binding"),
        }
    }

    #[test]
    fn bindings_name_services_as_1_4_did() {
        let service = |name: &str, namespace: &str, domain: &str, fqdn: &str| mcc::IstioService {
            name: name.into(),
            namespace: namespace.into(),
            domain: domain.into(),
            service: fqdn.into(),
            ..Default::default()
        };
        assert_eq!(
            bound_host(&service("productpage", "default", "", ""), "istio-system", "cluster.local"),
            "productpage.default.svc.cluster.local"
        );
        assert_eq!(
            bound_host(&service("productpage", "", "", ""), "default", "cluster.local"),
            "productpage.default.svc.cluster.local"
        );
        assert_eq!(
            bound_host(&service("productpage", "default", "svc.cluster.local", ""), "x", "cluster.local"),
            "productpage.default.svc.cluster.local"
        );
        assert!(wildcard_matches("reviews.default.svc.cluster.local", "*"));
        assert!(wildcard_matches("reviews.default.svc.cluster.local", "*.default.*"));
        assert!(!wildcard_matches("reviews.bookinfo.svc.cluster.local", "*.default.*"));
        assert!(!wildcard_matches("reviews.default.svc.cluster.local", "reviews*"));
    }

    #[test]
    fn no_check_server_or_disabled_checks_mean_no_filter() {
        let mut push = push(reviews(), vec![]);
        let proxy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
        assert!(inbound_http(&push, &proxy, None, 9080).is_none());
        mesh_with_checks(&mut push, false);
        push.mesh.mixer.disable_policy_checks = true;
        assert!(inbound_http(&push, &proxy, None, 9080).is_none());
        let mut enabled = proxy.clone();
        enabled.policy_check.mode = "enable".into();
        assert!(inbound_http(&push, &enabled, None, 9080).is_some(), "POLICY_CHECK=enable overrides the mesh");
    }

    #[test]
    fn the_builtin_plane_reports_without_checks_unless_http_reports_are_off() {
        let mut push = push(reviews(), vec![]);
        mesh_with_checks(&mut push, false);
        push.mesh.mixer.disable_policy_checks = true;
        let mut proxy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
        proxy.mixer_filter = true;
        let policy = inbound_http(&push, &proxy, None, 9080).expect("reports");
        let Some(http_filter::ConfigType::TypedConfig(config)) = &policy.filter.config_type else { panic!("typed") };
        let config: mcc::HttpClientConfig = decode(config);
        let default = &config.service_configs["default"];
        assert!(default.disable_check_calls && !default.disable_report_calls);
        assert_eq!(
            config.transport.expect("transport").report_cluster,
            "outbound|9091||istio-telemetry.istio-system.svc.cluster.local"
        );
        let route: mcc::ServiceConfig = decode(&policy.route_config.1);
        assert!(route.disable_check_calls && !route.disable_report_calls);
        let tcp = inbound_tcp(&push, &proxy, None, 9080).expect("tcp reports");
        let Some(filter::ConfigType::TypedConfig(config)) = &tcp.config_type else { panic!("typed") };
        let config: mcc::TcpClientConfig = decode(config);
        assert!(config.disable_check_calls && !config.disable_report_calls);
        push.mesh.mixer.disable_http_reports = true;
        assert!(inbound_http(&push, &proxy, None, 9080).is_none(), "neither checks nor HTTP reports");
        assert!(inbound_tcp(&push, &proxy, None, 9080).is_some(), "TCP reports stay");
    }

    #[test]
    fn announcing_proxies_get_1_4s_mixer_filter_and_service_config() {
        let mut push = push(reviews(), vec![]);
        mesh_with_checks(&mut push, false);
        push.quota_specs.push(Named {
            name: "request-count".into(),
            namespace: "istio-system".into(),
            spec: istio_api::json::decode(
                "istio.mixer.v1.config.client.QuotaSpec",
                &serde_json::json!({"rules": [{"quotas": [{"charge": 1, "quota": "requestcountquota"}]}]}),
            )
            .expect("spec"),
        });
        push.quota_spec_bindings.push(binding(serde_json::json!({
            "quotaSpecs": [{"name": "request-count", "namespace": "istio-system"}],
            "services": [{"name": "reviews", "namespace": "default"}],
        })));
        let mut proxy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
        proxy.mixer_filter = true;
        let service = push.services.get("reviews.default.svc.cluster.local").cloned();
        let policy = inbound_http(&push, &proxy, service.as_deref(), 9080).expect("checks");
        assert_eq!(policy.filter.name, "mixer");
        let Some(http_filter::ConfigType::TypedConfig(config)) = &policy.filter.config_type else { panic!("typed") };
        assert_eq!(config.type_url, "type.googleapis.com/istio.mixer.v1.config.client.HttpClientConfig");
        let config: mcc::HttpClientConfig = decode(config);
        let transport = config.transport.expect("transport");
        assert_eq!(transport.check_cluster, "outbound|9091||istio-policy.istio-system.svc.cluster.local");
        assert_eq!(
            transport.network_fail_policy.expect("policy").policy,
            mcc::network_fail_policy::FailPolicy::FailClose as i32
        );
        let attributes = config.mixer_attributes.expect("attributes").attributes;
        assert_eq!(attributes["destination.uid"], string("kubernetes://app-1.default"));
        assert_eq!(attributes["context.reporter.kind"], string("inbound"));
        let route: mcc::ServiceConfig = decode(&policy.route_config.1);
        assert_eq!(
            route.mixer_attributes.expect("attributes").attributes["destination.service.host"],
            string("reviews.default.svc.cluster.local")
        );
        assert_eq!(route.quota_spec.len(), 1);
        assert_eq!(route.quota_spec[0].rules[0].quotas[0].quota, "requestcountquota");
    }

    #[test]
    fn stock_envoys_get_ext_authz_with_the_same_config_as_context() {
        let mut push = push(reviews(), vec![]);
        mesh_with_checks(&mut push, true);
        push.quota_spec_bindings
            .push(binding(serde_json::json!({"quotaSpecs": [{"name": "nope"}], "services": [{"service": "*"}]})));
        let proxy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
        let service = push.services.get("reviews.default.svc.cluster.local").cloned();
        let policy = inbound_http(&push, &proxy, service.as_deref(), 9080).expect("checks");
        assert_eq!(policy.filter.name, EXT_AUTHZ_HTTP);
        let Some(http_filter::ConfigType::TypedConfig(config)) = &policy.filter.config_type else { panic!("typed") };
        let config: http_ext_authz::ExtAuthz = decode(config);
        assert!(config.failure_mode_allow, "policyCheckFailOpen");
        let per_route: http_ext_authz::ExtAuthzPerRoute = decode(&policy.route_config.1);
        let Some(http_ext_authz::ext_authz_per_route::Override::CheckSettings(settings)) = per_route.r#override else {
            panic!("settings")
        };
        let encoded = &settings.context_extensions[istio_attribute::ext_authz::SERVICE_CONFIG_EXTENSION];
        let carried = istio_attribute::ext_authz::decode_service_config(encoded).expect("service config");
        let attributes = carried.mixer_attributes.expect("attributes").attributes;
        assert_eq!(attributes["destination.uid"], string("kubernetes://app-1.default"));
        assert_eq!(attributes["destination.service.name"], string("reviews"));
        assert!(inbound_tcp(&push, &proxy, service.as_deref(), 9080).is_some_and(|f| f.name == EXT_AUTHZ_NETWORK));
    }
}
