//! The SDS secrets the config uses and what has arrived of them: each secret's current PEM
//! material (checked when it arrives: certificates and keys must parse), its version and a
//! generation that TLS contexts compare to notice rotation, and which secrets are wanted from
//! which server. Fetching them is `sds`'s job; building TLS configs from them is `tls`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use tokio::sync::watch;

use super::config::tls_source::{self, SdsSecret, SdsServer, SecretPart};
use super::config::ConfigError;

/// A part of a secret that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("secret {name} has not arrived from {server}")]
    NotArrived { name: String, server: SdsServer },
    #[error("secret {name} has no {part}")]
    MissingPart { name: String, part: &'static str },
}

/// Why a secret's material cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MaterialError {
    #[error(transparent)]
    Source(#[from] ConfigError),
    #[error("{field}: {}: {source}", path.display())]
    Read { field: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    Missing(&'static str),
    #[error("{field}: {source}")]
    Pem { field: &'static str, source: istio_pki::pem::PemError },
    #[error("only tls_certificate and validation_context secrets are supported")]
    Unsupported,
    #[error("the secret is empty")]
    Empty,
}

/// One secret as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct StoredSecret {
    /// Increases with every update of any secret (0 means never received).
    pub generation: u64,
    pub version: String,
    pub certificate_chain: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub trusted_ca: Option<Vec<u8>>,
}

/// The secrets the config uses, and what has arrived of them.
pub(crate) struct SecretStore {
    secrets: Mutex<HashMap<SdsSecret, StoredSecret>>,
    /// Wanted secret names by server; each server's stream follows its entry.
    wanted: watch::Sender<BTreeMap<SdsServer, BTreeSet<String>>>,
    generation: AtomicU64,
}

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore {
            secrets: Mutex::default(),
            wanted: watch::channel(BTreeMap::new()).0,
            generation: AtomicU64::new(0),
        }
    }
}

impl SecretStore {
    /// The generation of `secret`'s current version (0: none yet).
    pub(crate) fn generation(&self, secret: &SdsSecret) -> u64 {
        istio_runtime::sync::lock(&self.secrets).get(secret).map_or(0, |stored| stored.generation)
    }

    /// One part of a secret's current version.
    pub(crate) fn part(&self, secret: &SdsSecret, part: SecretPart) -> Result<Vec<u8>, SecretError> {
        let secrets = istio_runtime::sync::lock(&self.secrets);
        let stored = secrets
            .get(secret)
            .ok_or_else(|| SecretError::NotArrived { name: secret.name.clone(), server: secret.server.clone() })?;
        let (bytes, what) = match part {
            SecretPart::CertificateChain => (&stored.certificate_chain, "certificate chain"),
            SecretPart::PrivateKey => (&stored.private_key, "private key"),
            SecretPart::TrustedCa => (&stored.trusted_ca, "trusted CA"),
        };
        bytes.clone().ok_or_else(|| SecretError::MissingPart { name: secret.name.clone(), part: what })
    }

    /// Wanted secrets that have not arrived yet.
    pub(crate) fn missing(&self) -> Vec<String> {
        let secrets = istio_runtime::sync::lock(&self.secrets);
        self.wanted
            .borrow()
            .iter()
            .flat_map(|(server, names)| {
                names.iter().map(move |name| SdsSecret { name: name.clone(), server: server.clone() })
            })
            .filter(|secret| !secrets.contains_key(secret))
            .map(|secret| secret.name)
            .collect()
    }

    pub(crate) fn store(&self, secret: SdsSecret, mut stored: StoredSecret) {
        stored.generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        istio_runtime::sync::lock(&self.secrets).insert(secret, stored);
    }

    /// Asks for exactly `wanted`: secrets nothing uses any more are forgotten, and the SDS
    /// streams (one per server) follow the new set.
    pub(crate) fn want(&self, wanted: &BTreeSet<SdsSecret>) {
        let mut by_server: BTreeMap<SdsServer, BTreeSet<String>> = BTreeMap::new();
        for secret in wanted {
            by_server.entry(secret.server.clone()).or_default().insert(secret.name.clone());
        }
        istio_runtime::sync::lock(&self.secrets).retain(|secret, _| wanted.contains(secret));
        self.wanted.send_if_modified(|current| {
            let changed = *current != by_server;
            *current = by_server;
            changed
        });
    }

    /// The wanted secret names by server, as they change.
    pub(crate) fn wanted(&self) -> watch::Receiver<BTreeMap<SdsServer, BTreeSet<String>>> {
        self.wanted.subscribe()
    }
}

/// The PEM material of a certificate or validation-context secret, checked.
pub(crate) fn material_of(secret: &Secret) -> Result<StoredSecret, MaterialError> {
    let bytes = |source: Option<&envoy_types::pb::envoy::config::core::v3::DataSource>, field: &'static str| {
        match tls_source::data(source, field)? {
            Some(tls_source::TlsData::Inline(bytes)) => Ok(Some(bytes)),
            Some(tls_source::TlsData::File(path)) => {
                std::fs::read(&path).map(Some).map_err(|source| MaterialError::Read { field, path, source })
            }
            _ => Ok(None),
        }
    };
    let mut stored = StoredSecret {
        generation: 0,
        version: String::new(),
        certificate_chain: None,
        private_key: None,
        trusted_ca: None,
    };
    match &secret.r#type {
        Some(secret::Type::TlsCertificate(certificate)) => {
            let chain = bytes(certificate.certificate_chain.as_ref(), "tls_certificate.certificate_chain")?
                .ok_or(MaterialError::Missing("tls_certificate: the certificate chain is missing"))?;
            let key = bytes(certificate.private_key.as_ref(), "tls_certificate.private_key")?
                .ok_or(MaterialError::Missing("tls_certificate: the private key is missing"))?;
            istio_pki::pem::certificates(&chain)
                .map_err(|source| MaterialError::Pem { field: "tls_certificate.certificate_chain", source })?;
            istio_pki::pem::private_key(&key)
                .map_err(|source| MaterialError::Pem { field: "tls_certificate.private_key", source })?;
            stored.certificate_chain = Some(chain);
            stored.private_key = Some(key);
        }
        Some(secret::Type::ValidationContext(validation)) => {
            let ca = bytes(validation.trusted_ca.as_ref(), "validation_context.trusted_ca")?
                .ok_or(MaterialError::Missing("validation_context: trusted_ca is missing"))?;
            istio_pki::pem::certificates(&ca)
                .map_err(|source| MaterialError::Pem { field: "validation_context.trusted_ca", source })?;
            stored.trusted_ca = Some(ca);
        }
        Some(_) => return Err(MaterialError::Unsupported),
        None => return Err(MaterialError::Empty),
    }
    Ok(stored)
}

/// The secret as `/config_dump` shows it: private keys are never printed.
pub(crate) fn redacted(secret: &Secret) -> Secret {
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    let mut shown = secret.clone();
    if let Some(secret::Type::TlsCertificate(certificate)) = &mut shown.r#type {
        certificate.private_key = Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString("[redacted]".to_string())),
            ..Default::default()
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, TlsCertificate,
    };

    fn inline(text: &str) -> Option<DataSource> {
        Some(DataSource { specifier: Some(data_source::Specifier::InlineString(text.into())), ..Default::default() })
    }

    #[test]
    fn certificate_secrets_must_parse() {
        let ca = istio_pki::ca::CertificateAuthority::self_signed("sds test CA").unwrap();
        let issued = ca.issue(&istio_pki::ca::LeafRequest::for_names(["a.example"])).unwrap();
        let good = Secret {
            name: "default".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&issued.cert_chain_pem),
                private_key: inline(&issued.key_pem),
                ..Default::default()
            })),
        };
        let stored = material_of(&good).unwrap();
        assert!(stored.certificate_chain.is_some() && stored.private_key.is_some());
        let shown = redacted(&good);
        let Some(secret::Type::TlsCertificate(certificate)) = shown.r#type else { panic!("not a certificate") };
        assert_eq!(certificate.private_key, inline("[redacted]"));

        let mut bad = good.clone();
        if let Some(secret::Type::TlsCertificate(certificate)) = &mut bad.r#type {
            certificate.private_key = inline("not a key");
        }
        let error = material_of(&bad).unwrap_err().to_string();
        assert!(error.starts_with("tls_certificate.private_key: no usable private key"), "{error}");

        let empty_ca = Secret {
            name: "ROOTCA".into(),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline("nothing here"),
                ..Default::default()
            })),
        };
        let error = material_of(&empty_ca).unwrap_err().to_string();
        assert_eq!(error, "validation_context.trusted_ca: no PEM certificate found");
    }

    #[test]
    fn missing_secrets_are_reported_by_name() {
        let store = SecretStore::default();
        let server = SdsServer::Cluster("sds-grpc".into());
        store.want(&BTreeSet::from([SdsSecret { name: "default".into(), server: server.clone() }]));
        assert_eq!(store.missing(), vec!["default".to_string()]);
        let secret = SdsSecret { name: "default".into(), server };
        let error = store.part(&secret, SecretPart::CertificateChain).unwrap_err().to_string();
        assert_eq!(error, "secret default has not arrived from cluster sds-grpc");
        store.store(
            secret.clone(),
            StoredSecret {
                generation: 0,
                version: "1".into(),
                certificate_chain: Some(b"PEM".to_vec()),
                private_key: None,
                trusted_ca: None,
            },
        );
        assert!(store.missing().is_empty());
        assert_eq!(store.generation(&secret), 1);
        assert_eq!(
            store.part(&secret, SecretPart::PrivateKey).unwrap_err().to_string(),
            "secret default has no private key"
        );
    }
}
