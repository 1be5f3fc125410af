//! Citadel's metrics on the monitoring port, with exactly Istio 1.4's names (its OpenCensus
//! counters had no `_total` suffix, and 1.4's Citadel dashboard queries them so), plus the
//! expiry of each workload Secret's certificate.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use istio_runtime::grpc_metrics::{GrpcServerMetrics, Method, Naming};
use istio_runtime::metrics::ExactCounter as Counter;

/// The CA server's methods, whose gRPC series exist from the start.
pub const CA_METHODS: [Method<'static>; 2] = [
    ("istio.v1.auth.IstioCertificateService", "CreateCertificate", "unary"),
    ("istio.v1.auth.IstioCAService", "HandleCSR", "unary"),
];

/// Why a certificate could not be signed, as Istio 1.4 labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SignError {
    CA_NOT_READY,
    CSR_ERROR,
    TTL_ERROR,
    CERT_GEN_ERROR,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: SignError,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SecretLabels {
    pub namespace: String,
    pub secret: String,
}

/// The CA server's metrics.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    pub csr: Counter,
    pub authentication_failures: Counter,
    pub csr_parsing_errors: Counter,
    pub id_extraction_errors: Counter,
    pub sign_errors: Family<ErrorLabels, Counter>,
    pub issued: Counter,
}

/// Every metric Citadel keeps.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub server: ServerMetrics,
    pub created_for_account: Counter,
    pub deleted_with_account: Counter,
    pub recreated_after_deletion: Counter,
    pub controller_sign_errors: Family<ErrorLabels, Counter>,
    /// The controller could not make a workload's key or certificate request.
    pub controller_csr_errors: Counter,
    /// The CA server's calls, under go-grpc-prometheus' names (set by `register`).
    pub grpc: Option<GrpcServerMetrics>,
    pub root_expiry: Gauge,
    pub secret_expiry: Family<SecretLabels, Gauge>,
}

impl Metrics {
    pub fn register(registry: &istio_runtime::monitoring::SharedRegistry) -> Metrics {
        let metrics = Metrics::default();
        let mut registry = istio_runtime::sync::lock(registry);
        registry.register(
            "citadel_secret_controller_svc_acc_created_cert_count",
            "The number of certificates created due to service account creation.",
            metrics.created_for_account.clone(),
        );
        registry.register(
            "citadel_secret_controller_svc_acc_deleted_cert_count",
            "The number of certificates deleted due to service account deletion.",
            metrics.deleted_with_account.clone(),
        );
        registry.register(
            "citadel_secret_controller_secret_deleted_cert_count",
            "The number of certificates recreated due to secret deletion (service account still exists).",
            metrics.recreated_after_deletion.clone(),
        );
        registry.register(
            "citadel_secret_controller_csr_sign_err_count",
            "The number of errors occurred when signing the CSR.",
            metrics.controller_sign_errors.clone(),
        );
        registry.register(
            "citadel_secret_controller_csr_err_count",
            "The number of errors occurred when creating the CSR.",
            metrics.controller_csr_errors.clone(),
        );
        let grpc = GrpcServerMetrics::register(&mut registry, Naming::GoGrpcPrometheus, &CA_METHODS);
        let metrics = Metrics { grpc: Some(grpc), ..metrics };
        let server = &metrics.server;
        registry.register(
            "citadel_server_csr_count",
            "The number of CSRs received by Citadel server.",
            server.csr.clone(),
        );
        registry.register(
            "citadel_server_authentication_failure_count",
            "The number of authentication failures.",
            server.authentication_failures.clone(),
        );
        registry.register(
            "citadel_server_csr_parsing_err_count",
            "The number of errors occurred when parsing the CSR.",
            server.csr_parsing_errors.clone(),
        );
        registry.register(
            "citadel_server_id_extraction_err_count",
            "The number of errors occurred when extracting the ID from CSR.",
            server.id_extraction_errors.clone(),
        );
        registry.register(
            "citadel_server_csr_sign_err_count",
            "The number of errors occurred when signing the CSR.",
            server.sign_errors.clone(),
        );
        registry.register(
            "citadel_server_success_cert_issuance_count",
            "The number of certificates issuances that have succeeded.",
            server.issued.clone(),
        );
        registry.register(
            "citadel_server_root_cert_expiry_timestamp",
            "The unix timestamp, in seconds, when Citadel root cert will expire. We set it to negative in case of internal error.",
            metrics.root_expiry.clone(),
        );
        registry.register(
            "citadel_secret_controller_cert_expiry_timestamp",
            "The unix timestamp, in seconds, when the certificate in a workload Secret expires.",
            metrics.secret_expiry.clone(),
        );
        metrics
    }

    /// Records when the root (the first certificate of the bundle) expires; -1 if unreadable.
    pub fn set_root_expiry(&self, root_pem: &str) {
        let expiry = istio_pki::pem::certificates(root_pem.as_bytes())
            .ok()
            .and_then(|roots| istio_pki::certificate::inspect(&roots[0]).ok())
            .map_or(-1, |root| unix_seconds(root.not_after));
        self.root_expiry.set(expiry);
    }
}

/// Seconds since the epoch, negative before it.
pub fn unix_seconds(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}
