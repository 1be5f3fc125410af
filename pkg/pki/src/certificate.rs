//! What a certificate says, read with x509-parser: the names it is issued to (DNS names, URIs
//! such as SPIFFE identities, IP addresses), its validity period, and whether it is time to
//! rotate it (the node agent renews a workload certificate once a share of its lifetime, the
//! grace period ratio, is left).
//!
//! Checking a chain of trust is rustls's job, not this module's.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// A certificate x509-parser cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable certificate: {0}")]
pub struct CertificateError(String);

/// The facts of one certificate that the mesh acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// DNS names, URIs and IP addresses, in the certificate's order.
    pub subject_alt_names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub is_ca: bool,
    /// The subject public key info, DER.
    pub public_key_der: Vec<u8>,
    pub has_subject_key_id: bool,
    /// The serial number in lowercase hex without separators, as Envoy's `/certs` shows it.
    pub serial_hex: String,
}

fn system_time(time: x509_parser::time::ASN1Time) -> SystemTime {
    let seconds = time.timestamp();
    match u64::try_from(seconds) {
        Ok(after_epoch) => SystemTime::UNIX_EPOCH + Duration::from_secs(after_epoch),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

/// Reads the facts of a DER certificate.
pub fn inspect(certificate: &CertificateDer<'_>) -> Result<CertificateInfo, CertificateError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|error| CertificateError(error.to_string()))?;
    let subject_alt_names = match parsed.subject_alternative_name() {
        Ok(Some(extension)) => extension.value.general_names.iter().filter_map(general_name_text).collect(),
        Ok(None) => Vec::new(),
        Err(error) => return Err(CertificateError(format!("subject alternative names: {error}"))),
    };
    let validity = parsed.validity();
    Ok(CertificateInfo {
        subject_alt_names,
        not_before: system_time(validity.not_before),
        not_after: system_time(validity.not_after),
        is_ca: parsed.is_ca(),
        public_key_der: parsed.public_key().raw.to_vec(),
        has_subject_key_id: parsed
            .extensions()
            .iter()
            .any(|extension| matches!(extension.parsed_extension(), ParsedExtension::SubjectKeyIdentifier(_))),
        serial_hex: parsed.serial.to_str_radix(16),
    })
}

/// A hex serial number (Envoy's form) in decimal (Istio 1.4's form); `None` if it is not hex.
pub fn serial_decimal(hex: &str) -> Option<String> {
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    x509_parser::num_bigint::BigUint::parse_bytes(digits.as_bytes(), 16).map(|serial| serial.to_str_radix(10))
}

/// Whether `issuer`'s key signed `certificate` (the signature checks out; names and validity
/// are not looked at).
pub fn signed_by(certificate: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    let (Ok((_, certificate)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(certificate.as_ref()),
        x509_parser::parse_x509_certificate(issuer.as_ref()),
    ) else {
        return false;
    };
    certificate.verify_signature(Some(issuer.public_key())).is_ok()
}

fn general_name_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        GeneralName::URI(uri) => Some(uri.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(|octets| std::net::Ipv4Addr::from(octets).to_string()),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(|octets| std::net::Ipv6Addr::from(octets).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The names a peer's certificate gives it, as Envoy's RBAC reads them: URI SANs, DNS SANs and
/// the subject (RFC 2253 order reversed as x509-parser prints it, e.g. `O=cluster.local`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerNames {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub subject: String,
}

/// The [`PeerNames`] of a DER certificate; empty if it is unreadable.
pub fn peer_names(certificate: &CertificateDer<'_>) -> PeerNames {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return PeerNames::default();
    };
    let mut names = PeerNames { subject: parsed.subject().to_string(), ..PeerNames::default() };
    if let Ok(Some(extension)) = parsed.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::URI(uri) => names.uris.push(uri.to_string()),
                GeneralName::DNSName(dns) => names.dns.push(dns.to_string()),
                _ => {}
            }
        }
    }
    names
}

/// The DNS names, URIs and IP addresses a certificate is issued to; none if it is unreadable.
pub fn subject_alt_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    inspect(certificate).map(|info| info.subject_alt_names).unwrap_or_default()
}

impl CertificateInfo {
    /// How long the certificate is valid for in all.
    pub fn lifetime(&self) -> Duration {
        self.not_after.duration_since(self.not_before).unwrap_or_default()
    }

    /// How long it stays valid after `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// Whether `now` is outside the validity period.
    pub fn expired(&self, now: SystemTime) -> bool {
        now < self.not_before || now >= self.not_after
    }

    /// Whether to renew at `now`: expired, or less than `grace_ratio` of the lifetime left
    /// (Istio's node agent renews at half the lifetime by default).
    pub fn needs_rotation(&self, now: SystemTime, grace_ratio: f64) -> bool {
        self.expired(now) || self.remaining(now).as_secs_f64() < self.lifetime().as_secs_f64() * grace_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CertificateAuthority, LeafRequest};

    #[test]
    fn peer_names_separate_uris_dns_names_and_the_subject() {
        let ca = CertificateAuthority::self_signed("peer names CA").expect("CA");
        let mut request = LeafRequest::for_names(["spiffe://cluster.local/ns/default/sa/sleep", "sleep.default.svc"]);
        request.common_name = Some("sleep".into());
        let issued = ca.issue(&request).expect("leaf");
        let leaf = &crate::pem::certificates(issued.cert_chain_pem.as_bytes()).expect("pem")[0];
        let names = peer_names(leaf);
        assert_eq!(names.uris, ["spiffe://cluster.local/ns/default/sa/sleep"]);
        assert_eq!(names.dns, ["sleep.default.svc"]);
        assert_eq!(names.subject, "CN=sleep");
        assert_eq!(peer_names(&CertificateDer::from(vec![1, 2, 3])), PeerNames::default(), "unreadable: no names");
    }

    #[test]
    fn serials_convert_from_envoys_hex_to_istios_decimal() {
        assert_eq!(serial_decimal("ff").as_deref(), Some("255"));
        assert_eq!(serial_decimal("01:00").as_deref(), Some("256"));
        // Wider than any machine integer, as 20-byte serials are.
        assert_eq!(
            serial_decimal("ffffffffffffffffffffffffffffffffffffffff").as_deref(),
            Some("1461501637330902918203684832716283019655932542975")
        );
        assert_eq!(serial_decimal("not hex"), None);
    }

    #[test]
    fn reads_names_of_every_kind_and_the_validity() {
        let ca = CertificateAuthority::self_signed("inspect test CA").expect("CA");
        let request = LeafRequest {
            ttl: Duration::from_secs(3600),
            ..LeafRequest::for_names([
                "spiffe://cluster.local/ns/default/sa/sleep",
                "sleep.default.svc",
                "10.44.0.2",
                "fd00::2",
            ])
        };
        let issued = ca.issue(&request).expect("leaf");
        let leaf = &crate::pem::certificates(issued.cert_chain_pem.as_bytes()).expect("pem")[0];
        let info = inspect(leaf).expect("inspect");
        assert_eq!(
            info.subject_alt_names,
            ["spiffe://cluster.local/ns/default/sa/sleep", "sleep.default.svc", "10.44.0.2", "fd00::2"]
        );
        assert!(!info.is_ca);
        let now = SystemTime::now();
        assert!(!info.expired(now));
        assert!(info.remaining(now) <= Duration::from_secs(3600));
        assert!(info.lifetime() >= Duration::from_secs(3600));
        assert!(!info.needs_rotation(now, 0.5));
        assert!(info.needs_rotation(now + Duration::from_secs(3000), 0.5));
        assert!(info.expired(now + Duration::from_secs(7200)));
        assert!(!info.serial_hex.is_empty() && info.serial_hex.chars().all(|c| c.is_ascii_hexdigit()));

        let root = inspect(&crate::pem::certificates(ca.root_pem().as_bytes()).expect("pem")[0]).expect("root");
        assert!(root.is_ca);
        assert!(root.subject_alt_names.is_empty());
        assert!(inspect(&CertificateDer::from(vec![1, 2, 3])).is_err());
        assert!(subject_alt_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }
}
