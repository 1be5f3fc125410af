//! Envoy xDS v3 for Istio's proxies: the generators that turn a `PushContext` into clusters,
//! endpoints, listeners and routes for one proxy (following Istio 1.4's structure and names),
//! and the ADS server that streams them.

pub mod access_log;
pub mod ads;
pub mod cluster;
pub mod endpoint;
pub mod envoy_filter;
pub mod gateway;
pub mod inbound;
pub mod intern;
pub mod listener;
pub mod route;
pub mod tracing;

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

/// The cluster (defined in the proxy's bootstrap) through which a proxy in SDS mode fetches its
/// workload certificate (`default`) and root certificate (`ROOTCA`) from the node agent.
pub const SDS_CLUSTER: &str = "sds-grpc";

/// An SDS reference to one of the node agent's secrets (`default` or `ROOTCA`).
pub fn sds_secret(name: &str) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig {
    use envoy_types::pb::envoy::config::core::v3::{api_config_source, grpc_service, ApiConfigSource, GrpcService};
    envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
                api_type: api_config_source::ApiType::Grpc as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(grpc_service::EnvoyGrpc {
                        cluster_name: SDS_CLUSTER.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        }),
    }
}

/// The TLS context of Istio mutual TLS: the workload certificate and the mesh root, from the
/// `/etc/certs` files (1.4's default) or, for a proxy in SDS mode, over SDS.
pub fn istio_mutual_tls(
    alpn: Vec<String>,
    sds: bool,
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context, CertificateValidationContext, CommonTlsContext, TlsCertificate,
    };
    let mut common = CommonTlsContext { alpn_protocols: alpn, ..Default::default() };
    if sds {
        common.tls_certificate_sds_secret_configs = vec![sds_secret("default")];
        common.validation_context_type = Some(common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext::default()),
                validation_context_sds_secret_config: Some(sds_secret("ROOTCA")),
                ..Default::default()
            },
        ));
    } else {
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: file_source(istio_pki::files::DEFAULT_CERT_CHAIN),
            private_key: file_source(istio_pki::files::DEFAULT_KEY),
            ..Default::default()
        }];
        common.validation_context_type =
            Some(common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: file_source(istio_pki::files::DEFAULT_ROOT_CERT),
                ..Default::default()
            }));
    }
    common
}
