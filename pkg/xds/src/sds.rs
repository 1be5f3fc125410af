//! References to SDS secrets as Istio 1.4 writes them: a secret name and the gRPC server that
//! serves it, named as an Envoy cluster of the bootstrap (`sds-grpc`, whose endpoint is the node
//! agent's Unix socket).

use envoy_types::pb::envoy::config::core::v3::{
    api_config_source, config_source, grpc_service, ApiConfigSource, ApiVersion, ConfigSource, GrpcService,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;

/// The SDS secret `name`, fetched (xDS v3 over gRPC) from the servers of the cluster `cluster`.
pub fn secret_from_cluster(name: &str, cluster: &str) -> SdsSecretConfig {
    SdsSecretConfig { name: name.to_string(), sds_config: Some(grpc_cluster_source(cluster)) }
}

/// A config source that fetches v3 resources over gRPC from the Envoy cluster `cluster`.
pub fn grpc_cluster_source(cluster: &str) -> ConfigSource {
    let envoy_grpc = grpc_service::EnvoyGrpc { cluster_name: cluster.to_string(), ..Default::default() };
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
            api_type: api_config_source::ApiType::Grpc as i32,
            transport_api_version: ApiVersion::V3 as i32,
            grpc_services: vec![GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy_grpc)),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_name_their_cluster_over_grpc_v3() {
        let secret = secret_from_cluster("ROOTCA", "sds-grpc");
        assert_eq!(secret.name, "ROOTCA");
        let source = secret.sds_config.expect("source");
        assert_eq!(source.resource_api_version, ApiVersion::V3 as i32);
        let Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) = source.config_source_specifier else {
            panic!("not an API config source");
        };
        assert_eq!(api.api_type, api_config_source::ApiType::Grpc as i32);
        assert_eq!(api.transport_api_version, ApiVersion::V3 as i32);
        let target = api.grpc_services[0].target_specifier.clone();
        let Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy_grpc)) = target else {
            panic!("not an Envoy gRPC cluster");
        };
        assert_eq!(envoy_grpc.cluster_name, "sds-grpc");
    }
}
