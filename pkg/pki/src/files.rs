//! The workload certificate files of Istio 1.4's default (file-mounted) mode: a directory,
//! `/etc/certs` in a pod, holding `cert-chain.pem`, `key.pem` and `root-cert.pem` — the keys of
//! the `istio.SERVICE-ACCOUNT` Secret Citadel writes. Pilot's mutual-TLS server, the proxies'
//! ISTIO_MUTUAL contexts and the local platform's installer all name them through here.
//!
//! Writing replaces each file atomically (a reader never sees half a key) and leaves the key
//! readable by its owner only.

use std::path::{Path, PathBuf};

use crate::pem::PemFileError;

pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const KEY: &str = "key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";

/// Where a pod mounts its workload certificates.
pub const DEFAULT_DIR: &str = "/etc/certs";
/// `/etc/certs/cert-chain.pem`, as proxies' TLS contexts name it.
pub const DEFAULT_CERT_CHAIN: &str = "/etc/certs/cert-chain.pem";
/// `/etc/certs/key.pem`
pub const DEFAULT_KEY: &str = "/etc/certs/key.pem";
/// `/etc/certs/root-cert.pem`
pub const DEFAULT_ROOT_CERT: &str = "/etc/certs/root-cert.pem";

/// A directory in the `/etc/certs` layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    dir: PathBuf,
}

/// The three files' contents, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCertBundle {
    pub cert_chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub root_cert_pem: Vec<u8>,
}

/// Why a bundle cannot be served: a part does not parse, or the key is not the certificate's.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{CERT_CHAIN}: {0}")]
    CertChain(#[source] crate::pem::PemError),
    #[error("{CERT_CHAIN}: {0}")]
    Leaf(#[source] crate::certificate::CertificateError),
    #[error("{KEY}: {0}")]
    Key(#[source] crate::keys::KeyError),
    #[error("{ROOT_CERT}: {0}")]
    Root(#[source] crate::pem::PemError),
    #[error("{KEY} is not the key of the certificate in {CERT_CHAIN}")]
    KeyMismatch,
}

impl KeyCertBundle {
    /// Checks the bundle can be served: every part parses and the key belongs to the leaf
    /// certificate (files rewritten one by one can be caught between two versions).
    pub fn check(&self) -> Result<(), BundleError> {
        let chain = crate::pem::certificates(&self.cert_chain_pem).map_err(BundleError::CertChain)?;
        let leaf = crate::certificate::inspect(&chain[0]).map_err(BundleError::Leaf)?;
        let key = String::from_utf8_lossy(&self.key_pem);
        let key_public = crate::keys::public_key_der(&key).map_err(BundleError::Key)?;
        crate::pem::certificates(&self.root_cert_pem).map_err(BundleError::Root)?;
        if key_public != leaf.public_key_der {
            return Err(BundleError::KeyMismatch);
        }
        Ok(())
    }
}

impl Default for CertDir {
    fn default() -> Self {
        CertDir::new(DEFAULT_DIR)
    }
}

fn read(path: PathBuf) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(&path).map_err(|source| PemFileError::Read { path, source })
}

/// Writes `contents` to `path` through a temporary file renamed into place.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> CertDir {
        CertDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_chain(&self) -> PathBuf {
        self.dir.join(CERT_CHAIN)
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY)
    }

    pub fn root_cert(&self) -> PathBuf {
        self.dir.join(ROOT_CERT)
    }

    /// Reads the three files; the error names the one that failed.
    pub fn read(&self) -> Result<KeyCertBundle, PemFileError> {
        Ok(KeyCertBundle {
            cert_chain_pem: read(self.cert_chain())?,
            key_pem: read(self.key())?,
            root_cert_pem: read(self.root_cert())?,
        })
    }

    /// Writes the three files (creating the directory), the key with mode 0600.
    pub fn write(&self, bundle: &KeyCertBundle) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomically(&self.cert_chain(), &bundle.cert_chain_pem, 0o644)?;
        write_atomically(&self.key(), &bundle.key_pem, 0o600)?;
        write_atomically(&self.root_cert(), &bundle.root_cert_pem, 0o644)
    }

    /// Writes a serving certificate without a root: `cert-chain.pem` and `key.pem` (0600).
    pub fn write_serving(&self, cert_chain_pem: &[u8], key_pem: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomically(&self.cert_chain(), cert_chain_pem, 0o644)?;
        write_atomically(&self.key(), key_pem, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_and_reads_the_etc_certs_layout() {
        assert_eq!(CertDir::default().cert_chain(), Path::new(DEFAULT_CERT_CHAIN));
        assert_eq!(CertDir::default().key(), Path::new(DEFAULT_KEY));
        assert_eq!(CertDir::default().root_cert(), Path::new(DEFAULT_ROOT_CERT));

        let temp = tempfile::tempdir().expect("tempdir");
        let certs = CertDir::new(temp.path().join("istio.default"));
        let bundle = KeyCertBundle {
            cert_chain_pem: b"chain".to_vec(),
            key_pem: b"key".to_vec(),
            root_cert_pem: b"root".to_vec(),
        };
        certs.write(&bundle).expect("write");
        assert_eq!(certs.read().expect("read"), bundle);
        let mode = std::fs::metadata(certs.key()).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        std::fs::remove_file(certs.root_cert()).expect("remove");
        let error = certs.read().expect_err("no root");
        assert_eq!(error.path(), certs.root_cert());
    }

    #[test]
    fn a_bundle_is_served_only_when_its_key_is_the_certificates() {
        use crate::ca::{CertificateAuthority, LeafRequest};
        let ca = CertificateAuthority::self_signed("bundle check CA").expect("CA");
        let issue = || ca.issue(&LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/sleep"])).expect("leaf");
        let (first, second) = (issue(), issue());
        let bundle = |chain: &str, key: &str| KeyCertBundle {
            cert_chain_pem: chain.as_bytes().to_vec(),
            key_pem: key.as_bytes().to_vec(),
            root_cert_pem: ca.root_pem().as_bytes().to_vec(),
        };
        bundle(&first.cert_chain_pem, &first.key_pem).check().expect("a matching bundle");
        let error = bundle(&second.cert_chain_pem, &first.key_pem).check().expect_err("the old key");
        assert!(matches!(error, BundleError::KeyMismatch), "{error}");
        let error = bundle("not PEM", &first.key_pem).check().expect_err("no chain");
        assert!(error.to_string().starts_with("cert-chain.pem: "), "{error}");
    }
}
