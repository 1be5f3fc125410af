//! Envoy xDS v3 for Istio's proxies: the generators that turn a `PushContext` into clusters,
//! endpoints, listeners and routes for one proxy (following Istio 1.4's structure and names),
//! and the ADS server that streams them.

pub(crate) mod access_log;
pub mod ads;
pub mod ads_service;
pub(crate) mod authn_jwt;
pub(crate) mod authz;
pub(crate) mod authz_end_user;
pub(crate) mod authz_v1alpha1;
pub(crate) mod cluster;
pub(crate) mod config_patch;
pub(crate) mod endpoint;
pub(crate) mod envoy_filter;
pub(crate) mod gateway;
pub(crate) mod generate;
pub(crate) mod inbound;
pub(crate) mod inbound_listener;
pub(crate) mod intern;
pub(crate) mod listener;
pub(crate) mod locality;
pub(crate) mod mixer;
pub(crate) mod mixer_outbound;
pub(crate) mod mixer_telemetry;
pub(crate) mod requests;
pub(crate) mod route;
pub(crate) mod sotw_memo;
pub(crate) mod stable_map;
pub(crate) mod tls;
pub(crate) mod tracing;
pub(crate) mod trust_domain;
pub(crate) mod wire;

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::google::protobuf::{Any, Duration};

pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughClusterIpv4";
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";

/// The ADS config source every dynamic resource points at.
/// 1.4's breadcrumb to the config an Envoy resource came from: `filter_metadata.istio.config`
/// = `/apis/networking/v1alpha3/namespaces/NS/KIND/NAME` (`virtual-service` on routes,
/// `destination-rule` on clusters), which `istioctl x describe` follows.
pub fn istio_config_metadata(
    kind: &str,
    namespace: &str,
    name: &str,
) -> envoy_types::pb::envoy::config::core::v3::Metadata {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let path = format!("/apis/networking/v1alpha3/namespaces/{namespace}/{kind}/{name}");
    let fields = [("config".to_string(), Value { kind: Some(Kind::StringValue(path)) })];
    envoy_types::pb::envoy::config::core::v3::Metadata {
        filter_metadata: [("istio".to_string(), Struct { fields: fields.into_iter().collect() })].into_iter().collect(),
        ..Default::default()
    }
}

pub fn ads_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

pub fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

pub fn duration(duration: &prost_types::Duration) -> Duration {
    Duration { seconds: duration.seconds, nanos: duration.nanos }
}

pub fn seconds(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

/// Packs an Envoy message into an `Any`.
pub fn any<T: prost::Message + prost::Name>(message: T) -> Any {
    envoy_types::util::pack_any(message)
}

/// A file path as an Envoy data source; `None` for an empty path.
pub fn file_source(path: &str) -> Option<envoy_types::pb::envoy::config::core::v3::DataSource> {
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    (!path.is_empty()).then(|| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}
