//! Citadel's CA API as the node agent calls it: `CreateCertificate` over TLS, trusting the
//! root Citadel publishes, with the workload's token as `authorization: Bearer …`.

use std::time::Duration;

use istio_api::pb::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use istio_api::pb::istio::v1::auth::IstioCertificateRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Why a certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA endpoint {endpoint}: {source}")]
    Connect { endpoint: String, source: tonic::transport::Error },
    #[error("the token cannot be sent as metadata")]
    BadToken,
    #[error("Citadel refused: {0}")]
    Refused(#[from] tonic::Status),
    #[error("Citadel answered with an empty chain")]
    EmptyChain,
}

/// A connection to Citadel.
#[derive(Debug, Clone)]
pub struct CitadelClient {
    client: IstioCertificateServiceClient<Channel>,
}

impl CitadelClient {
    /// Connects lazily to `endpoint` (`host:port`), checking its certificate against
    /// `root_pem` for the name `server_name`.
    pub fn new(endpoint: &str, server_name: &str, root_pem: &str) -> Result<CitadelClient, CaError> {
        let connect_error = |source| CaError::Connect { endpoint: endpoint.to_string(), source };
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root_pem)).domain_name(server_name);
        let channel = Endpoint::from_shared(format!("https://{endpoint}"))
            .map_err(connect_error)?
            .connect_timeout(Duration::from_secs(5))
            .tls_config(tls)
            .map_err(connect_error)?
            .connect_lazy();
        Ok(CitadelClient { client: IstioCertificateServiceClient::new(channel) })
    }

    /// Signs `csr_pem` for the caller `token` proves; returns the chain, leaf first, root last.
    pub async fn sign(&self, token: &str, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, CaError> {
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: csr_pem.to_string(),
            subject_id: String::new(),
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        });
        let value = format!("Bearer {token}").parse().map_err(|_| CaError::BadToken)?;
        request.metadata_mut().insert("authorization", value);
        let answer = self.client.clone().create_certificate(request).await?.into_inner();
        if answer.cert_chain.is_empty() {
            return Err(CaError::EmptyChain);
        }
        Ok(answer.cert_chain)
    }
}
