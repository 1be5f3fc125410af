//! Certificate signing requests (PKCS#10), what a node agent sends Citadel: making one for an
//! identity with a fresh key, and reading one (its signature checked, its names listed) before
//! a CA decides whether to sign it.

use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair};

use crate::san::{san, text, InvalidName};

/// Why a CSR cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is not PEM: {0}")]
    Pem(String),
    #[error("the CSR cannot be parsed: {0}")]
    Parse(#[source] rcgen::Error),
    #[error("the CSR's signature does not verify")]
    Signature,
    #[error("the CSR names no identity (no subject alternative name)")]
    NoNames,
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("making a CSR: {0}")]
    Generate(#[source] rcgen::Error),
}

/// A parsed CSR whose signature verifies: the requester holds the private key of the public
/// key inside.
#[derive(Debug)]
pub struct SigningRequest {
    pub(crate) request: CertificateSigningRequestParams,
    names: Vec<String>,
}

impl SigningRequest {
    /// Parses a PEM CSR and checks its signature; it must name at least one identity.
    pub fn from_pem(pem: &str) -> Result<SigningRequest, CsrError> {
        if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
            return Err(CsrError::Pem("no CERTIFICATE REQUEST block".to_string()));
        }
        let request = CertificateSigningRequestParams::from_pem(pem).map_err(|error| match error {
            rcgen::Error::InvalidCertificationRequestSignature => CsrError::Signature,
            other => CsrError::Parse(other),
        })?;
        let names: Vec<String> = request.params.subject_alt_names.iter().filter_map(text).collect();
        if names.is_empty() {
            return Err(CsrError::NoNames);
        }
        Ok(SigningRequest { request, names })
    }

    /// The subject alternative names asked for (URIs such as SPIFFE identities, DNS names, IP
    /// addresses), in the CSR's order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A new key (ECDSA P-256) and a PEM CSR for `names`, signed with it: (CSR, key).
pub fn generate(names: &[String]) -> Result<(String, String), CsrError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|name| san(name)).collect::<Result<_, _>>()?;
    let key = KeyPair::generate().map_err(CsrError::Generate)?;
    let request = params.serialize_request(&key).and_then(|request| request.pem()).map_err(CsrError::Generate)?;
    Ok((request, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "spiffe://cluster.local/ns/foo/sa/httpbin";

    #[test]
    fn a_generated_request_reads_back_with_its_names() {
        let (pem, key) = generate(&[IDENTITY.to_string(), "httpbin.foo.svc".to_string()]).expect("csr");
        let request = SigningRequest::from_pem(&pem).expect("parse");
        assert_eq!(request.names(), [IDENTITY, "httpbin.foo.svc"]);
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn garbage_tampering_and_nameless_requests_are_refused() {
        assert!(matches!(SigningRequest::from_pem("hello"), Err(CsrError::Pem(_))));
        let garbage = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(SigningRequest::from_pem(garbage), Err(CsrError::Parse(_))), "garbage");

        // A request whose body was changed after signing: swap the identity for another of the
        // same length inside the DER.
        let (pem, _) = generate(&[IDENTITY.to_string()]).expect("csr");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|der: rustls_pki_types::CertificateSigningRequestDer<'static>| der.as_ref().to_vec())
            .expect("der");
        let forged_identity = IDENTITY.replace("httpbin", "sleep00");
        let at = der.windows(IDENTITY.len()).position(|window| window == IDENTITY.as_bytes()).expect("identity");
        let mut forged = der.clone();
        forged[at..at + IDENTITY.len()].copy_from_slice(forged_identity.as_bytes());
        let forged_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", forged));
        assert!(matches!(SigningRequest::from_pem(&forged_pem), Err(CsrError::Signature)), "forged");

        let key = KeyPair::generate().expect("key");
        let nameless = CertificateParams::default().serialize_request(&key).and_then(|r| r.pem()).expect("csr");
        assert!(matches!(SigningRequest::from_pem(&nameless), Err(CsrError::NoNames)));
    }
}
