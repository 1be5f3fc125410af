//! The workloads the node agent serves. A caller proves who it is with its service-account
//! token in the SDS stream's metadata (`istio_sds_credentials_header-bin`, as Envoy's
//! file-based call credentials send it, or `authorization: Bearer …`). For each distinct
//! token the agent makes a key and a CSR for the SPIFFE identity the token names, and Citadel
//! signs it only if the token really is that account's — so a forged token gets nothing, even
//! for an identity already served. Each certificate is renewed in its grace period with the
//! newest token Citadel accepted for that account, and the new version is pushed to every open
//! stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use istio_pki::files::KeyCertBundle;
use istio_pki::identity::SpiffeId;
use istio_pki::token::ServiceAccount;
use istio_sds::{SecretProvider, SecretsWatch, WorkloadSecrets};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::ca_client::{CaError, CitadelClient};

/// The metadata key Envoy's file-based call credentials send the token under (binary).
pub const TOKEN_HEADER: &str = "istio_sds_credentials_header-bin";
/// How long to wait before trying a failed renewal again.
const RETRY: Duration = Duration::from_secs(2);

/// Certificate lifetimes.
#[derive(Debug, Clone)]
pub struct Lifetimes {
    pub trust_domain: String,
    /// What the agent asks Citadel for (`SECRET_TTL`).
    pub ttl: Duration,
    /// Renew this long before expiry (`SECRET_GRACE_DURATION`); half the lifetime when that is
    /// the whole lifetime or more.
    pub grace: Duration,
}

impl Lifetimes {
    fn grace_for(&self, lifetime: Duration) -> Duration {
        if self.grace >= lifetime {
            lifetime / 2
        } else {
            self.grace
        }
    }
}

/// Why a caller gets no certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no credential token in {TOKEN_HEADER} or authorization")]
    NoToken,
    #[error("the token names no service account: {0}")]
    NotAnAccount(#[from] istio_pki::token::TokenError),
    #[error(transparent)]
    Identity(#[from] istio_pki::identity::IdentityError),
    #[error("making a CSR: {0}")]
    Csr(#[from] istio_pki::csr::CsrError),
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Status {
        match &error {
            IdentityError::Ca(CaError::Refused(status)) => Status::new(status.code(), error.to_string()),
            IdentityError::NoToken | IdentityError::NotAnAccount(_) => Status::unauthenticated(error.to_string()),
            _ => Status::unavailable(error.to_string()),
        }
    }
}

/// The served identities: one certificate per caller token, renewed while the agent runs.
pub struct Identities {
    ca: CitadelClient,
    lifetimes: Lifetimes,
    by_token: Mutex<HashMap<String, SecretsWatch>>,
    /// The newest token Citadel accepted for each account, for renewals.
    accepted: Arc<Mutex<HashMap<ServiceAccount, String>>>,
}

impl Identities {
    pub fn new(ca: CitadelClient, lifetimes: Lifetimes) -> Identities {
        Identities { ca, lifetimes, by_token: Mutex::default(), accepted: Arc::default() }
    }
}

/// The caller's token from the stream's metadata.
fn caller_token(metadata: &MetadataMap) -> Result<String, IdentityError> {
    if let Some(value) = metadata.get_bin(TOKEN_HEADER) {
        let bytes = value.to_bytes().map_err(|_| IdentityError::NoToken)?;
        return Ok(String::from_utf8_lossy(&bytes).trim().to_string());
    }
    let bearer = metadata.get("authorization").and_then(|value| value.to_str().ok());
    bearer
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string())
        .ok_or(IdentityError::NoToken)
}

/// Signs a new key for `account` with `token`.
async fn issue(
    ca: &CitadelClient,
    lifetimes: &Lifetimes,
    account: &ServiceAccount,
    token: &str,
    version: u64,
) -> Result<WorkloadSecrets, IdentityError> {
    let identity = SpiffeId::new(&lifetimes.trust_domain, &account.namespace, &account.name)?.to_string();
    let (csr, key) = istio_pki::csr::generate(&[identity])?;
    let mut chain = ca.sign(token, &csr, lifetimes.ttl).await?;
    let root = if chain.len() > 1 { chain.pop().unwrap_or_default() } else { chain[0].clone() };
    let joined: String = chain.iter().map(|pem| format!("{}\n", pem.trim_end())).collect();
    let bundle = KeyCertBundle {
        cert_chain_pem: joined.into_bytes(),
        key_pem: key.into_bytes(),
        root_cert_pem: format!("{}\n", root.trim_end()).into_bytes(),
    };
    Ok(WorkloadSecrets { bundle, version })
}

/// When the certificate of `secrets` should be renewed.
fn renewal_time(secrets: &WorkloadSecrets, lifetimes: &Lifetimes) -> SystemTime {
    let info = istio_pki::pem::certificates(&secrets.bundle.cert_chain_pem)
        .ok()
        .and_then(|chain| chain.first().and_then(|leaf| istio_pki::certificate::inspect(leaf).ok()));
    match info {
        Some(info) => info.not_after - lifetimes.grace_for(info.lifetime()),
        None => SystemTime::now(),
    }
}

#[tonic::async_trait]
impl SecretProvider for Identities {
    type Set = WorkloadSecrets;
    async fn secrets_for(&self, metadata: &MetadataMap) -> Result<SecretsWatch, Status> {
        let token = caller_token(metadata)?;
        let known = istio_runtime::sync::lock(&self.by_token).get(&token).cloned();
        if let Some(secrets) = known {
            return Ok(secrets);
        }
        let account = istio_pki::token::claimed_account(&token).map_err(IdentityError::from)?;
        let first = match issue(&self.ca, &self.lifetimes, &account, &token, 1).await {
            Ok(first) => first,
            Err(error) => {
                tracing::warn!(%account.namespace, %account.name, "no certificate: {error}");
                return Err(error.into());
            }
        };
        tracing::info!(%account.namespace, %account.name, "issued a workload certificate");
        istio_runtime::sync::lock(&self.accepted).insert(account.clone(), token.clone());
        let (sender, receiver) = watch::channel(Some(Arc::new(first)));
        istio_runtime::sync::lock(&self.by_token).insert(token, receiver.clone());
        let (ca, lifetimes, accepted) = (self.ca.clone(), self.lifetimes.clone(), self.accepted.clone());
        tokio::spawn(renew(sender, ca, lifetimes, accepted, account));
        Ok(receiver)
    }
}

/// Renews the certificate in `sender` in each grace period, until no one follows it.
async fn renew(
    sender: watch::Sender<Option<Arc<WorkloadSecrets>>>,
    ca: CitadelClient,
    lifetimes: Lifetimes,
    accepted: Arc<Mutex<HashMap<ServiceAccount, String>>>,
    account: ServiceAccount,
) {
    loop {
        let Some(current) = sender.borrow().clone() else { return };
        let wait = renewal_time(&current, &lifetimes).duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = sender.closed() => return,
        }
        loop {
            let token = istio_runtime::sync::lock(&accepted).get(&account).cloned().unwrap_or_default();
            match issue(&ca, &lifetimes, &account, &token, current.version + 1).await {
                Ok(renewed) => {
                    tracing::info!(%account.namespace, %account.name, version = renewed.version, "renewed a workload certificate");
                    sender.send_replace(Some(Arc::new(renewed)));
                    break;
                }
                Err(error) => {
                    tracing::warn!(%account.namespace, %account.name, "renewing: {error}; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_binary_header_or_a_bearer() {
        let mut metadata = MetadataMap::new();
        assert!(matches!(caller_token(&metadata), Err(IdentityError::NoToken)));
        metadata.insert("authorization", "Bearer a.b.c".parse().expect("value"));
        assert_eq!(caller_token(&metadata).expect("bearer"), "a.b.c");
        metadata.insert_bin(TOKEN_HEADER, tonic::metadata::MetadataValue::from_bytes(b"x.y.z\n"));
        assert_eq!(caller_token(&metadata).expect("file-based"), "x.y.z");
    }

    #[test]
    fn a_grace_longer_than_the_lifetime_becomes_half_of_it() {
        let lifetimes = Lifetimes {
            trust_domain: "cluster.local".into(),
            ttl: Duration::from_secs(10),
            grace: Duration::from_secs(43200),
        };
        assert_eq!(lifetimes.grace_for(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(lifetimes.grace_for(Duration::from_secs(86400)), Duration::from_secs(43200));
    }
}
