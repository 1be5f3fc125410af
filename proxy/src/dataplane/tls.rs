//! TLS for the data plane, with Envoy's semantics: downstream contexts (a gateway terminating
//! TLS, optionally requiring client certificates signed by its CA) and upstream contexts
//! (origination). Upstream, like Envoy, the server certificate is checked only when a trusted
//! CA is configured — its chain against that CA and, if names are listed, its subject
//! alternative names (DNS or SPIFFE URI) — never the host name implicitly.
//!
//! Material comes from files, inline data or SDS secrets. Configs are built once per setting
//! and rebuilt when their material changes — a file rewritten (certificate rotation by a
//! mounted Secret) or a new secret version — so new connections use the new certificates.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::cluster::UpstreamTls;
use super::config::listener::DownstreamTls;
use super::config::tls_source::{TlsData, TlsMaterial};
use super::secrets::{SecretError, SecretStore};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a piece of material was when a config was built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    /// A file's modification time and size (`None`: unreadable).
    File(Option<(SystemTime, u64)>),
    Inline,
    /// A secret's generation (0: not received).
    Secret(u64),
}

type Built<S, C> = Vec<(S, Vec<Stamp>, Arc<C>)>;

/// Why a TLS config could not be built from its material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("{}: {source}", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The material is not the PEM it should be (`material` says where it came from).
    #[error("{material}: {source}")]
    Pem { material: String, source: istio_pki::pem::PemError },
    #[error("{material}: {source}")]
    TrustedCa { material: String, source: rustls::Error },
    #[error("downstream TLS needs a certificate chain and a private key")]
    NoServerCertificate,
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

impl TlsError {
    /// A file of the material does not exist (yet).
    pub(crate) fn is_missing_file(&self) -> bool {
        matches!(self, TlsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The update-time check of TLS material from files or inline data: it must build, except
/// that files that do not exist yet are accepted. A workload's certificates are written into
/// its pod after the pod starts (when Citadel has seen its service account), and an update
/// refused for them would not come again until it changed; until the files appear, the
/// connections that need them fail, as they do while an SDS secret has not arrived.
pub(crate) fn check_at_update<C>(built: Result<C, TlsError>) -> Result<(), TlsError> {
    match built {
        Ok(_) => Ok(()),
        Err(error) if error.is_missing_file() => {
            tracing::info!("TLS material not there yet ({error}); its connections wait for it");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Built TLS configs, by the settings and the state of the material they came from.
#[derive(Default)]
pub(crate) struct TlsConfigs {
    /// SDS secrets as they arrived.
    pub secrets: SecretStore,
    servers: Mutex<Built<DownstreamTls, ServerConfigs>>,
    clients: Mutex<Built<UpstreamTls, rustls::ClientConfig>>,
}

/// A downstream config, and the same without ALPN for a client that offers none of its
/// protocols: Envoy (BoringSSL) then completes the handshake without ALPN, where rustls would
/// refuse it. Istio's mesh clients offer only `istio` to servers that offer `h2` and
/// `http/1.1`, so every mutual-TLS connection into a sidecar takes this path.
#[derive(Debug)]
pub(crate) struct ServerConfigs {
    offered: Arc<rustls::ServerConfig>,
    without_alpn: Arc<rustls::ServerConfig>,
}

impl ServerConfigs {
    fn new(config: rustls::ServerConfig) -> ServerConfigs {
        let mut without_alpn = config.clone();
        without_alpn.alpn_protocols.clear();
        ServerConfigs { offered: Arc::new(config), without_alpn: Arc::new(without_alpn) }
    }

    /// The config for a client that offers `client_alpn` (none: `None`).
    pub(crate) fn for_client<'a>(
        &self,
        client_alpn: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> Arc<rustls::ServerConfig> {
        let Some(mut offered) = client_alpn else { return self.offered.clone() };
        if offered.any(|protocol| self.offered.alpn_protocols.iter().any(|ours| ours.as_slice() == protocol)) {
            self.offered.clone()
        } else {
            self.without_alpn.clone()
        }
    }
}

/// A cached config for `settings` if its material has not changed; otherwise `build` makes a
/// new one, which replaces the old. If the changed material does not build (a rotated
/// certificate whose key file is not rewritten yet), the last good config keeps serving and the
/// next call tries again.
fn cached<S: PartialEq + Clone, C>(
    built: &Mutex<Built<S, C>>,
    settings: &S,
    stamps: Vec<Stamp>,
    build: impl FnOnce() -> Result<Arc<C>, TlsError>,
) -> Result<Arc<C>, TlsError> {
    let mut built = istio_runtime::sync::lock(built);
    if let Some((_, _, config)) =
        built.iter().find(|(known, known_stamps, _)| known == settings && *known_stamps == stamps)
    {
        return Ok(config.clone());
    }
    let config = match build() {
        Ok(config) => config,
        Err(error) => {
            let Some((_, _, last_good)) = built.iter().find(|(known, _, _)| known == settings) else {
                return Err(error);
            };
            tracing::debug!("TLS material changed but does not build yet ({error}); the last good config serves");
            return Ok(last_good.clone());
        }
    };
    built.retain(|(known, _, _)| known != settings);
    built.push((settings.clone(), stamps, config.clone()));
    Ok(config)
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TlsConfigs").finish_non_exhaustive()
    }
}

impl TlsConfigs {
    pub(crate) fn server_config(&self, settings: &DownstreamTls) -> Result<Arc<ServerConfigs>, TlsError> {
        let stamps = self.stamps(&settings.material);
        cached(&self.servers, settings, stamps, || self.build_server(settings))
    }

    pub(crate) fn client_config(&self, settings: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let stamps = self.stamps(&settings.material);
        cached(&self.clients, settings, stamps, || self.build_client(settings))
    }

    fn stamps(&self, material: &TlsMaterial) -> Vec<Stamp> {
        [&material.certificate_chain, &material.private_key, &material.trusted_ca]
            .into_iter()
            .flatten()
            .map(|data| match data {
                TlsData::File(path) => Stamp::File(
                    std::fs::metadata(path).ok().and_then(|metadata| Some((metadata.modified().ok()?, metadata.len()))),
                ),
                TlsData::Inline(_) => Stamp::Inline,
                TlsData::Sds(secret, _) => Stamp::Secret(self.secrets.generation(secret)),
            })
            .collect()
    }

    /// The bytes of one piece of material.
    pub(crate) fn load(&self, data: &TlsData) -> Result<Vec<u8>, TlsError> {
        match data {
            TlsData::File(path) => std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source }),
            TlsData::Inline(bytes) => Ok(bytes.clone()),
            TlsData::Sds(secret, part) => Ok(self.secrets.part(secret, *part)?),
        }
    }

    fn certificates(&self, data: &TlsData) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = self.load(data)?;
        istio_pki::pem::certificates(&bytes).map_err(|source| TlsError::Pem { material: describe(data), source })
    }

    fn private_key(&self, data: &TlsData) -> Result<PrivateKeyDer<'static>, TlsError> {
        let bytes = self.load(data)?;
        istio_pki::pem::private_key(&bytes).map_err(|source| TlsError::Pem { material: describe(data), source })
    }

    fn roots(&self, data: &TlsData) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        for certificate in self.certificates(data)? {
            store.add(certificate).map_err(|source| TlsError::TrustedCa { material: describe(data), source })?;
        }
        Ok(store)
    }

    fn build_server(&self, settings: &DownstreamTls) -> Result<Arc<ServerConfigs>, TlsError> {
        let material = &settings.material;
        let (Some(chain), Some(key)) = (&material.certificate_chain, &material.private_key) else {
            return Err(TlsError::NoServerCertificate);
        };
        let certificates = self.certificates(chain)?;
        let key = self.private_key(key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = match &material.trusted_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots(ca)?), provider());
                let verifier =
                    if settings.require_client_certificate { verifier } else { verifier.allow_unauthenticated() };
                builder.with_client_cert_verifier(verifier.build()?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certificates, key)?;
        config.alpn_protocols = if settings.alpn.is_empty() {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            settings.alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect()
        };
        Ok(Arc::new(ServerConfigs::new(config)))
    }

    fn build_client(&self, settings: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let material = &settings.material;
        let ca = match &material.trusted_ca {
            Some(ca) => Some((self.roots(ca)?, material.subject_alt_names.clone())),
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(UpstreamVerifier { ca });
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&material.certificate_chain, &material.private_key) {
            (Some(chain), Some(key)) => {
                builder.with_client_auth_cert(self.certificates(chain)?, self.private_key(key)?)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = settings.alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Where material came from, for errors.
fn describe(data: &TlsData) -> String {
    match data {
        TlsData::File(path) => path.display().to_string(),
        TlsData::Inline(_) => "inline data".to_string(),
        TlsData::Sds(secret, _) => format!("secret {}", secret.name),
    }
}

/// A client config that does not check the server's certificate (probes, as the kubelet does).
pub(crate) fn unverified_client_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UpstreamVerifier { ca: None }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Envoy's upstream certificate check: with a CA, the chain against it and then the listed
/// subject alternative names; without one (no validation context), nothing.
#[derive(Debug)]
struct UpstreamVerifier {
    ca: Option<(RootCertStore, Vec<String>)>,
}

fn supported_schemes() -> Vec<SignatureScheme> {
    provider().signature_verification_algorithms.supported_schemes()
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, subject_alt_names)) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        if subject_alt_names.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let names = istio_pki::certificate::subject_alt_names(end_entity);
        if names.iter().any(|name| subject_alt_names.contains(name)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate's names {names:?} include none of {subject_alt_names:?}"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::config::tls_source::{SdsSecret, SdsServer, SecretPart};

    fn self_signed(name: &str) -> (String, String) {
        let ca = istio_pki::ca::CertificateAuthority::self_signed("tls test CA").expect("CA");
        let issued = ca.issue(&istio_pki::ca::LeafRequest::for_names([name])).expect("certificate");
        (issued.cert_chain_pem, issued.key_pem)
    }

    /// A self-signed certificate and key for `name` in files, and server settings using them.
    fn server_files(name: &str, alpn: Vec<String>) -> (tempfile::TempDir, DownstreamTls) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(name);
        std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        let settings = DownstreamTls {
            material: TlsMaterial {
                certificate_chain: Some(TlsData::File(dir.path().join("cert.pem"))),
                private_key: Some(TlsData::File(dir.path().join("key.pem"))),
                ..Default::default()
            },
            require_client_certificate: false,
            alpn,
        };
        (dir, settings)
    }

    /// A certificate file rewritten on disk (a rotated mounted Secret) gives new connections a
    /// new config; an unchanged one reuses the built config, and one that does not build yet
    /// leaves the last good config serving.
    #[test]
    fn configs_follow_rewritten_files() {
        let (dir, settings) = server_files("gateway.example", Vec::new());
        let configs = TlsConfigs::default();
        let first = configs.server_config(&settings).unwrap();
        assert!(Arc::ptr_eq(&first, &configs.server_config(&settings).unwrap()));
        let (cert, key) = self_signed("rotated.example.with.a.longer.name");
        std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        let second = configs.server_config(&settings).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        // A certificate whose key is not rewritten yet: the last good config keeps serving.
        let (cert, _) = self_signed("rotated.again.example");
        std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
        assert!(Arc::ptr_eq(&second, &configs.server_config(&settings).unwrap()), "a half-rotated pair");
        std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
        assert!(Arc::ptr_eq(&second, &configs.server_config(&settings).unwrap()), "a broken key");
        // Without a last good config, the error says what is wrong.
        let error = TlsConfigs::default().server_config(&settings).unwrap_err().to_string();
        assert!(error.contains("key.pem: no usable private key"), "{error}");
    }

    #[test]
    fn a_client_offering_none_of_the_servers_protocols_gets_no_alpn() {
        let (_dir, settings) = server_files("server.example", vec!["h2".into(), "http/1.1".into()]);
        let configs = TlsConfigs::default().server_config(&settings).unwrap();
        let offer =
            |protocols: &[&'static [u8]]| configs.for_client(Some(protocols.iter().copied())).alpn_protocols.len();
        assert_eq!(offer(&[b"h2"]), 2, "a protocol in common: ALPN as configured");
        assert_eq!(offer(&[b"istio"]), 0, "Istio's mesh ALPN alone: the handshake goes on without ALPN");
        assert_eq!(configs.for_client(None::<std::iter::Empty<&[u8]>>).alpn_protocols.len(), 2, "no offer");
    }

    #[test]
    fn files_that_do_not_exist_yet_pass_the_update_check_and_serve_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("late.example");
        let settings = DownstreamTls {
            material: TlsMaterial {
                certificate_chain: Some(TlsData::File(dir.path().join("cert-chain.pem"))),
                private_key: Some(TlsData::File(dir.path().join("key.pem"))),
                ..Default::default()
            },
            require_client_certificate: false,
            alpn: Vec::new(),
        };
        let configs = TlsConfigs::default();
        let missing = configs.server_config(&settings).unwrap_err();
        assert!(missing.is_missing_file(), "{missing}");
        assert!(check_at_update(configs.server_config(&settings)).is_ok(), "no files yet: accepted");
        // Half of the pair (the chain is written first): still waiting, still accepted.
        std::fs::write(dir.path().join("cert-chain.pem"), &cert).unwrap();
        assert!(check_at_update(configs.server_config(&settings)).is_ok());
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        assert!(configs.server_config(&settings).is_ok(), "the written files serve");
        // Files that are there but broken are refused at update time, as Envoy refuses them.
        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join("cert-chain.pem"), "garbage").unwrap();
        std::fs::write(broken.path().join("key.pem"), &key).unwrap();
        let settings = DownstreamTls {
            material: TlsMaterial {
                certificate_chain: Some(TlsData::File(broken.path().join("cert-chain.pem"))),
                private_key: Some(TlsData::File(broken.path().join("key.pem"))),
                ..Default::default()
            },
            ..settings
        };
        assert!(check_at_update(TlsConfigs::default().server_config(&settings)).is_err());
    }

    #[test]
    fn sds_material_waits_for_its_secret() {
        let secret = SdsSecret { name: "ROOTCA".into(), server: SdsServer::Cluster("sds-grpc".into()) };
        let settings = UpstreamTls {
            sni: None,
            alpn: Vec::new(),
            material: TlsMaterial {
                trusted_ca: Some(TlsData::Sds(secret, SecretPart::TrustedCa)),
                ..Default::default()
            },
        };
        let error = TlsConfigs::default().client_config(&settings).unwrap_err().to_string();
        assert_eq!(error, "secret ROOTCA has not arrived from cluster sds-grpc");
    }
}
