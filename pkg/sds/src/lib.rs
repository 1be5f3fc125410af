//! Workload certificates over Envoy's Secret Discovery Service (SDS, xDS v3), as Istio's
//! agents serve them to proxies on a Unix socket: the secret `default` (the workload's
//! certificate chain and key) and `ROOTCA` (the root to verify peers with).
//!
//! - [`server`]: the gRPC `SecretDiscoveryService` (`StreamSecrets`, `FetchSecrets`), pushing a
//!   new version to every open stream when the caller's certificate changes;
//! - [`files`]: a source that follows a `/etc/certs`-style directory, so a stock Envoy gets a
//!   rotated certificate over SDS instead of by a restart.
//!
//! A caller's secrets come from a [`SecretProvider`]: one for every caller (files), one per
//! caller identity (the node agent, which signs a certificate for each), or the gateways'
//! named certificates ([`gateway`]: `credentialName` Secrets, as 1.4's ingress-gateway agent).

pub mod files;
pub mod gateway;
pub mod server;

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use istio_pki::files::KeyCertBundle;
use tokio::sync::watch;

/// The secret holding the workload's certificate chain and key.
pub const WORKLOAD_SECRET: &str = "default";
/// The secret holding the root certificate peers are verified with.
pub const ROOT_SECRET: &str = "ROOTCA";

/// A workload's certificates as served: the bundle and the version it is served as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSecrets {
    pub bundle: KeyCertBundle,
    /// Grows with every change.
    pub version: u64,
}

/// Secrets served together, by name.
pub trait SecretSet: Send + Sync + 'static {
    /// The secret `name`, if this set has it.
    fn secret(&self, name: &str) -> Option<Secret>;
    /// The set's version; grows with every change.
    fn version(&self) -> u64;
}

impl SecretSet for WorkloadSecrets {
    /// `default` (the chain and key) or `ROOTCA` (the root).
    fn secret(&self, name: &str) -> Option<Secret> {
        let inline = |bytes: &[u8]| DataSource {
            specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
            ..Default::default()
        };
        let kind = match name {
            WORKLOAD_SECRET => secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(&self.bundle.cert_chain_pem)),
                private_key: Some(inline(&self.bundle.key_pem)),
                ..Default::default()
            }),
            ROOT_SECRET => secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(&self.bundle.root_cert_pem)),
                ..Default::default()
            }),
            _ => return None,
        };
        Some(Secret { name: name.to_string(), r#type: Some(kind) })
    }

    fn version(&self) -> u64 {
        self.version
    }
}

/// The current secrets (`None` until there are any), following every change.
pub type Watch<S> = watch::Receiver<Option<Arc<S>>>;

/// A workload's secrets, following every change.
pub type SecretsWatch = Watch<WorkloadSecrets>;

/// Where a caller's secrets come from.
#[tonic::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    type Set: SecretSet;
    /// The secrets for the caller whose request carries `metadata`, or why it gets none.
    async fn secrets_for(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Watch<Self::Set>, tonic::Status>;
}

/// The same secrets for every caller.
#[derive(Debug, Clone)]
pub struct SharedSecrets<S>(pub Watch<S>);

#[tonic::async_trait]
impl<S: SecretSet> SecretProvider for SharedSecrets<S> {
    type Set = S;
    async fn secrets_for(&self, _metadata: &tonic::metadata::MetadataMap) -> Result<Watch<S>, tonic::Status> {
        Ok(self.0.clone())
    }
}
