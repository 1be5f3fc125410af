//! A throwaway certificate authority for tests: a self-signed root and leaf certificates for
//! given names, written as PEM files the way a person would hand them to a Gateway. It is
//! `istio-pki`'s CA with panics instead of errors, as suits a test.

use std::path::{Path, PathBuf};

use istio_pki::ca::{CertificateAuthority, LeafRequest};

/// A root CA that issues leaf certificates.
pub struct TestCa {
    ca: CertificateAuthority,
}

/// PEM files of one issued certificate.
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa { ca: CertificateAuthority::self_signed("istio-rs test CA").expect("test CA") }
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.ca.root_pem().to_string()
    }

    /// Writes the root certificate to `dir/name` and returns the path.
    pub fn write_root(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.root_pem()).expect("write CA certificate");
        path
    }

    /// Issues a certificate for `names` (DNS names, IP addresses or `spiffe://` URIs) and
    /// returns its PEM certificate and key.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let issued = self.ca.issue(&LeafRequest::for_names(names.iter().copied())).expect("leaf certificate");
        (issued.cert_chain_pem, issued.key_pem)
    }

    /// Issues a certificate for `names` and writes it as `dir/PREFIX.crt` and `dir/PREFIX.key`.
    pub fn issue_files(&self, dir: &Path, prefix: &str, names: &[&str]) -> IssuedFiles {
        let (cert_pem, key_pem) = self.issue(names);
        let files = IssuedFiles { cert: dir.join(format!("{prefix}.crt")), key: dir.join(format!("{prefix}.key")) };
        std::fs::write(&files.cert, cert_pem).expect("write certificate");
        std::fs::write(&files.key, key_pem).expect("write key");
        files
    }
}
