//! A throwaway certificate authority for tests: a self-signed root and leaf certificates for
//! given DNS names, written as PEM files the way a person would hand them to a Gateway.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

/// A root CA that issues leaf certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
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
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(rcgen::DnType::CommonName, "istio-rs test CA");
        let key = KeyPair::generate().expect("CA key");
        TestCa { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the root certificate to `dir/name` and returns the path.
    pub fn write_root(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.root_pem()).expect("write CA certificate");
        path
    }

    /// Issues a certificate for `names` (DNS names or `spiffe://` URIs) and returns its PEM
    /// certificate and key.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>()).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
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
