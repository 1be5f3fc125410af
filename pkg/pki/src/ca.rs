//! A certificate authority: a root made here (self-signed, as Citadel does without a plugged-in
//! CA) or loaded from PEM (Citadel's `cacerts`, a saved `istio-ca-secret`), issuing leaf
//! certificates for workloads and servers. Names that look like URIs (`spiffe://…`) become URI
//! subject alternative names, IP addresses IP names, anything else DNS names.
//!
//! Serving the CA API and deciding who may have which identity are Citadel's business.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

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
    CaKey(#[source] rcgen::Error),
    #[error("{name:?} cannot be a subject alternative name: {source}")]
    Name { name: String, source: rcgen::Error },
    #[error("a certificate for {names:?}: {source}")]
    Issue { names: Vec<String>, source: rcgen::Error },
}

/// A certificate authority that issues leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    key_pem: String,
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

/// An issued certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, ttl: Duration) {
    let now = SystemTime::now();
    params.not_before = time::OffsetDateTime::from(now);
    params.not_after = time::OffsetDateTime::from(now + ttl);
}

/// The subject alternative name `name` stands for.
fn san(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let text = name.try_into().map_err(|source| CaError::Name { name: name.to_string(), source })?;
    Ok(if name.contains("://") { SanType::URI(text) } else { SanType::DnsName(text) })
}

impl CertificateAuthority {
    /// A new self-signed root named `common_name`, valid for ten years.
    pub fn self_signed(common_name: &str) -> Result<CertificateAuthority, CaError> {
        Self::self_signed_for(common_name, DEFAULT_ROOT_TTL)
    }

    /// A new self-signed root named `common_name`, valid for `ttl`.
    pub fn self_signed_for(common_name: &str, ttl: Duration) -> Result<CertificateAuthority, CaError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CommonName, common_name);
        validity(&mut params, ttl);
        let key = KeyPair::generate().map_err(CaError::Key)?;
        let certificate = params.self_signed(&key).map_err(CaError::CaCertificate)?;
        let key_pem = key.serialize_pem();
        Ok(CertificateAuthority { root_pem: certificate.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// A CA from its certificate and private key, PEM.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<CertificateAuthority, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(CaError::CaKey)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key).map_err(CaError::CaCertificate)?;
        Ok(CertificateAuthority { issuer, root_pem: certificate_pem.to_string(), key_pem: key_pem.to_string() })
    }

    /// The CA's certificate, PEM: what everyone who trusts this CA holds (`root-cert.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The CA's private key, PEM, for saving the CA where only its owner can read it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate (client and server use) with a fresh key.
    pub fn issue(&self, request: &LeafRequest) -> Result<IssuedCertificate, CaError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = request.names.iter().map(|name| san(name)).collect::<Result<_, _>>()?;
        if let Some(common_name) = &request.common_name {
            params.distinguished_name.push(DnType::CommonName, common_name.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, request.ttl);
        let key = KeyPair::generate().map_err(CaError::Key)?;
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CaError::Issue { names: request.names.clone(), source })?;
        Ok(IssuedCertificate { cert_chain_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::inspect;
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
            Err(CaError::CaCertificate(_))
        ));
        let error = ca.issue(&LeafRequest::for_names(["caf\u{e9}.example"])).expect_err("not IA5");
        assert!(error.to_string().starts_with("\"caf\u{e9}.example\" cannot be a subject alternative name"), "{error}");
    }
}
