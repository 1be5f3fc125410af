//! The CA API on the gRPC port (8060), over TLS: Istio 1.4's
//! `istio.v1.auth.IstioCertificateService/CreateCertificate` (what node agents call with a CSR
//! and a token) and the older `istio.v1.auth.IstioCAService/HandleCSR`.
//!
//! A request is signed only when its caller authenticated ([`crate::authenticate`]) and every
//! name its CSR asks for is one of the caller's identities; the certificate carries those
//! names. Lifetimes: none asked means the workload default, more than the maximum is refused.
//! The answer is the leaf, the chain between it and the root (if any), and the root.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use istio_api::pb::istio::v1::auth as pb;
use istio_pki::ca::CertificateAuthority;
use istio_pki::csr::SigningRequest;
use tonic::{Code, Request, Response, Status};

use crate::authenticate::{authenticate, Authenticator, Caller, Credentials};
use crate::metrics::{ErrorLabels, Metrics, SignError};
use crate::server_tls::ServerTls;
use istio_runtime::grpc_metrics::{GrpcServerMetrics, Naming};

/// How the CA server runs.
#[derive(Debug)]
pub struct CaServerSettings {
    pub address: SocketAddr,
    /// The names its own certificate carries (`--grpc-host-identities` and the service's FQDN).
    pub hostnames: Vec<String>,
    /// Lifetime of a certificate when the request asks for none (`--workload-cert-ttl`).
    pub default_ttl: Duration,
    /// The longest lifetime a request may ask for (`--max-workload-cert-ttl`); also the
    /// server certificate's lifetime, as in Istio 1.4.
    pub max_ttl: Duration,
    pub authenticators: Vec<Authenticator>,
}

/// Why the CA server could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaServerError {
    #[error("the CA server certificate: {0}")]
    Tls(#[from] crate::server_tls::ServerTlsError),
    #[error(transparent)]
    Bind(#[from] istio_runtime::listen::BindError),
}

/// The CA service: shared by both gRPC services.
#[derive(Clone)]
struct CaService {
    ca: Arc<ArcSwap<CertificateAuthority>>,
    settings: Arc<CaServerSettings>,
    metrics: Metrics,
}

/// Why a request was not signed, and the gRPC status it gets.
#[derive(Debug)]
enum Refusal {
    Unauthenticated(String),
    Csr(String),
    NotCallersName { asked: String, identities: Vec<String> },
    Ttl(String),
    CertificateGeneration(String),
}

impl Refusal {
    fn status(&self) -> Status {
        match self {
            Refusal::Unauthenticated(why) => {
                Status::new(Code::Unauthenticated, format!("request authenticate failure: {why}"))
            }
            Refusal::Csr(why) => Status::new(Code::InvalidArgument, format!("CSR signing error ({why})")),
            Refusal::NotCallersName { asked, identities } => Status::new(
                Code::PermissionDenied,
                format!(
                    "CSR signing error (the CSR asks for {asked:?}, which is not the caller's identity {identities:?})"
                ),
            ),
            Refusal::Ttl(why) => Status::new(Code::InvalidArgument, format!("CSR signing error ({why})")),
            Refusal::CertificateGeneration(why) => Status::new(Code::Internal, format!("CSR signing error ({why})")),
        }
    }
}

/// A signed certificate, as the response lists it.
struct Signed {
    leaf_pem: String,
    chain_pem: String,
    root_pem: String,
}

impl CaService {
    /// Authenticates, checks and signs one CSR.
    async fn sign(&self, credentials: &Credentials, csr_pem: &str, ttl: Duration) -> Result<Signed, Refusal> {
        self.metrics.server.csr.inc();
        let caller = match authenticate(&self.settings.authenticators, credentials).await {
            Ok(caller) => caller,
            Err(failures) => {
                self.metrics.server.authentication_failures.inc();
                tracing::warn!(%failures, "request authentication failure");
                return Err(Refusal::Unauthenticated(failures.to_string()));
            }
        };
        let request = SigningRequest::from_pem(csr_pem).map_err(|error| {
            self.metrics.server.csr_parsing_errors.inc();
            self.sign_error(SignError::CSR_ERROR, Refusal::Csr(error.to_string()))
        })?;
        self.authorize(&caller, &request)?;
        let ttl = self.lifetime(ttl).map_err(|refusal| self.sign_error(SignError::TTL_ERROR, refusal))?;
        let ca = self.ca.load_full();
        let leaf_and_chain = ca.sign(&request, request.names(), ttl).map_err(|error| {
            self.sign_error(SignError::CERT_GEN_ERROR, Refusal::CertificateGeneration(error.to_string()))
        })?;
        let chain_pem = ca.chain_pem().to_string();
        let leaf_pem = leaf_and_chain.strip_suffix(chain_pem.as_str()).unwrap_or(&leaf_and_chain).to_string();
        self.metrics.server.issued.inc();
        tracing::debug!(names = ?request.names(), ?ttl, "CSR signed");
        Ok(Signed { leaf_pem, chain_pem, root_pem: ca.root_pem().to_string() })
    }

    fn sign_error(&self, error: SignError, refusal: Refusal) -> Refusal {
        self.metrics.server.sign_errors.get_or_create(&ErrorLabels { error }).inc();
        tracing::warn!(?refusal, "CSR signing error");
        refusal
    }

    /// Every name the CSR asks for must be one the caller proved.
    fn authorize(&self, caller: &Caller, request: &SigningRequest) -> Result<(), Refusal> {
        match request.names().iter().find(|name| !caller.identities.contains(name)) {
            None => Ok(()),
            Some(asked) => {
                self.metrics.server.id_extraction_errors.inc();
                Err(Refusal::NotCallersName { asked: asked.clone(), identities: caller.identities.clone() })
            }
        }
    }

    /// The lifetime to sign for: the default when none is asked, refused above the maximum.
    fn lifetime(&self, requested: Duration) -> Result<Duration, Refusal> {
        if requested.is_zero() {
            return Ok(self.settings.default_ttl);
        }
        if requested > self.settings.max_ttl {
            return Err(Refusal::Ttl(format!(
                "requested TTL {} is greater than the max allowed TTL {}",
                istio_duration::format(requested),
                istio_duration::format(self.settings.max_ttl)
            )));
        }
        Ok(requested)
    }
}

fn credentials<T>(request: &Request<T>) -> Credentials {
    Credentials {
        peer_certificates: request.peer_certs(),
        authorization: request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
    }
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

#[tonic::async_trait]
impl pb::istio_certificate_service_server::IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<pb::IstioCertificateRequest>,
    ) -> Result<Response<pb::IstioCertificateResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let signed = self
            .sign(&credentials, &request.csr, seconds(request.validity_duration))
            .await
            .map_err(|refusal| refusal.status())?;
        let mut cert_chain = vec![signed.leaf_pem];
        if !signed.chain_pem.is_empty() {
            cert_chain.push(signed.chain_pem);
        }
        cert_chain.push(signed.root_pem);
        Ok(Response::new(pb::IstioCertificateResponse { cert_chain }))
    }
}

#[tonic::async_trait]
impl pb::istio_ca_service_server::IstioCaService for CaService {
    async fn handle_csr(&self, request: Request<pb::CsrRequest>) -> Result<Response<pb::CsrResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let csr = String::from_utf8_lossy(&request.csr_pem).into_owned();
        let ttl = seconds(i64::from(request.requested_ttl_minutes) * 60);
        let signed = self.sign(&credentials, &csr, ttl).await.map_err(|refusal| refusal.status())?;
        Ok(Response::new(pb::CsrResponse {
            is_approved: true,
            status: None,
            signed_cert: signed.leaf_pem.into_bytes(),
            cert_chain: signed.chain_pem.into_bytes(),
        }))
    }
}

/// Starts the CA server; returns the bound address.
pub async fn serve(
    ca: Arc<ArcSwap<CertificateAuthority>>,
    settings: CaServerSettings,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, CaServerError> {
    let tls = Arc::new(ServerTls::new(ca.clone(), settings.hostnames.clone(), settings.max_ttl)?);
    let (listener, address) = istio_runtime::listen::bind(settings.address).await?;
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let incoming = crate::server_tls::accept(listener, tls, shutdown.clone());
    let grpc_metrics = metrics.grpc.clone().unwrap_or_else(|| {
        let mut unexported = prometheus_client::registry::Registry::default();
        GrpcServerMetrics::register(&mut unexported, Naming::GoGrpcPrometheus, &crate::metrics::CA_METHODS)
    });
    let service = CaService { ca, settings: Arc::new(settings), metrics };
    let router = tonic::transport::Server::builder()
        .layer(grpc_metrics)
        .add_service(pb::istio_certificate_service_server::IstioCertificateServiceServer::new(service.clone()))
        .add_service(pb::istio_ca_service_server::IstioCaServiceServer::new(service));
    tokio::spawn(async move {
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(%error, "CA server stopped");
        }
    });
    tracing::info!(%address, "CA server listening");
    Ok(address)
}
