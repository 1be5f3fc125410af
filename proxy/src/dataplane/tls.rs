//! TLS for the data plane, with Envoy's semantics: downstream contexts (a gateway terminating
//! TLS, optionally requiring client certificates signed by its CA) and upstream contexts
//! (origination). Upstream, like Envoy, the server certificate is checked only when a trusted
//! CA is configured — its chain against that CA and, if names are listed, its subject
//! alternative names (DNS or SPIFFE URI) — never the host name implicitly. Configs are built
//! once per distinct setting and shared.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use istio_runtime::tls::{read_certificates, read_private_key};

use super::config::cluster::UpstreamTls;
use super::config::listener::DownstreamTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Built TLS configs, by the settings they came from.
#[derive(Default)]
pub struct TlsConfigs {
    servers: Mutex<Vec<(DownstreamTls, Arc<rustls::ServerConfig>)>>,
    clients: Mutex<Vec<(UpstreamTls, Arc<rustls::ClientConfig>)>>,
}

impl TlsConfigs {
    pub fn server_config(&self, settings: &DownstreamTls) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut servers = self.servers.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some((_, config)) = servers.iter().find(|(known, _)| known == settings) {
            return Ok(config.clone());
        }
        let config = build_server(settings)?;
        servers.push((settings.clone(), config.clone()));
        Ok(config)
    }

    pub fn client_config(&self, settings: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some((_, config)) = clients.iter().find(|(known, _)| known == settings) {
            return Ok(config.clone());
        }
        let config = build_client(settings)?;
        clients.push((settings.clone(), config.clone()));
        Ok(config)
    }
}

fn roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for certificate in read_certificates(path).map_err(|error| error.to_string())? {
        store.add(certificate).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(store)
}

fn build_server(settings: &DownstreamTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let (Some(chain), Some(key)) = (&settings.certificate_chain, &settings.private_key) else {
        return Err("downstream TLS needs a certificate chain and a private key file".to_string());
    };
    let certificates = read_certificates(chain).map_err(|error| error.to_string())?;
    let key = read_private_key(key).map_err(|error| error.to_string())?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let builder = match &settings.trusted_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier =
                if settings.require_client_certificate { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|error| error.to_string())?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certificates, key).map_err(|error| error.to_string())?;
    config.alpn_protocols = if settings.alpn.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        settings.alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect()
    };
    Ok(Arc::new(config))
}

fn build_client(settings: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Some((certificate, validation)) = &settings.sds {
        return Err(format!("certificates from SDS ({certificate}, {validation}) are not supported yet"));
    }
    let ca = match &settings.trusted_ca {
        Some(ca) => Some((roots(ca)?, settings.subject_alt_names.clone())),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(UpstreamVerifier { ca });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&settings.certificate_chain, &settings.private_key) {
        (Some(chain), Some(key)) => builder
            .with_client_auth_cert(
                read_certificates(chain).map_err(|error| error.to_string())?,
                read_private_key(key).map_err(|error| error.to_string())?,
            )
            .map_err(|error| error.to_string())?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = settings.alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client config that does not check the server's certificate (probes, as the kubelet does).
pub fn unverified_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
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
        let names = subject_alt_names_of(end_entity);
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

/// DNS names and URIs (SPIFFE ids) a certificate is issued to.
pub fn subject_alt_names_of(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else { return Vec::new() };
    let Ok(Some(extension)) = parsed.subject_alternative_name() else { return Vec::new() };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}
