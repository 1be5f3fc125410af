//! The TLS pieces several generators share: Istio mutual TLS (the workload certificate from
//! `/etc/certs` or over SDS from the node agent) and subject-alternative-name matchers.

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{subject_alt_name_matcher, SubjectAltNameMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};

use super::file_source;

/// The cluster (defined in the proxy's bootstrap) through which a proxy in SDS mode fetches its
/// workload certificate (`default`) and root certificate (`ROOTCA`) from the node agent.
pub(crate) const SDS_CLUSTER: &str = "sds-grpc";

/// An SDS reference to one of the node agent's secrets (`default` or `ROOTCA`).
pub(crate) fn sds_secret(
    name: &str,
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig {
    istio_xds::sds::secret_from_cluster(name, SDS_CLUSTER)
}

/// The TLS context of Istio mutual TLS: the workload certificate and the mesh root, from the
/// `/etc/certs` files (1.4's default) or, for a proxy in SDS mode, over SDS. The peer's
/// certificate must carry one of `peer_names` (any, when empty).
pub(crate) fn istio_mutual_tls(
    alpn: Vec<String>,
    sds: bool,
    peer_names: &[String],
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context, CertificateValidationContext, CommonTlsContext, TlsCertificate,
    };
    let mut common = CommonTlsContext { alpn_protocols: alpn, ..Default::default() };
    if sds {
        common.tls_certificate_sds_secret_configs = vec![sds_secret("default")];
        common.validation_context_type = Some(common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: peer_names.iter().map(|name| san_matcher(name)).collect(),
                    ..Default::default()
                }),
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
