//! TLS for the servers components run (webhooks, mTLS gRPC): a rustls server config built
//! from PEM certificate-chain and key files, with errors that name the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// Reads every certificate in a PEM file (leaf first).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, error))?
        .collect::<Result<_, _>>()
        .map_err(|error| file_error(path, error))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certificates)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| file_error(path, format!("no usable private key: {error}")))
}

/// A server config presenting `cert_chain` with `key`, offering the given ALPN protocols.
pub fn server_config(cert_chain: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certificates = read_certificates(cert_chain)?;
    let key = read_private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_config_from_pem_files_and_names_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certified =
            rcgen::generate_simple_self_signed(vec!["istio-galley.istio-system.svc".to_string()]).expect("cert");
        let cert_path = dir.path().join("cert-chain.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, certified.cert.pem()).expect("write");
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write");
        let config = server_config(&cert_path, &key_path, &[b"h2", b"http/1.1"]).expect("config");
        assert_eq!(config.alpn_protocols.len(), 2);

        let error = server_config(&key_path, &key_path, &[]).expect_err("a key is not a certificate");
        assert!(error.to_string().contains("key.pem"), "{error}");
        let error = server_config(&dir.path().join("missing.pem"), &key_path, &[]).expect_err("missing file");
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }
}
