//! Certificates and private keys from PEM: text already in memory (an SDS secret, inline
//! config) or files (a mounted Secret, `/etc/certs`). Errors from files name the file.
//!
//! What the certificates say is [`crate::certificate`]'s business; this module only decodes.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// PEM text that does not hold what was asked of it.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("malformed PEM: {0}")]
    Malformed(#[source] rustls_pki_types::pem::Error),
    #[error("no usable private key: {0}")]
    NoPrivateKey(#[source] rustls_pki_types::pem::Error),
}

/// A PEM file that cannot be read or does not hold what was asked of it.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Content { path: PathBuf, source: PemError },
}

impl PemFileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PemFileError::Read { path, .. } | PemFileError::Content { path, .. } => path,
        }
    }
}

/// Every certificate in PEM text, in order (leaf first in a chain); at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(PemError::Malformed)?;
    if certificates.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certificates)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in PEM text.
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(PemError::NoPrivateKey)
}

fn read(path: &Path) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(path).map_err(|source| PemFileError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file (leaf first); at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    certificates(&read(path)?).map_err(|source| PemFileError::Content { path: path.to_path_buf(), source })
}

/// The first private key in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemFileError> {
    private_key(&read(path)?).map_err(|source| PemFileError::Content { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CertificateAuthority, LeafRequest};

    #[test]
    fn reads_chains_and_keys_and_names_what_is_wrong() {
        let ca = CertificateAuthority::self_signed("pem test CA").expect("CA");
        let issued = ca.issue(&LeafRequest::for_names(["istio-pilot.istio-system"])).expect("leaf");
        let chain = format!("{}{}", issued.cert_chain_pem, ca.root_pem());
        assert_eq!(certificates(chain.as_bytes()).expect("chain").len(), 2);
        private_key(issued.key_pem.as_bytes()).expect("key");

        assert!(matches!(certificates(b"no pem here"), Err(PemError::NoCertificate)));
        let error = private_key(issued.cert_chain_pem.as_bytes()).expect_err("a certificate is not a key");
        assert!(error.to_string().starts_with("no usable private key"), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, &issued.key_pem).expect("write");
        let error = read_certificates(&key_path).expect_err("a key is not a certificate");
        assert_eq!(error.to_string(), format!("{}: no PEM certificate found", key_path.display()));
        assert_eq!(error.path(), key_path);
        let missing = dir.path().join("missing.pem");
        let error = read_private_key(&missing).expect_err("missing file");
        assert!(error.to_string().starts_with(&format!("{}: ", missing.display())), "{error}");
    }
}
