//! TLS for the servers components run (webhooks, mTLS gRPC): a rustls server config built from
//! PEM certificate-chain and key files. Reading the PEM is `istio-pki`'s job; errors name the file.

use std::path::Path;
use std::sync::Arc;

use istio_pki::pem::{read_certificates, read_private_key, PemFileError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] PemFileError),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
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
    use istio_pki::ca::{CertificateAuthority, LeafRequest};
    use istio_pki::files::CertDir;

    #[test]
    fn builds_a_config_from_pem_files_and_names_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::self_signed("runtime test CA").expect("CA");
        let issued = ca.issue(&LeafRequest::for_names(["istio-galley.istio-system.svc"])).expect("cert");
        let certs = CertDir::new(dir.path());
        certs.write_serving(issued.cert_chain_pem.as_bytes(), issued.key_pem.as_bytes()).expect("write");
        let (cert_path, key_path) = (certs.cert_chain(), certs.key());
        let config = server_config(&cert_path, &key_path, &[b"h2", b"http/1.1"]).expect("config");
        assert_eq!(config.alpn_protocols.len(), 2);

        let error = server_config(&key_path, &key_path, &[]).expect_err("a key is not a certificate");
        assert!(error.to_string().contains("key.pem"), "{error}");
        let error = server_config(&dir.path().join("missing.pem"), &key_path, &[]).expect_err("missing file");
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }
}
