//! Where TLS material comes from, as Envoy's TLS contexts say: a file, bytes inline in the
//! config, or a secret delivered over SDS (by name, from a gRPC config source). Both upstream
//! and downstream contexts compile into the same shape, so one loader serves both.

use std::path::PathBuf;

use envoy_types::pb::envoy::config::core::v3::{
    api_config_source, config_source, data_source, grpc_service, DataSource, GrpcService,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CertificateValidationContext, CommonTlsContext, SdsSecretConfig,
};

use super::matcher::StringMatcher;
use super::ConfigError;

/// The gRPC server an SDS secret is fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SdsServer {
    /// `envoy_grpc`: a cluster of the bootstrap (Istio's `sds-grpc`, a Unix socket).
    Cluster(String),
    /// `google_grpc`: a target URI (`unix:/var/run/sds/uds_path` or `host:port`), and the
    /// file whose content each stream sends as metadata (Envoy's file-based call credentials:
    /// Istio's node agent reads the caller's token from it).
    Target { uri: String, credentials: Option<Box<FileCredentials>> },
}

/// Envoy's `envoy.grpc_credentials.file_based_metadata`: a file sent as a metadata header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileCredentials {
    pub path: PathBuf,
    /// The header (`authorization` when the config names none); a `-bin` key is sent binary.
    pub header: String,
    pub prefix: String,
}

/// The file-based call credentials of a Google gRPC service, if it has them.
fn file_credentials(google: &grpc_service::GoogleGrpc, at: &str) -> Result<Option<Box<FileCredentials>>, ConfigError> {
    use envoy_types::pb::envoy::config::grpc_credential::v3::FileBasedMetadataConfig;
    use grpc_service::google_grpc::call_credentials::{metadata_credentials_from_plugin, CredentialSpecifier};
    for credentials in &google.call_credentials {
        let Some(CredentialSpecifier::FromPlugin(plugin)) = &credentials.credential_specifier else { continue };
        if plugin.name != istio_xds::sds::FILE_BASED_METADATA {
            continue;
        }
        let Some(metadata_credentials_from_plugin::ConfigType::TypedConfig(any)) = &plugin.config_type else {
            return Err(ConfigError::new(at, "file_based_metadata: needs a typed_config"));
        };
        let config = <FileBasedMetadataConfig as prost::Message>::decode(any.value.as_slice())
            .map_err(|error| ConfigError::new(at, format!("file_based_metadata: {error}")))?;
        let Some(data_source::Specifier::Filename(path)) = config.secret_data.and_then(|data| data.specifier) else {
            return Err(ConfigError::new(at, "file_based_metadata: only a secret_data filename is supported"));
        };
        let header = if config.header_key.is_empty() { "authorization".to_string() } else { config.header_key };
        return Ok(Some(Box::new(FileCredentials { path: PathBuf::from(path), header, prefix: config.header_prefix })));
    }
    Ok(None)
}

impl std::fmt::Display for SdsServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdsServer::Cluster(name) => write!(formatter, "cluster {name}"),
            SdsServer::Target { uri, .. } => write!(formatter, "{uri}"),
        }
    }
}

/// One SDS secret: its name and the server that has it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SdsSecret {
    pub name: String,
    pub server: SdsServer,
}

/// Which part of a secret a TLS context uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SecretPart {
    CertificateChain,
    PrivateKey,
    TrustedCa,
}

/// One piece of TLS material (a PEM certificate chain, private key or CA bundle).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TlsData {
    File(PathBuf),
    Inline(Vec<u8>),
    Sds(SdsSecret, SecretPart),
}

impl TlsData {
    /// The SDS secret this comes from, if it does.
    pub(crate) fn secret(&self) -> Option<&SdsSecret> {
        match self {
            TlsData::Sds(secret, _) => Some(secret),
            _ => None,
        }
    }
}

/// What a common TLS context names: its certificate, its CA, and the subject alternative
/// names a peer's certificate must carry (exact matches).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsMaterial {
    pub certificate_chain: Option<TlsData>,
    pub private_key: Option<TlsData>,
    pub trusted_ca: Option<TlsData>,
    pub subject_alt_names: Vec<String>,
}

impl TlsMaterial {
    /// Every SDS secret the material needs.
    pub(crate) fn secrets(&self) -> impl Iterator<Item = &SdsSecret> {
        [&self.certificate_chain, &self.private_key, &self.trusted_ca].into_iter().flatten().filter_map(TlsData::secret)
    }

    pub(crate) fn has_certificate(&self) -> bool {
        self.certificate_chain.is_some() && self.private_key.is_some()
    }
}

/// A data source as TLS material: a file, inline bytes or an inline string (environment
/// variables are not read).
pub(crate) fn data(source: Option<&DataSource>, at: &str) -> Result<Option<TlsData>, ConfigError> {
    match source.and_then(|source| source.specifier.as_ref()) {
        None => Ok(None),
        Some(data_source::Specifier::Filename(path)) => Ok(Some(TlsData::File(PathBuf::from(path)))),
        Some(data_source::Specifier::InlineBytes(bytes)) => Ok(Some(TlsData::Inline(bytes.clone()))),
        Some(data_source::Specifier::InlineString(text)) => Ok(Some(TlsData::Inline(text.clone().into_bytes()))),
        Some(data_source::Specifier::EnvironmentVariable(name)) => {
            Err(ConfigError::new(at, format!("environment_variable data sources ({name}) are not supported")))
        }
    }
}

/// The server of an SDS secret config: a gRPC API config source (Envoy or Google gRPC).
pub(crate) fn sds_secret(config: &SdsSecretConfig, at: &str) -> Result<SdsSecret, ConfigError> {
    let at = format!("{at}: sds secret {}", config.name);
    if config.name.is_empty() {
        return Err(ConfigError::new(&at, "the secret needs a name"));
    }
    let source = config.sds_config.as_ref().and_then(|source| source.config_source_specifier.as_ref());
    let service: Option<&GrpcService> = match source {
        Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) => {
            if api.api_type != api_config_source::ApiType::Grpc as i32 {
                return Err(ConfigError::new(&at, "sds_config: only the GRPC api_type is supported"));
            }
            api.grpc_services.first()
        }
        Some(config_source::ConfigSourceSpecifier::Ads(_)) => {
            return Err(ConfigError::new(&at, "sds_config: secrets over ADS are not supported; name a gRPC server"))
        }
        _ => return Err(ConfigError::new(&at, "sds_config: needs an api_config_source")),
    };
    let server = match service.and_then(|service| service.target_specifier.as_ref()) {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy)) if !envoy.cluster_name.is_empty() => {
            SdsServer::Cluster(envoy.cluster_name.clone())
        }
        Some(grpc_service::TargetSpecifier::GoogleGrpc(google)) if !google.target_uri.is_empty() => {
            SdsServer::Target { uri: google.target_uri.clone(), credentials: file_credentials(google, &at)? }
        }
        _ => return Err(ConfigError::new(&at, "sds_config: the gRPC service needs a cluster or a target URI")),
    };
    Ok(SdsSecret { name: config.name.clone(), server })
}

/// The certificate, CA and subject alternative names of a common TLS context, from files,
/// inline data or SDS. `at` names the context in errors.
pub(crate) fn material(common: &CommonTlsContext, at: &str) -> Result<TlsMaterial, ConfigError> {
    let mut material = TlsMaterial::default();
    if let Some(certificate) = common.tls_certificates.first() {
        material.certificate_chain = data(certificate.certificate_chain.as_ref(), &format!("{at}: certificate_chain"))?;
        material.private_key = data(certificate.private_key.as_ref(), &format!("{at}: private_key"))?;
    } else if let Some(config) = common.tls_certificate_sds_secret_configs.first() {
        let secret = sds_secret(config, at)?;
        material.certificate_chain = Some(TlsData::Sds(secret.clone(), SecretPart::CertificateChain));
        material.private_key = Some(TlsData::Sds(secret, SecretPart::PrivateKey));
    }
    let validation: Option<&CertificateValidationContext> = match &common.validation_context_type {
        Some(ValidationContextType::ValidationContext(validation)) => Some(validation),
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            if let Some(config) = &combined.validation_context_sds_secret_config {
                material.trusted_ca = Some(TlsData::Sds(sds_secret(config, at)?, SecretPart::TrustedCa));
            }
            combined.default_validation_context.as_ref()
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(config)) => {
            material.trusted_ca = Some(TlsData::Sds(sds_secret(config, at)?, SecretPart::TrustedCa));
            None
        }
        _ => None,
    };
    if let Some(validation) = validation {
        if material.trusted_ca.is_none() {
            material.trusted_ca = data(validation.trusted_ca.as_ref(), &format!("{at}: trusted_ca"))?;
        }
        material.subject_alt_names = subject_alt_names(validation, at)?;
    }
    Ok(material)
}

/// The exact subject alternative names a validation context asks for (typed or legacy form).
pub(crate) fn subject_alt_names(
    validation: &CertificateValidationContext,
    at: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    for (index, san) in validation.match_typed_subject_alt_names.iter().enumerate() {
        if let Some(matcher) = &san.matcher {
            let compiled = StringMatcher::compile(matcher, &format!("{at}: match_typed_subject_alt_names[{index}]"))?;
            if let StringMatcher::Exact(name, _) = compiled {
                names.push(name);
            }
        }
    }
    #[allow(deprecated)]
    for matcher in &validation.match_subject_alt_names {
        if let Some(envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(name)) =
            &matcher.match_pattern
        {
            names.push(name.clone());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::ConfigSource;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::CombinedCertificateValidationContext;

    fn sds(name: &str, cluster: &str) -> SdsSecretConfig {
        istio_xds::sds::secret_from_cluster(name, cluster)
    }

    /// Istio 1.4's node-agent form: Google gRPC to the socket, the token file sent as
    /// `istio_sds_credentials_header-bin`.
    #[test]
    fn node_agent_secrets_carry_the_token_file_as_call_credentials() {
        let config = istio_xds::sds::secret_from_node_agent(
            "default",
            "unix:/var/run/sds/uds_path",
            "/var/run/secrets/tokens/istio-token",
        );
        let secret = sds_secret(&config, "listener l").expect("secret");
        assert_eq!(
            secret.server,
            SdsServer::Target {
                uri: "unix:/var/run/sds/uds_path".into(),
                credentials: Some(Box::new(FileCredentials {
                    path: PathBuf::from("/var/run/secrets/tokens/istio-token"),
                    header: "istio_sds_credentials_header-bin".into(),
                    prefix: String::new(),
                })),
            }
        );
        assert_eq!(secret.server.to_string(), "unix:/var/run/sds/uds_path");
    }

    /// Istio's SDS mode: the workload certificate `default` and the root `ROOTCA`, both from
    /// the `sds-grpc` cluster, with subject alternative names alongside.
    #[test]
    fn istio_sds_context() {
        let common = CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("default", "sds-grpc")],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext::default()),
                    validation_context_sds_secret_config: Some(sds("ROOTCA", "sds-grpc")),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let material = material(&common, "cluster c").unwrap();
        let server = SdsServer::Cluster("sds-grpc".into());
        let default = SdsSecret { name: "default".into(), server: server.clone() };
        assert_eq!(material.certificate_chain, Some(TlsData::Sds(default.clone(), SecretPart::CertificateChain)));
        assert_eq!(material.private_key, Some(TlsData::Sds(default, SecretPart::PrivateKey)));
        assert_eq!(
            material.trusted_ca,
            Some(TlsData::Sds(SdsSecret { name: "ROOTCA".into(), server }, SecretPart::TrustedCa))
        );
        assert_eq!(material.secrets().count(), 3);
    }

    #[test]
    fn secrets_over_ads_are_rejected_with_the_field() {
        let mut config = sds("default", "sds-grpc");
        config.sds_config = Some(ConfigSource {
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(Default::default())),
            ..Default::default()
        });
        let common = CommonTlsContext { tls_certificate_sds_secret_configs: vec![config], ..Default::default() };
        let error = material(&common, "cluster c").unwrap_err();
        assert_eq!(error.field, "cluster c: sds secret default");
        assert!(error.reason.contains("ADS"), "{error}");
    }

    #[test]
    fn inline_strings_are_material() {
        let source =
            DataSource { specifier: Some(data_source::Specifier::InlineString("PEM".into())), ..Default::default() };
        assert_eq!(data(Some(&source), "x").unwrap(), Some(TlsData::Inline(b"PEM".to_vec())));
    }
}
