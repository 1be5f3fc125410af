//! The values of EnvoyFilter `configPatches` (Istio 1.4's `patch.value`): JSON in the shape of
//! the xDS object a patch applies to, read into Envoy's v3 messages.
//!
//! 1.4's values were written against Envoy's v2 API, so they are upgraded on the way in: a
//! filter's `config` (a v2 `Struct`) becomes its `typed_config` when the filter's v3 type is
//! known from its name, v2 type URLs (`envoy.config.filter.http.lua.v2.Lua`) become their v3
//! names, and a v2 `envoy.filters.http.wasm` config gets v3's shape (the code as a local data
//! source, the configuration as a `StringValue`). Everything else must already be valid v3
//! JSON, and an error names the field that is not.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use istio_api::pb::istio::networking::v1alpha3::envoy_filter::ApplyTo;
use serde_json::{Map, Value};

use crate::json;

/// The kind of xDS object a patch applies to (1.4's `applyTo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchObject {
    Listener,
    FilterChain,
    NetworkFilter,
    HttpFilter,
    Cluster,
    RouteConfiguration,
    VirtualHost,
    HttpRoute,
}

impl PatchObject {
    /// The object a patch's `applyTo` names; none for `INVALID`.
    pub fn of(apply_to: ApplyTo) -> Option<PatchObject> {
        Some(match apply_to {
            ApplyTo::Invalid => return None,
            ApplyTo::Listener => PatchObject::Listener,
            ApplyTo::FilterChain => PatchObject::FilterChain,
            ApplyTo::NetworkFilter => PatchObject::NetworkFilter,
            ApplyTo::HttpFilter => PatchObject::HttpFilter,
            ApplyTo::Cluster => PatchObject::Cluster,
            ApplyTo::RouteConfiguration => PatchObject::RouteConfiguration,
            ApplyTo::VirtualHost => PatchObject::VirtualHost,
            ApplyTo::HttpRoute => PatchObject::HttpRoute,
        })
    }
}

/// A patch's value, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchValue {
    Listener(Box<Listener>),
    FilterChain(Box<FilterChain>),
    NetworkFilter(FilterValue<Filter>),
    HttpFilter(FilterValue<HttpFilter>),
    Cluster(Box<Cluster>),
    RouteConfiguration(Box<RouteConfiguration>),
    VirtualHost(Box<VirtualHost>),
    HttpRoute(Box<Route>),
}

/// A network or HTTP filter from a patch. `untyped` holds a v2 `config` whose type could not be
/// told from the filter's name: it can only be merged into a filter that already has a type.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterValue<F> {
    pub filter: F,
    pub untyped: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum PatchValueError {
    #[error("the value must be an object")]
    NotAnObject,
    #[error(
        "filter {0:?}: `config` needs the filter's type, which its name does not give; use typed_config with an @type"
    )]
    UntypedConfig(String),
    #[error(transparent)]
    Json(#[from] json::Error),
}

/// istio-proxy's filter that sends the downstream's SNI as the upstream TLS SNI.
pub const FORWARD_DOWNSTREAM_SNI: &str = "forward_downstream_sni";
/// istio-proxy's filter that checks, behind a TLS-terminating chain, that the inner
/// ClientHello's SNI is the outer connection's.
pub const SNI_VERIFIER: &str = "sni_verifier";
/// The typed config of filters whose config is read by name.
pub const STRUCT_TYPE: &str = "google.protobuf.Struct";

/// The v3 type of a filter (or access logger) named by its v3 or its deprecated (1.4-era) name.
pub fn known_filter_type(filter_name: &str) -> Option<&'static str> {
    Some(match canonical_filter_name(filter_name) {
        "envoy.filters.network.http_connection_manager" => {
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        }
        "envoy.filters.network.tcp_proxy" => "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "envoy.filters.network.ext_authz" => "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
        "envoy.filters.network.rbac" => "envoy.extensions.filters.network.rbac.v3.RBAC",
        "envoy.filters.network.mongo_proxy" => "envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy",
        "envoy.filters.network.redis_proxy" => "envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
        "envoy.filters.network.sni_cluster" => "envoy.extensions.filters.network.sni_cluster.v3.SniCluster",
        "envoy.filters.network.wasm" => "envoy.extensions.filters.network.wasm.v3.Wasm",
        "envoy.filters.http.router" => "envoy.extensions.filters.http.router.v3.Router",
        "envoy.filters.http.fault" => "envoy.extensions.filters.http.fault.v3.HTTPFault",
        "envoy.filters.http.cors" => "envoy.extensions.filters.http.cors.v3.Cors",
        "envoy.filters.http.lua" => "envoy.extensions.filters.http.lua.v3.Lua",
        "envoy.filters.http.ext_authz" => "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "envoy.filters.http.buffer" => "envoy.extensions.filters.http.buffer.v3.Buffer",
        "envoy.filters.http.ratelimit" => "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
        "envoy.filters.http.health_check" => "envoy.extensions.filters.http.health_check.v3.HealthCheck",
        "envoy.filters.http.header_to_metadata" => "envoy.extensions.filters.http.header_to_metadata.v3.Config",
        "envoy.filters.http.rbac" => "envoy.extensions.filters.http.rbac.v3.RBAC",
        "envoy.filters.http.jwt_authn" => "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "envoy.filters.http.grpc_web" => "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
        "envoy.filters.http.wasm" => "envoy.extensions.filters.http.wasm.v3.Wasm",
        "envoy.filters.listener.tls_inspector" => "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
        "envoy.filters.listener.original_dst" => "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
        "envoy.filters.listener.http_inspector" => "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
        "envoy.access_loggers.file" => "envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "envoy.access_loggers.http_grpc" => "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
        "envoy.access_loggers.tcp_grpc" => "envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig",
        // istio-proxy's own network filters, configured by name (a Struct typed config makes
        // Envoy look the factory up by the filter's name); a stock Envoy has neither.
        FORWARD_DOWNSTREAM_SNI | SNI_VERIFIER => STRUCT_TYPE,
        _ => return None,
    })
}

/// A filter's v3 name for its deprecated 1.4-era name (`envoy.router` is
/// `envoy.filters.http.router`); any other name is returned as it is. Matches compare these, so
/// 1.4's EnvoyFilters find the filters Pilot names the v3 way.
pub fn canonical_filter_name(name: &str) -> &str {
    match name {
        "envoy.http_connection_manager" => "envoy.filters.network.http_connection_manager",
        "envoy.tcp_proxy" => "envoy.filters.network.tcp_proxy",
        "envoy.ext_authz" => "envoy.filters.http.ext_authz",
        "envoy.mongo_proxy" => "envoy.filters.network.mongo_proxy",
        "envoy.redis_proxy" => "envoy.filters.network.redis_proxy",
        "envoy.router" => "envoy.filters.http.router",
        "envoy.fault" => "envoy.filters.http.fault",
        "envoy.cors" => "envoy.filters.http.cors",
        "envoy.lua" => "envoy.filters.http.lua",
        "envoy.buffer" => "envoy.filters.http.buffer",
        "envoy.rate_limit" => "envoy.filters.http.ratelimit",
        "envoy.health_check" => "envoy.filters.http.health_check",
        "envoy.grpc_web" => "envoy.filters.http.grpc_web",
        "envoy.listener.tls_inspector" => "envoy.filters.listener.tls_inspector",
        "envoy.listener.original_dst" => "envoy.filters.listener.original_dst",
        "envoy.listener.http_inspector" => "envoy.filters.listener.http_inspector",
        "envoy.file_access_log" => "envoy.access_loggers.file",
        "envoy.http_grpc_access_log" => "envoy.access_loggers.http_grpc",
        "envoy.tcp_grpc_access_log" => "envoy.access_loggers.tcp_grpc",
        other => other,
    }
}

/// The v3 name of a v2 message (`envoy.config.filter.http.lua.v2.Lua` is
/// `envoy.extensions.filters.http.lua.v3.Lua`); other names are kept.
fn v3_type_name(name: &str) -> String {
    let version = |rest: &str| {
        let mut parts: Vec<&str> = rest.split('.').collect();
        if let Some(version) = parts.iter_mut().rev().nth(1) {
            if version.starts_with("v2") {
                *version = "v3";
            }
        }
        parts.join(".")
    };
    for (v2, v3) in [
        ("envoy.config.filter.http.", "envoy.extensions.filters.http."),
        ("envoy.config.filter.network.", "envoy.extensions.filters.network."),
        ("envoy.config.filter.listener.", "envoy.extensions.filters.listener."),
    ] {
        if let Some(rest) = name.strip_prefix(v2) {
            return format!("{v3}{}", version(rest));
        }
    }
    match name {
        "envoy.api.v2.Cluster" => "envoy.config.cluster.v3.Cluster".into(),
        "envoy.api.v2.Listener" => "envoy.config.listener.v3.Listener".into(),
        "envoy.api.v2.RouteConfiguration" => "envoy.config.route.v3.RouteConfiguration".into(),
        "envoy.api.v2.auth.UpstreamTlsContext" => "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".into(),
        "envoy.api.v2.auth.DownstreamTlsContext" => {
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext".into()
        }
        other => other.to_string(),
    }
}

const TYPE_PREFIX: &str = "type.googleapis.com/";
const WASM_TYPES: [&str; 2] =
    ["envoy.extensions.filters.http.wasm.v3.Wasm", "envoy.extensions.filters.network.wasm.v3.Wasm"];

/// v2's Wasm config in v3's shape: `vm_config.code` as a local data source, and a string
/// `configuration` as a `google.protobuf.StringValue`.
fn upgrade_wasm(config: &mut Map<String, Value>) {
    let Some(Value::Object(plugin)) = config.get_mut("config") else { return };
    if let Some(Value::Object(vm)) = plugin.get_mut("vm_config") {
        if let Some(Value::Object(code)) = vm.get_mut("code") {
            let data_source = ["inline_string", "inline_bytes", "filename", "inlineString", "inlineBytes"];
            if code.keys().any(|key| data_source.contains(&key.as_str())) {
                let local = std::mem::take(code);
                code.insert("local".into(), Value::Object(local));
            }
        }
    }
    if let Some(Value::String(text)) = plugin.get("configuration") {
        let wrapped = serde_json::json!({"@type": format!("{TYPE_PREFIX}google.protobuf.StringValue"), "value": text});
        plugin.insert("configuration".into(), wrapped);
    }
}

/// Upgrades v2 JSON in place: filters' `config` to `typed_config` where the type is known,
/// v2 `@type`s to v3, and v2 Wasm configs to v3's shape. Unknown `config`s are left for the
/// caller to judge.
fn upgrade(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(upgrade),
        Value::Object(object) => {
            if let Some(Value::String(type_url)) = object.get("@type") {
                let name = type_url.strip_prefix(TYPE_PREFIX).unwrap_or(type_url);
                let upgraded = format!("{TYPE_PREFIX}{}", v3_type_name(name));
                let is_wasm = WASM_TYPES.iter().any(|wasm| upgraded.ends_with(wasm));
                object.insert("@type".into(), Value::String(upgraded));
                if is_wasm {
                    upgrade_wasm(object);
                }
            }
            let typed = object.contains_key("typed_config") || object.contains_key("typedConfig");
            let filter_type = object.get("name").and_then(Value::as_str).and_then(known_filter_type);
            if let (false, Some(type_name), Some(Value::Object(_))) = (typed, filter_type, object.get("config")) {
                if let Some(Value::Object(mut config)) = object.remove("config") {
                    if type_name == STRUCT_TYPE {
                        // A well-known type in an Any carries its JSON under `value`.
                        config = Map::from_iter([("value".to_string(), Value::Object(config))]);
                    }
                    config.insert("@type".into(), Value::String(format!("{TYPE_PREFIX}{type_name}")));
                    if WASM_TYPES.contains(&type_name) {
                        upgrade_wasm(&mut config);
                    }
                    object.insert("typed_config".into(), Value::Object(config));
                }
            }
            object.values_mut().for_each(upgrade);
        }
        _ => {}
    }
}

/// A filter: `config` that stayed untyped is taken out (kept only where `allow_untyped`, for
/// merges), and the rest read as the filter message.
fn filter_value<F: prost::Name + Default>(
    mut value: Value,
    allow_untyped: bool,
) -> Result<FilterValue<F>, PatchValueError> {
    let object = value.as_object_mut().ok_or(PatchValueError::NotAnObject)?;
    let untyped = object.remove("config");
    if untyped.is_some() && !allow_untyped {
        let name = object.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(PatchValueError::UntypedConfig(name));
    }
    Ok(FilterValue { filter: json::message_from_json(&value)?, untyped })
}

/// Reads a patch value for `object`. `merge` says the patch is a MERGE, where a filter's
/// untyped `config` may still be merged into the existing filter's typed config.
pub fn patch_value(object: PatchObject, value: &Value, merge: bool) -> Result<PatchValue, PatchValueError> {
    if !value.is_object() {
        return Err(PatchValueError::NotAnObject);
    }
    let mut value = value.clone();
    upgrade(&mut value);
    Ok(match object {
        PatchObject::Listener => PatchValue::Listener(Box::new(json::message_from_json(&value)?)),
        PatchObject::FilterChain => PatchValue::FilterChain(Box::new(json::message_from_json(&value)?)),
        PatchObject::NetworkFilter => PatchValue::NetworkFilter(filter_value(value, merge)?),
        PatchObject::HttpFilter => PatchValue::HttpFilter(filter_value(value, merge)?),
        PatchObject::Cluster => PatchValue::Cluster(Box::new(json::message_from_json(&value)?)),
        PatchObject::RouteConfiguration => PatchValue::RouteConfiguration(Box::new(json::message_from_json(&value)?)),
        PatchObject::VirtualHost => PatchValue::VirtualHost(Box::new(json::message_from_json(&value)?)),
        PatchObject::HttpRoute => PatchValue::HttpRoute(Box::new(json::message_from_json(&value)?)),
    })
}

/// Reads JSON as the message a type URL names, for merging an untyped `config` into a filter
/// of that type.
pub fn message_bytes_from_json(type_url: &str, value: &Value) -> Result<Vec<u8>, json::Error> {
    let mut typed = value.clone();
    upgrade(&mut typed);
    if let Some(object) = typed.as_object_mut() {
        object.insert("@type".into(), Value::String(type_url.to_string()));
    }
    Ok(json::any_from_json(&typed)?.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
    use serde_json::json;

    #[test]
    fn a_v2_filter_config_becomes_its_v3_typed_config() {
        let value = json!({"name": "envoy.filters.http.rbac", "config": {"rules": {"action": "DENY", "policies": {}}}});
        let PatchValue::HttpFilter(filter) = patch_value(PatchObject::HttpFilter, &value, false).unwrap() else {
            panic!("not an HTTP filter")
        };
        assert_eq!(filter.untyped, None);
        let Some(http_filter::ConfigType::TypedConfig(typed)) = filter.filter.config_type else { panic!("untyped") };
        assert_eq!(typed.type_url, "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC");
    }

    /// The typed config of a network filter patch value read for a MERGE.
    fn network_filter_config(value: &Value) -> envoy_types::pb::google::protobuf::Any {
        let PatchValue::NetworkFilter(filter) = patch_value(PatchObject::NetworkFilter, value, true).unwrap() else {
            panic!("not a network filter")
        };
        match filter.filter.config_type {
            Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(typed)) => typed,
            other => panic!("no typed config: {other:?}"),
        }
    }

    #[test]
    fn istio_proxys_sni_filters_get_a_struct_config() {
        for name in [FORWARD_DOWNSTREAM_SNI, SNI_VERIFIER] {
            let typed = network_filter_config(&json!({"name": name, "config": {}}));
            assert_eq!(typed.type_url, format!("{TYPE_PREFIX}{STRUCT_TYPE}"));
            assert!(typed.value.is_empty(), "an empty Struct: {:?}", typed.value);
        }
        let typed = network_filter_config(&json!({"name": SNI_VERIFIER, "config": {"note": "kept"}}));
        let config = <prost_types::Struct as prost::Message>::decode(typed.value.as_slice()).unwrap();
        assert!(config.fields.contains_key("note"), "{config:?}");
    }

    #[test]
    fn v2_type_urls_are_read_as_v3() {
        let value = json!({"name": "envoy.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
            "xffNumTrustedHops": 4}});
        let typed = network_filter_config(&value);
        assert!(typed.type_url.ends_with("http_connection_manager.v3.HttpConnectionManager"), "{}", typed.type_url);
    }

    #[test]
    fn a_v2_wasm_filter_takes_v3_shape() {
        let value = json!({"name": "envoy.filters.http.wasm", "config": {"config": {
            "root_id": "stats_outbound",
            "configuration": "{\"debug\": \"false\"}",
            "vm_config": {"vm_id": "stats_outbound", "runtime": "envoy.wasm.runtime.null",
                          "code": {"inline_string": "envoy.wasm.stats"}}}}});
        let PatchValue::HttpFilter(filter) = patch_value(PatchObject::HttpFilter, &value, false).unwrap() else {
            panic!("not an HTTP filter")
        };
        let Some(http_filter::ConfigType::TypedConfig(typed)) = filter.filter.config_type else { panic!("untyped") };
        let json = json::any_to_json(&typed).unwrap();
        assert_eq!(json["config"]["vm_config"]["code"]["local"]["inline_string"], "envoy.wasm.stats");
        assert_eq!(json["config"]["configuration"]["value"], "{\"debug\": \"false\"}");
        assert_eq!(json["config"]["root_id"], "stats_outbound");
    }

    #[test]
    fn an_unknown_filters_config_is_only_good_for_a_merge() {
        let value = json!({"name": "com.example.custom", "config": {"upstream_cluster": "scooby"}});
        let error = patch_value(PatchObject::HttpFilter, &value, false).unwrap_err();
        assert!(error.to_string().contains("com.example.custom"), "{error}");
        let PatchValue::HttpFilter(filter) = patch_value(PatchObject::HttpFilter, &value, true).unwrap() else {
            panic!("not an HTTP filter")
        };
        assert_eq!(filter.untyped, Some(json!({"upstream_cluster": "scooby"})));
    }

    #[test]
    fn a_bad_field_is_named() {
        let error = patch_value(PatchObject::Cluster, &json!({"name": "c", "no_such_field": 1}), false).unwrap_err();
        assert!(error.to_string().contains("no_such_field"), "{error}");
        assert!(matches!(patch_value(PatchObject::Cluster, &json!([]), false), Err(PatchValueError::NotAnObject)));
    }

    /// 1.4.6's own EnvoyFilter integration test merges a gRPC access log, in v2's untyped
    /// `config` form, into the inbound HTTP connection managers.
    #[test]
    fn access_logs_in_the_1_4_form_are_typed() {
        let value = json!({
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
                "access_log": [{
                    "name": "envoy.http_grpc_access_log",
                    "config": {"common_config": {
                        "log_name": "grpc-als-example",
                        "grpc_service": {"envoy_grpc": {"cluster_name": "grpc-als-cluster"}}
                    }}
                }]
            }
        });
        let typed = network_filter_config(&value);
        use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::HttpGrpcAccessLogConfig;
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
        use prost::Message;
        let manager = HttpConnectionManager::decode(typed.value.as_slice()).unwrap();
        let log = &manager.access_log[0];
        assert_eq!(log.name, "envoy.http_grpc_access_log");
        let Some(envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(config)) =
            &log.config_type
        else {
            panic!("the access log stayed untyped: {log:?}")
        };
        let config = HttpGrpcAccessLogConfig::decode(config.value.as_slice()).unwrap();
        assert_eq!(config.common_config.unwrap().log_name, "grpc-als-example");
        assert_eq!(
            known_filter_type("envoy.file_access_log"),
            Some("envoy.extensions.access_loggers.file.v3.FileAccessLog")
        );
    }

    /// 1.4.6's listener patch test writes the hop count as a string, as proto3 JSON allows.
    #[test]
    fn numbers_may_be_strings() {
        let value = json!({
            "name": "envoy.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
                "xffNumTrustedHops": "4"
            }
        });
        let typed = network_filter_config(&value);
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
        use prost::Message;
        assert_eq!(HttpConnectionManager::decode(typed.value.as_slice()).unwrap().xff_num_trusted_hops, 4);
    }

    #[test]
    fn names_and_types_of_1_4_filters() {
        assert_eq!(canonical_filter_name("envoy.router"), "envoy.filters.http.router");
        assert_eq!(
            canonical_filter_name("envoy.http_connection_manager"),
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(canonical_filter_name("mixer"), "mixer");
        assert_eq!(known_filter_type("envoy.lua"), Some("envoy.extensions.filters.http.lua.v3.Lua"));
        assert_eq!(
            v3_type_name("envoy.config.filter.http.fault.v2.HTTPFault"),
            "envoy.extensions.filters.http.fault.v3.HTTPFault"
        );
        assert_eq!(
            v3_type_name("envoy.config.filter.http.jwt_authn.v2alpha.JwtAuthentication"),
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
        );
        assert_eq!(v3_type_name("google.protobuf.Struct"), "google.protobuf.Struct");
    }
}
