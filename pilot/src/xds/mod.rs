//! Envoy xDS v3 for Istio's proxies: the generators that turn a `PushContext` into clusters,
//! endpoints, listeners and routes for one proxy (following Istio 1.4's structure and names),
//! and the ADS server that streams them.

pub mod ads;
pub mod cluster;
pub mod endpoint;
pub mod envoy_filter;
pub mod gateway;
pub mod listener;
pub mod route;

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::google::protobuf::{Any, Duration};

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughClusterIpv4";
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";

/// Direction of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// `outbound|9080|v2|reviews.default.svc.cluster.local` (inbound clusters put the port name
/// in the subset slot).
pub fn cluster_name(direction: Direction, port: u32, subset: &str, host: &str) -> String {
    let direction = match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    format!("{direction}|{port}|{subset}|{host}")
}

/// The parts of an Istio cluster name.
pub fn parse_cluster_name(name: &str) -> Option<(Direction, u32, &str, &str)> {
    let mut parts = name.splitn(4, '|');
    let direction = match parts.next()? {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        _ => return None,
    };
    let port = parts.next()?.parse().ok()?;
    Some((direction, port, parts.next()?, parts.next()?))
}

/// The ADS config source every dynamic resource points at.
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

/// The workload certificate files of 1.4's default (non-SDS) install, used for ISTIO_MUTUAL.
pub const ISTIO_CERT_CHAIN: &str = "/etc/certs/cert-chain.pem";
pub const ISTIO_KEY: &str = "/etc/certs/key.pem";
pub const ISTIO_ROOT_CERT: &str = "/etc/certs/root-cert.pem";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_round_trip() {
        let name = cluster_name(Direction::Outbound, 9080, "v2", "reviews.default.svc.cluster.local");
        assert_eq!(name, "outbound|9080|v2|reviews.default.svc.cluster.local");
        assert_eq!(
            parse_cluster_name(&name),
            Some((Direction::Outbound, 9080, "v2", "reviews.default.svc.cluster.local"))
        );
        assert_eq!(parse_cluster_name("outbound|9080||reviews"), Some((Direction::Outbound, 9080, "", "reviews")));
        assert_eq!(parse_cluster_name("BlackHoleCluster"), None);
    }
}
