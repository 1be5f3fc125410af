//! References to SDS secrets as Istio 1.4 writes them: a secret name and the gRPC server that
//! serves it, named as an Envoy cluster of the bootstrap (`sds-grpc`, whose endpoint is the node
//! agent's Unix socket).

use envoy_types::pb::envoy::config::core::v3::{
    api_config_source, config_source, data_source, grpc_service, ApiConfigSource, ApiVersion, ConfigSource, DataSource,
    GrpcService,
};
use envoy_types::pb::envoy::config::grpc_credential::v3::FileBasedMetadataConfig;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

/// Envoy's call-credentials plugin that sends a file's content as gRPC metadata.
pub const FILE_BASED_METADATA: &str = "envoy.grpc_credentials.file_based_metadata";
/// Its config's type URL.
pub const FILE_BASED_METADATA_TYPE: &str =
    "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig";
/// The metadata key Istio's node agent reads the caller's token from.
pub const TOKEN_HEADER: &str = "istio_sds_credentials_header-bin";
/// Where a pod's projected token for the node agent is (Istio 1.4's trustworthy JWT).
pub const TOKEN_PATH: &str = "/var/run/secrets/tokens/istio-token";
/// The stat prefix of the node agent's gRPC client.
pub const STAT_PREFIX: &str = "sdsstat";
/// Where a gateway's own agent (1.4's `ingress-sds` container) serves its namespace's Secrets.
pub const GATEWAY_SDS_TARGET: &str = "unix:/var/run/ingress_gateway/sds";
/// The suffix of the secret holding a gateway credential's client CA (`<credentialName>-cacert`).
pub const GATEWAY_CA_SUFFIX: &str = "-cacert";

/// gRPC's default `:authority` for a `unix:` target is the percent-encoded path, which HTTP/2
/// servers that check authorities (the node agent's) refuse; `localhost` is what later gRPC
/// releases send.
fn local_authority() -> grpc_service::google_grpc::ChannelArgs {
    use grpc_service::google_grpc::channel_args::{value::ValueSpecifier, Value};
    let value = Value { value_specifier: Some(ValueSpecifier::StringValue("localhost".to_string())) };
    grpc_service::google_grpc::ChannelArgs { args: [("grpc.default_authority".to_string(), value)].into() }
}

/// The SDS secret `name` from the node agent at `target` (`unix:/var/run/sds/uds_path`), as
/// Istio 1.4 wrote it: Google gRPC with local channel credentials, and call credentials that
/// send the token file `token_path` as `istio_sds_credentials_header-bin` — plus the channel
/// argument `grpc.default_authority: localhost` (see [`local_authority`]).
pub fn secret_from_node_agent(name: &str, target: &str, token_path: &str) -> SdsSecretConfig {
    let credentials = FileBasedMetadataConfig {
        secret_data: Some(DataSource {
            specifier: Some(data_source::Specifier::Filename(token_path.to_string())),
            ..Default::default()
        }),
        header_key: TOKEN_HEADER.to_string(),
        ..Default::default()
    };
    let plugin = grpc_service::google_grpc::CallCredentials {
        credential_specifier: Some(grpc_service::google_grpc::call_credentials::CredentialSpecifier::FromPlugin(
            grpc_service::google_grpc::call_credentials::MetadataCredentialsFromPlugin {
                name: FILE_BASED_METADATA.to_string(),
                config_type: Some(
                    grpc_service::google_grpc::call_credentials::metadata_credentials_from_plugin::ConfigType::TypedConfig(
                        Any { type_url: FILE_BASED_METADATA_TYPE.to_string(), value: credentials.encode_to_vec() },
                    ),
                ),
            },
        )),
    };
    let google_grpc = grpc_service::GoogleGrpc {
        target_uri: target.to_string(),
        stat_prefix: STAT_PREFIX.to_string(),
        channel_credentials: Some(grpc_service::google_grpc::ChannelCredentials {
            credential_specifier: Some(
                grpc_service::google_grpc::channel_credentials::CredentialSpecifier::LocalCredentials(
                    grpc_service::google_grpc::GoogleLocalCredentials::default(),
                ),
            ),
        }),
        call_credentials: vec![plugin],
        credentials_factory_name: FILE_BASED_METADATA.to_string(),
        channel_args: Some(local_authority()),
        ..Default::default()
    };
    let source = grpc_source(grpc_service::TargetSpecifier::GoogleGrpc(google_grpc));
    SdsSecretConfig { name: name.to_string(), sds_config: Some(source) }
}
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;

/// The SDS secret `name` (a Gateway server's `credentialName`) from the gateway's own agent at
/// `target`, as 1.4 wrote it: Google gRPC without credentials (the socket is the pod's own),
/// plus the channel argument of [`local_authority`].
pub fn secret_from_gateway_agent(name: &str, target: &str) -> SdsSecretConfig {
    let google_grpc = grpc_service::GoogleGrpc {
        target_uri: target.to_string(),
        stat_prefix: STAT_PREFIX.to_string(),
        channel_args: Some(local_authority()),
        ..Default::default()
    };
    let source = grpc_source(grpc_service::TargetSpecifier::GoogleGrpc(google_grpc));
    SdsSecretConfig { name: name.to_string(), sds_config: Some(source) }
}

/// The SDS secret `name`, fetched (xDS v3 over gRPC) from the servers of the cluster `cluster`.
pub fn secret_from_cluster(name: &str, cluster: &str) -> SdsSecretConfig {
    SdsSecretConfig { name: name.to_string(), sds_config: Some(grpc_cluster_source(cluster)) }
}

/// A config source that fetches v3 resources over gRPC from the Envoy cluster `cluster`.
pub fn grpc_cluster_source(cluster: &str) -> ConfigSource {
    let envoy_grpc = grpc_service::EnvoyGrpc { cluster_name: cluster.to_string(), ..Default::default() };
    grpc_source(grpc_service::TargetSpecifier::EnvoyGrpc(envoy_grpc))
}

/// A config source that fetches v3 resources over gRPC from `target`.
fn grpc_source(target: grpc_service::TargetSpecifier) -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
            api_type: api_config_source::ApiType::Grpc as i32,
            transport_api_version: ApiVersion::V3 as i32,
            grpc_services: vec![GrpcService { target_specifier: Some(target), ..Default::default() }],
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
