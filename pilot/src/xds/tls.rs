//! The TLS pieces several generators share: Istio mutual TLS (the workload certificate from
//! `/etc/certs` or over SDS from the node agent) and subject-alternative-name matchers.

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{subject_alt_name_matcher, SubjectAltNameMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};

use super::file_source;

/// The cluster (defined in the proxy's bootstrap) through which a proxy whose agent serves
/// its mounted certificates over SDS fetches them (`default`, `ROOTCA`).
pub(crate) const SDS_CLUSTER: &str = "sds-grpc";

/// Where a proxy's workload certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CertSource {
    /// The `/etc/certs` files (1.4's default).
    Files,
    /// SDS from the bootstrap's `sds-grpc` cluster: the proxy's own agent.
    AgentSds,
    /// SDS from the node agent on `uds_path`, the caller proving itself with the token at
    /// `token_path` (1.4's Google gRPC with file-based call credentials).
    NodeAgent { uds_path: String, token_path: String },
}

impl CertSource {
    /// The source for `proxy`: SDS when its metadata says so (`SDS=true`), from the node agent
    /// when the mesh names one (`sdsUdsPath`) and the proxy's own agent does not serve them
    /// (`AGENT_SDS=true`), else from its agent.
    pub(crate) fn for_proxy(proxy: &crate::node::Proxy, mesh: &crate::model::MeshSettings) -> CertSource {
        if !proxy.sds {
            CertSource::Files
        } else if proxy.agent_sds || mesh.sds_uds_path.is_empty() {
            CertSource::AgentSds
        } else {
            let token_path = if proxy.sds_token_path.is_empty() {
                istio_xds::sds::TOKEN_PATH.to_string()
            } else {
                proxy.sds_token_path.clone()
            };
            CertSource::NodeAgent { uds_path: mesh.sds_uds_path.clone(), token_path }
        }
    }

    /// A part of the scope key: proxies whose certificates come from different places get
    /// different clusters.
    pub(crate) fn key(&self) -> String {
        match self {
            CertSource::Files => String::new(),
            CertSource::AgentSds => "|sds".to_string(),
            CertSource::NodeAgent { uds_path, token_path } => format!("|sds:{uds_path}:{token_path}"),
        }
    }

    /// An SDS reference to the secret `name` (`default` or `ROOTCA`); `None` for files.
    fn secret(
        &self,
        name: &str,
    ) -> Option<envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig> {
        match self {
            CertSource::Files => None,
            CertSource::AgentSds => Some(istio_xds::sds::secret_from_cluster(name, SDS_CLUSTER)),
            CertSource::NodeAgent { uds_path, token_path } => {
                Some(istio_xds::sds::secret_from_node_agent(name, uds_path, token_path))
            }
        }
    }
}

/// The TLS context of Istio mutual TLS: the workload certificate and the mesh root, from the
/// `/etc/certs` files (1.4's default) or over SDS. The peer's certificate must carry one of
/// `peer_names` (any, when empty).
pub(crate) fn istio_mutual_tls(
    alpn: Vec<String>,
    certs: &CertSource,
    peer_names: &[String],
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context, CertificateValidationContext, CommonTlsContext, TlsCertificate,
    };
    let mut common = CommonTlsContext { alpn_protocols: alpn, ..Default::default() };
    if let (Some(certificate), Some(root)) = (certs.secret("default"), certs.secret("ROOTCA")) {
        common.tls_certificate_sds_secret_configs = vec![certificate];
        common.validation_context_type = Some(common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: peer_names.iter().map(|name| san_matcher(name)).collect(),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(root),
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
                match_typed_subject_alt_names: peer_names.iter().map(|name| san_matcher(name)).collect(),
                ..Default::default()
            }));
    }
    common
}

/// A matcher for one subject alternative name: a URI (SPIFFE identity) or a DNS name.
pub(crate) fn san_matcher(name: &str) -> SubjectAltNameMatcher {
    let san_type = if name.contains("://") {
        subject_alt_name_matcher::SanType::Uri
    } else {
        subject_alt_name_matcher::SanType::Dns
    };
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(name.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}
