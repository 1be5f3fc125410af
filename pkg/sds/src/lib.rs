//! Workload certificates over Envoy's Secret Discovery Service (SDS, xDS v3), as Istio's
//! agents serve them to proxies on a Unix socket: the secret `default` (the workload's
//! certificate chain and key) and `ROOTCA` (the root to verify peers with).
//!
//! - [`server`]: the gRPC `SecretDiscoveryService` (`StreamSecrets`, `FetchSecrets`), pushing a
//!   new version to every open stream when the caller's certificate changes;
//! - [`files`]: a source that follows a `/etc/certs`-style directory, so a stock Envoy gets a
//!   rotated certificate over SDS instead of by a restart.
//!
//! A caller's secrets come from a [`SecretProvider`]: one for every caller (files), or one per
//! caller identity (the node agent, which signs a certificate for each).

pub mod files;
pub mod server;

use std::sync::Arc;

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

/// The current secrets (`None` until there are any), following every change.
pub type SecretsWatch = watch::Receiver<Option<Arc<WorkloadSecrets>>>;

/// Where a caller's secrets come from.
#[tonic::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    /// The secrets for the caller whose request carries `metadata`, or why it gets none.
    async fn secrets_for(&self, metadata: &tonic::metadata::MetadataMap) -> Result<SecretsWatch, tonic::Status>;
}

/// The same secrets for every caller.
#[derive(Debug, Clone)]
pub struct SharedSecrets(pub SecretsWatch);

#[tonic::async_trait]
impl SecretProvider for SharedSecrets {
    async fn secrets_for(&self, _metadata: &tonic::metadata::MetadataMap) -> Result<SecretsWatch, tonic::Status> {
        Ok(self.0.clone())
    }
}
