//! Service-account tokens, the API server's part the local platform plays: at install it makes
//! a signing key (ECDSA P-256) whose public half Citadel gets to check tokens with; the kubelet
//! part writes a signed token into each `serviceAccountToken` source of a pod's projected
//! volumes (audience and lifetime as the pod asks) and renews it after 80 % of its lifetime, as
//! the kubelet does.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use istio_pki::token::{ServiceAccount, TokenIssuer, TokenRequest, LOCAL_ISSUER};
use serde_json::Value;

use crate::layout::Layout;

/// Kubernetes' default and smallest token lifetimes.
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);
const MIN_EXPIRATION: Duration = Duration::from_secs(600);

/// Makes the installation's token-signing key, unless it exists (tokens already in pods stay
/// valid across a reinstall over the same root).
pub(crate) fn write_signing_key(layout: &Layout) -> anyhow::Result<()> {
    let (private, public) = (layout.service_account_key(), layout.service_account_public_key());
    if private.exists() && public.exists() {
        return Ok(());
    }
    let (private_pem, public_pem) =
        istio_pki::token::generate_signing_key().context("making the service-account token key")?;
    write_private(&private, private_pem.as_bytes())?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))
}

fn write_private(path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem).with_context(|| format!("writing {}", path.display()))
}

/// Signs pods' tokens; `None` when the installation has no key (an older installation).
pub(crate) struct PodTokens {
    issuer: Option<TokenIssuer>,
}

impl PodTokens {
    pub(crate) fn load(layout: &Layout) -> PodTokens {
        let path = layout.service_account_key();
        let issuer = match std::fs::read_to_string(&path) {
            Ok(pem) => match TokenIssuer::new(&pem, LOCAL_ISSUER) {
                Ok(issuer) => Some(issuer),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "the service-account token key is unusable");
                    None
                }
            },
            Err(_) => None,
        };
        PodTokens { issuer }
    }

    /// The token file for a `serviceAccountToken` projection of `pod`: the one already written
    /// while it is in the first 80 % of its life, a new one otherwise.
    pub(crate) fn token(
        &self,
        pod: &istio_config::object::Object,
        source: &Value,
        existing: Option<&[u8]>,
    ) -> anyhow::Result<Vec<u8>> {
        if let Some(existing) = existing.and_then(|bytes| std::str::from_utf8(bytes).ok()) {
            if !istio_pki::token::renewal_due(existing, SystemTime::now()) {
                return Ok(existing.as_bytes().to_vec());
            }
        }
        let issuer = self.issuer.as_ref().context("the installation has no service-account token key")?;
        let account = ServiceAccount {
            namespace: pod.namespace().to_string(),
            name: pod
                .spec()
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .unwrap_or("default")
                .to_string(),
        };
        let lifetime = source
            .get("expirationSeconds")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_EXPIRATION, Duration::from_secs)
            .max(MIN_EXPIRATION);
        // Without an audience, Kubernetes uses the API server's own.
        let audience = source.get("audience").and_then(Value::as_str).filter(|a| !a.is_empty()).unwrap_or(LOCAL_ISSUER);
        let request = TokenRequest { account: &account, pod: Some(pod.name()), audience, lifetime };
        Ok(issuer.issue(&request)?.into_bytes())
    }
}
