//! Where Citadel's signing CA comes from, as in Istio 1.4:
//! - self-signed (`--self-signed-ca`): a root kept in the Secret `istio-ca-secret` of Citadel's
//!   namespace (`ca-cert.pem`, `ca-key.pem`), made on first start and reused after; with
//!   `--read-signing-cert-only` Citadel waits for another to make it;
//! - plugged in: `--signing-cert`, `--signing-key`, `--cert-chain` and `--root-cert` files, the
//!   `cacerts` Secret mounted at `/etc/cacerts`.
//!
//! The root (or the chain, when plugged in) is also published in the ConfigMap
//! `istio-security` (`caTLSRootCert`, base64) for node agents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use istio_config::object::{Object, ObjectKey};
use istio_config::store::{Store, StoreError};
use istio_pki::ca::{CaError, CertificateAuthority, PluggedCa};
use serde_json::json;

/// The Secret holding a self-signed root and its key.
pub const CA_SECRET: &str = "istio-ca-secret";
/// Its type.
pub const CA_SECRET_TYPE: &str = "istio.io/ca-root";
/// Its keys.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
/// The ConfigMap that publishes the root for node agents, and its key.
pub const SECURITY_CONFIG_MAP: &str = "istio-security";
pub const ROOT_CERT_KEY: &str = "caTLSRootCert";
/// How often a read-only Citadel looks for `istio-ca-secret`.
const READ_ONLY_POLL: Duration = Duration::from_secs(5);

/// How Citadel gets its CA.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    SelfSigned {
        /// Lifetime of a new root (`CITADEL_SELF_SIGNED_CA_CERT_TTL`).
        root_ttl: Duration,
        /// Wait for `istio-ca-secret` instead of making it (`--read-signing-cert-only`).
        read_only: bool,
        /// More trusted roots appended to the bundle (`--root-cert`).
        extra_roots: Option<PathBuf>,
    },
    Plugged {
        signing_cert: PathBuf,
        signing_key: PathBuf,
        /// May be absent: the signing certificate is signed by the root itself.
        cert_chain: Option<PathBuf>,
        root_cert: PathBuf,
    },
}

/// Why Citadel has no CA.
#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugged-in CA ({files}): {source}")]
    Plugged { files: String, source: CaError },
    #[error("Secret {namespace}/{CA_SECRET}: {source}")]
    Stored { namespace: String, source: CaError },
    #[error("Secret {namespace}/{CA_SECRET} has no {key}")]
    Missing { namespace: String, key: &'static str },
    #[error("making a self-signed root: {0}")]
    Generate(#[source] CaError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

fn read(path: &Path) -> Result<String, CaSetupError> {
    std::fs::read_to_string(path).map_err(|source| CaSetupError::Read { path: path.to_path_buf(), source })
}

/// The key of the self-signed root's Secret.
pub fn ca_secret_key(namespace: &str) -> ObjectKey {
    ObjectKey { group: String::new(), kind: "Secret".into(), namespace: namespace.into(), name: CA_SECRET.into() }
}

/// Establishes the CA from `source`, making and storing a self-signed root if there is none.
pub async fn establish(
    source: &CaSource,
    store: &dyn Store,
    namespace: &str,
    trust_domain: &str,
) -> Result<CertificateAuthority, CaSetupError> {
    let ca = match source {
        CaSource::Plugged { signing_cert, signing_key, cert_chain, root_cert } => {
            let files = PluggedCa {
                signing_cert_pem: read(signing_cert)?,
                signing_key_pem: read(signing_key)?,
                cert_chain_pem: cert_chain.as_deref().map(read).transpose()?.unwrap_or_default(),
                root_cert_pem: read(root_cert)?,
            };
            CertificateAuthority::plugged_in(&files).map_err(|source| CaSetupError::Plugged {
                files: format!("{}, {}", signing_cert.display(), signing_key.display()),
                source,
            })?
        }
        CaSource::SelfSigned { root_ttl, read_only, extra_roots } => {
            let extra = extra_roots.as_deref().map(read).transpose()?;
            let stored = loop {
                match store.get(&ca_secret_key(namespace)).await? {
                    Some(secret) => break Some(secret),
                    None if *read_only => {
                        tracing::info!("waiting for Secret {namespace}/{CA_SECRET} (--read-signing-cert-only)");
                        tokio::time::sleep(READ_ONLY_POLL).await;
                    }
                    None => break None,
                }
            };
            match stored {
                Some(secret) => from_secret(&secret, namespace, extra.as_deref())?,
                None => {
                    let ca = CertificateAuthority::self_signed_for_trust_domain(trust_domain, *root_ttl)
                        .map_err(CaSetupError::Generate)?;
                    store.apply(ca_secret(namespace, &ca)).await?;
                    tracing::info!("made a self-signed root for {trust_domain} in Secret {namespace}/{CA_SECRET}");
                    match extra {
                        Some(extra) => with_extra_roots(&ca, &extra, namespace)?,
                        None => ca,
                    }
                }
            }
        }
    };
    publish_root(store, namespace, &ca).await;
    Ok(ca)
}

/// The self-signed CA a stored `istio-ca-secret` holds, with `extra_roots` trusted beside it.
pub fn from_secret(
    secret: &Object,
    namespace: &str,
    extra_roots: Option<&str>,
) -> Result<CertificateAuthority, CaSetupError> {
    let text = |key: &'static str| {
        crate::workload_secret::data(secret, key)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| CaSetupError::Missing { namespace: namespace.to_string(), key })
    };
    let ca = CertificateAuthority::from_pem(&text(CA_CERT)?, &text(CA_KEY)?)
        .map_err(|source| CaSetupError::Stored { namespace: namespace.to_string(), source })?;
    match extra_roots {
        Some(extra) => with_extra_roots(&ca, extra, namespace),
        None => Ok(ca),
    }
}

/// `ca` trusting `extra` roots too (Istio appends `--root-cert` to a self-signed root).
fn with_extra_roots(
    ca: &CertificateAuthority,
    extra: &str,
    namespace: &str,
) -> Result<CertificateAuthority, CaSetupError> {
    let own = ca.certificate_pem().trim_end_matches('\n');
    CertificateAuthority::plugged_in(&PluggedCa {
        signing_cert_pem: ca.certificate_pem().to_string(),
        signing_key_pem: ca.key_pem().to_string(),
        cert_chain_pem: String::new(),
        root_cert_pem: format!("{own}\n{extra}"),
    })
    .map_err(|source| CaSetupError::Stored { namespace: namespace.to_string(), source })
}

/// The `istio-ca-secret` object for a self-signed root.
pub fn ca_secret(namespace: &str, ca: &CertificateAuthority) -> Object {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": namespace},
        "type": CA_SECRET_TYPE,
        "data": {
            CA_CERT: encode(ca.certificate_pem()),
            CA_KEY: encode(ca.key_pem()),
            "cert-chain.pem": "",
            "key.pem": "",
            "root-cert.pem": "",
        },
    });
    serde_json::from_value(value).expect("a Secret is an object")
}

/// Writes the `istio-security` ConfigMap; a failure is logged, as node agents are the only
/// readers and Citadel serves without it.
async fn publish_root(store: &dyn Store, namespace: &str, ca: &CertificateAuthority) {
    let published = if ca.chain_pem().trim().is_empty() { ca.root_pem() } else { ca.chain_pem() };
    let value = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SECURITY_CONFIG_MAP, "namespace": namespace},
        "data": {ROOT_CERT_KEY: base64::engine::general_purpose::STANDARD.encode(published)},
    });
    let config_map: Object = serde_json::from_value(value).expect("a ConfigMap is an object");
    if let Err(error) = store.apply(config_map).await {
        tracing::warn!(%error, "cannot write ConfigMap {namespace}/{SECURITY_CONFIG_MAP}; node agents will not find the root");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_config::store::directory::DirectoryStore;

    fn self_signed(read_only: bool) -> CaSource {
        CaSource::SelfSigned { root_ttl: Duration::from_secs(3600), read_only, extra_roots: None }
    }

    #[tokio::test]
    async fn a_self_signed_root_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirectoryStore::open(dir.path()).expect("store");
        let first = establish(&self_signed(false), &store, "istio-system", "cluster.local").await.expect("first");
        let stored = store.get(&ca_secret_key("istio-system")).await.expect("get").expect("stored");
        assert_eq!(stored.body["type"], CA_SECRET_TYPE);
        let again = establish(&self_signed(true), &store, "istio-system", "cluster.local").await.expect("again");
        assert_eq!(again.root_pem(), first.root_pem(), "the stored root is reused");
        let root = &istio_pki::pem::certificates(first.root_pem().as_bytes()).expect("pem")[0];
        assert!(istio_pki::certificate::inspect(root).expect("root").is_ca);
        let config_map = store
            .get(&ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: "istio-system".into(),
                name: SECURITY_CONFIG_MAP.into(),
            })
            .await
            .expect("get")
            .expect("published");
        let published = base64::engine::general_purpose::STANDARD
            .decode(config_map.body["data"][ROOT_CERT_KEY].as_str().expect("text"))
            .expect("base64");
        assert_eq!(published, first.root_pem().as_bytes());
    }

    #[tokio::test]
    async fn extra_roots_are_appended_to_a_self_signed_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirectoryStore::open(dir.path().join("store")).expect("store");
        let other = CertificateAuthority::self_signed("an older root").expect("CA");
        let extra = dir.path().join("extra-root.pem");
        std::fs::write(&extra, other.root_pem()).expect("write");
        let source =
            CaSource::SelfSigned { root_ttl: Duration::from_secs(3600), read_only: false, extra_roots: Some(extra) };
        let ca = establish(&source, &store, "istio-system", "cluster.local").await.expect("CA");
        let roots = istio_pki::pem::certificates(ca.root_pem().as_bytes()).expect("bundle");
        assert_eq!(roots.len(), 2);
        assert!(ca.root_pem().ends_with(other.root_pem()));
    }

    #[tokio::test]
    async fn a_broken_stored_root_or_plugged_in_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirectoryStore::open(dir.path().join("store")).expect("store");
        let mut broken = ca_secret("istio-system", &CertificateAuthority::self_signed("x").expect("CA"));
        broken.body["data"][CA_KEY] = json!("");
        store.apply(broken).await.expect("apply");
        let error = establish(&self_signed(false), &store, "istio-system", "cluster.local").await.expect_err("broken");
        assert_eq!(error.to_string(), "Secret istio-system/istio-ca-secret has no ca-key.pem");

        let missing = CaSource::Plugged {
            signing_cert: dir.path().join("ca-cert.pem"),
            signing_key: dir.path().join("ca-key.pem"),
            cert_chain: None,
            root_cert: dir.path().join("root-cert.pem"),
        };
        let error = establish(&missing, &store, "istio-system", "cluster.local").await.expect_err("missing");
        assert!(error.to_string().starts_with(&dir.path().join("ca-cert.pem").display().to_string()), "{error}");
    }
}
