//! A certificate authority: a root made here (self-signed, as Citadel does without a plugged-in
//! CA) or loaded from PEM (Citadel's `cacerts`, a saved `istio-ca-secret`), issuing leaf
//! certificates for workloads and servers. Names that look like URIs (`spiffe://…`) become URI
//! subject alternative names, IP addresses IP names, anything else DNS names.
//!
//! Serving the CA API and deciding who may have which identity are Citadel's business.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

use crate::certificate::{inspect, signed_by, CertificateError};
use crate::csr::SigningRequest;
use crate::keys::{self, KeyError};
use crate::pem::PemError;
use crate::san::{san, InvalidName};

/// How long a self-signed root is valid for: Citadel's default, ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a workload certificate is valid for: Citadel's default, 90 days.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why a CA could not be made or loaded, or a certificate not issued.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating a key: {0}")]
    Key(#[source] rcgen::Error),
    #[error("the CA certificate: {0}")]
    CaCertificate(#[source] rcgen::Error),
    #[error("the CA key: {0}")]
    CaKey(#[from] KeyError),
    #[error("the CA certificate: {0}")]
    Unreadable(#[from] PemError),
    #[error("the CA certificate: {0}")]
    Inspect(#[from] CertificateError),
    #[error("the CA certificate is not authorized to sign other certificates")]
    NotACa,
    #[error("the CA certificate does not match the CA key")]
    KeyMismatch,
    #[error("the CA certificate does not chain to the root certificate through the certificate chain")]
    Untrusted,
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("a certificate for {names:?}: {source}")]
    Issue { names: Vec<String>, source: rcgen::Error },
}

/// A certificate authority that issues leaf certificates: its own signing certificate and
/// key, the certificates between it and the root (none when it is the root), and the root
/// bundle everyone who trusts it holds.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    key_pem: String,
    chain_pem: String,
    root_pem: String,
    /// Whether the signing certificate has a subject key identifier for leaves to name.
    names_its_key: bool,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("CertificateAuthority").finish_non_exhaustive()
    }
}

/// What to issue: the names, how long for, and an optional common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// DNS names, IP addresses or URIs (SPIFFE identities).
    pub names: Vec<String>,
    pub ttl: Duration,
    pub common_name: Option<String>,
}

impl LeafRequest {
    /// A request for `names` with the workload default lifetime.
    pub fn for_names<I>(names: I) -> LeafRequest
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        LeafRequest { names: names.into_iter().map(Into::into).collect(), ttl: DEFAULT_WORKLOAD_TTL, common_name: None }
    }
}

/// An issued certificate and its private key, PEM. The chain is the leaf followed by the
/// certificates between it and the root (the root itself is not included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

/// A plugged-in CA's files, as Citadel's `--signing-cert`, `--signing-key`, `--cert-chain` and
/// `--root-cert` name them (the `cacerts` Secret's `ca-cert.pem`, `ca-key.pem`,
/// `cert-chain.pem` and `root-cert.pem`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluggedCa {
    pub signing_cert_pem: String,
    pub signing_key_pem: String,
    /// From the signing certificate towards the root; may be empty.
    pub cert_chain_pem: String,
    pub root_cert_pem: String,
}

fn validity(params: &mut CertificateParams, ttl: Duration) {
    let now = SystemTime::now();
    params.not_before = time::OffsetDateTime::from(now);
    params.not_after = time::OffsetDateTime::from(now + ttl);
}

/// Leaf parameters: the names as subject alternative names, for client and server use.
fn leaf_params(names: &[String], common_name: Option<&str>, ttl: Duration) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|name| san(name)).collect::<Result<_, _>>()?;
    if let Some(common_name) = common_name {
        params.distinguished_name.push(DnType::CommonName, common_name);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, ttl);
    Ok(params)
}

fn root_params(ttl: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, ttl);
    params
}

impl CertificateAuthority {
    /// A new self-signed root named `common_name`, valid for ten years.
    pub fn self_signed(common_name: &str) -> Result<CertificateAuthority, CaError> {
        Self::self_signed_for(common_name, DEFAULT_ROOT_TTL)
    }

    /// A new self-signed root named `common_name`, valid for `ttl`.
    pub fn self_signed_for(common_name: &str, ttl: Duration) -> Result<CertificateAuthority, CaError> {
        let mut params = root_params(ttl);
        params.distinguished_name.push(DnType::CommonName, common_name);
        Self::self_signed_from(params)
    }

    /// A new self-signed root for a trust domain, as Citadel makes it: organization the trust
    /// domain, no common name, valid for `ttl`.
    pub fn self_signed_for_trust_domain(trust_domain: &str, ttl: Duration) -> Result<CertificateAuthority, CaError> {
        let mut params = root_params(ttl);
        params.distinguished_name.push(DnType::OrganizationName, trust_domain);
        Self::self_signed_from(params)
    }

    fn self_signed_from(params: CertificateParams) -> Result<CertificateAuthority, CaError> {
        let key = KeyPair::generate().map_err(CaError::Key)?;
        let certificate = params.self_signed(&key).map_err(CaError::CaCertificate)?;
        let key_pem = key.serialize_pem();
        let root_pem = certificate.pem();
        Ok(CertificateAuthority {
            certificate_pem: root_pem.clone(),
            root_pem,
            chain_pem: String::new(),
            key_pem,
            issuer: Issuer::new(params, key),
            names_its_key: true,
        })
    }

    /// A root CA from its certificate and private key, PEM (a saved self-signed root).
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<CertificateAuthority, CaError> {
        Self::plugged_in(&PluggedCa {
            signing_cert_pem: certificate_pem.to_string(),
            signing_key_pem: key_pem.to_string(),
            cert_chain_pem: String::new(),
            root_cert_pem: certificate_pem.to_string(),
        })
    }

    /// A CA from plugged-in files. The signing certificate must be a CA certificate, match the
    /// key, and chain to a certificate of the root bundle through the certificate chain.
    pub fn plugged_in(files: &PluggedCa) -> Result<CertificateAuthority, CaError> {
        let key = keys::signing_key(&files.signing_key_pem)?;
        let signing = crate::pem::certificates(files.signing_cert_pem.as_bytes())?.remove(0);
        let facts = inspect(&signing)?;
        if !facts.is_ca {
            return Err(CaError::NotACa);
        }
        if facts.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(CaError::KeyMismatch);
        }
        let chain = if files.cert_chain_pem.trim().is_empty() {
            Vec::new()
        } else {
            crate::pem::certificates(files.cert_chain_pem.as_bytes())?
        };
        let roots = crate::pem::certificates(files.root_cert_pem.as_bytes())?;
        if !chains_to(&signing, &chain, &roots) {
            return Err(CaError::Untrusted);
        }
        let issuer = Issuer::from_ca_cert_der(&signing, key).map_err(CaError::CaCertificate)?;
        Ok(CertificateAuthority {
            issuer,
            certificate_pem: files.signing_cert_pem.clone(),
            key_pem: files.signing_key_pem.clone(),
            chain_pem: files.cert_chain_pem.clone(),
            root_pem: files.root_cert_pem.clone(),
            names_its_key: facts.has_subject_key_id,
        })
    }

    /// The root bundle, PEM: what everyone who trusts this CA holds (`root-cert.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The CA's own signing certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The certificates between a leaf and the root, PEM, as plugged in (`cert-chain.pem`);
    /// empty for a root CA.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA's private key, PEM, for saving the CA where only its owner can read it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate (client and server use) with a fresh ECDSA P-256 key.
    pub fn issue(&self, request: &LeafRequest) -> Result<IssuedCertificate, CaError> {
        let key = KeyPair::generate().map_err(CaError::Key)?;
        let params = leaf_params(&request.names, request.common_name.as_deref(), request.ttl)?;
        let leaf = self.sign_params(params, &key, &request.names)?;
        Ok(IssuedCertificate { cert_chain_pem: leaf, key_pem: key.serialize_pem() })
    }

    /// Signs a CSR's public key for `names` (the identity the caller proved, which the caller
    /// checks against the CSR's own names), valid for `ttl`. Returns the leaf followed by the
    /// chain, PEM.
    pub fn sign(&self, request: &SigningRequest, names: &[String], ttl: Duration) -> Result<String, CaError> {
        let params = leaf_params(names, None, ttl)?;
        self.sign_params(params, &request.request.public_key, names)
    }

    fn sign_params(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        names: &[String],
    ) -> Result<String, CaError> {
        params.use_authority_key_identifier_extension = self.names_its_key;
        let certificate = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| CaError::Issue { names: names.to_vec(), source })?;
        Ok(format!("{}{}", certificate.pem(), self.chain_pem))
    }
}

/// Whether `certificate` is signed by the first of `chain`, each of those by the next, and the
/// last (or `certificate` itself when the chain is empty) by one of `roots` — or is one of them.
/// The chain may start with `certificate` itself, as Istio's `cert-chain.pem` often does.
fn chains_to(certificate: &CertificateDer<'_>, chain: &[CertificateDer<'_>], roots: &[CertificateDer<'_>]) -> bool {
    let mut current = certificate;
    for next in chain {
        if roots.iter().any(|root| root.as_ref() == current.as_ref()) {
            return true;
        }
        if next.as_ref() == current.as_ref() {
            continue;
        }
        if !signed_by(current, next) {
            return false;
        }
        current = next;
    }
    roots.iter().any(|root| root.as_ref() == current.as_ref() || signed_by(current, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem::certificates;

    #[test]
    fn a_ca_survives_being_saved_and_loaded() {
        let ca = CertificateAuthority::self_signed("istio-rs test CA").expect("CA");
        let loaded = CertificateAuthority::from_pem(ca.root_pem(), ca.key_pem()).expect("loaded");
        let issued = loaded.issue(&LeafRequest::for_names(["istio-galley.istio-system.svc"])).expect("leaf");
        let leaf = &certificates(issued.cert_chain_pem.as_bytes()).expect("pem")[0];
        let info = inspect(leaf).expect("inspect");
        assert_eq!(info.subject_alt_names, ["istio-galley.istio-system.svc"]);
        let lifetime = info.lifetime();
        assert!(lifetime >= DEFAULT_WORKLOAD_TTL - Duration::from_secs(2) && lifetime <= DEFAULT_WORKLOAD_TTL);

        assert!(matches!(CertificateAuthority::from_pem(ca.root_pem(), "not a key"), Err(CaError::CaKey(_))));
        assert!(matches!(
            CertificateAuthority::from_pem("not a certificate", ca.key_pem()),
            Err(CaError::Unreadable(_))
        ));
        let error = ca.issue(&LeafRequest::for_names(["caf\u{e9}.example"])).expect_err("not IA5");
        assert!(error.to_string().starts_with("\"caf\u{e9}.example\" cannot be a subject alternative name"), "{error}");
    }

    /// An RSA root and an intermediate signing CA with a PKCS#1 key, laid out as Istio's
    /// `samples/certs` (made with openssl; `cert-chain.pem` holds the intermediate only).
    fn plugged() -> PluggedCa {
        PluggedCa {
            signing_cert_pem: include_str!("../testdata/plugged/ca-cert.pem").to_string(),
            signing_key_pem: include_str!("../testdata/plugged/ca-key.pem").to_string(),
            cert_chain_pem: include_str!("../testdata/plugged/cert-chain.pem").to_string(),
            root_cert_pem: include_str!("../testdata/plugged/root-cert.pem").to_string(),
        }
    }

    #[test]
    fn a_plugged_in_intermediate_issues_chains_to_its_root() {
        let files = plugged();
        let ca = CertificateAuthority::plugged_in(&files).expect("plugged-in CA");
        assert_eq!(ca.root_pem(), files.root_cert_pem);
        let identity = "spiffe://cluster.local/ns/foo/sa/httpbin";
        let issued = ca.issue(&LeafRequest::for_names([identity])).expect("leaf");
        let chain = certificates(issued.cert_chain_pem.as_bytes()).expect("chain");
        assert_eq!(chain.len(), 2, "leaf and intermediate");
        let intermediate = &certificates(files.signing_cert_pem.as_bytes()).expect("pem")[0];
        let root = &certificates(files.root_cert_pem.as_bytes()).expect("pem")[0];
        assert_eq!(&chain[1], intermediate);
        assert!(signed_by(&chain[0], intermediate));
        assert!(signed_by(intermediate, root));
        assert!(!signed_by(&chain[0], root));
        assert_eq!(inspect(&chain[0]).expect("leaf").subject_alt_names, [identity]);

        // Without the chain file the intermediate still chains straight to the root.
        let no_chain = PluggedCa { cert_chain_pem: String::new(), ..plugged() };
        let ca = CertificateAuthority::plugged_in(&no_chain).expect("no chain");
        assert_eq!(
            certificates(ca.issue(&LeafRequest::for_names([identity])).unwrap().cert_chain_pem.as_bytes())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn plugged_in_files_that_do_not_fit_are_refused() {
        let other = CertificateAuthority::self_signed("another root").expect("CA");
        let wrong_root = PluggedCa { root_cert_pem: other.root_pem().to_string(), ..plugged() };
        assert!(matches!(CertificateAuthority::plugged_in(&wrong_root), Err(CaError::Untrusted)));
        let wrong_key = PluggedCa { signing_key_pem: other.key_pem().to_string(), ..plugged() };
        assert!(matches!(CertificateAuthority::plugged_in(&wrong_key), Err(CaError::KeyMismatch)));
        let leaf = other.issue(&LeafRequest::for_names(["leaf.example"])).expect("leaf");
        let not_a_ca = PluggedCa {
            signing_cert_pem: leaf.cert_chain_pem.clone(),
            signing_key_pem: leaf.key_pem.clone(),
            cert_chain_pem: String::new(),
            root_cert_pem: other.root_pem().to_string(),
        };
        let error = CertificateAuthority::plugged_in(&not_a_ca).expect_err("a leaf cannot sign");
        assert_eq!(error.to_string(), "the CA certificate is not authorized to sign other certificates");
        let garbage_key = PluggedCa { signing_key_pem: "garbage".into(), ..plugged() };
        assert!(CertificateAuthority::plugged_in(&garbage_key)
            .expect_err("key")
            .to_string()
            .starts_with("the CA key: "));
    }

    #[test]
    fn csrs_are_signed_for_the_names_given_with_the_requested_lifetime() {
        let ca = CertificateAuthority::plugged_in(&plugged()).expect("CA");
        let identity = "spiffe://cluster.local/ns/foo/sa/sleep".to_string();
        let (csr, _key) = crate::csr::generate(std::slice::from_ref(&identity)).expect("csr");
        let request = SigningRequest::from_pem(&csr).expect("request");
        let chain = ca.sign(&request, std::slice::from_ref(&identity), Duration::from_secs(600)).expect("signed");
        let certs = certificates(chain.as_bytes()).expect("chain");
        assert_eq!(certs.len(), 2);
        let leaf = inspect(&certs[0]).expect("leaf");
        assert_eq!(leaf.subject_alt_names, [identity]);
        assert!(leaf.lifetime() <= Duration::from_secs(600) && leaf.lifetime() >= Duration::from_secs(598));
        assert!(!leaf.is_ca);
    }
}
