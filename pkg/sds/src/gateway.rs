//! Gateways' certificates by name: what Istio 1.4's ingress-gateway agent served for the
//! `credentialName` of a Gateway server. Each Kubernetes Secret in the gateway's namespace
//! yields SDS secrets named after it:
//!
//! - a Secret named `<name>-cacert` holds only a client CA (`cacert`, or `tls.crt`), served as
//!   the validation context `<name>-cacert`;
//! - any other holds a server certificate and key (`cert`/`key`, or a TLS Secret's
//!   `tls.crt`/`tls.key`), served as `<name>`; with a `cacert` too (a compound Secret) it also
//!   yields `<name>-cacert`.
//!
//! Secrets that are not meant for gateways are passed over as 1.4 did: names starting with
//! `istio` or `prometheus` (Citadel's key-and-cert Secrets), and token Secrets.
//!
//! A Secret whose certificate or key does not parse, or whose key is not the certificate's, is
//! refused with a message naming it; the table keeps serving what that Secret held before.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};

use crate::SecretSet;

/// The suffix of a client CA's secret name.
pub use istio_xds::sds::GATEWAY_CA_SUFFIX as CA_SUFFIX;

/// Why a Secret yields nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewaySecretError {
    #[error("Secret {secret}: neither cert/key nor tls.crt/tls.key holds a certificate and its key")]
    NoCertificate { secret: String },
    #[error("Secret {secret}: a client CA Secret needs cacert or tls.crt")]
    NoCaCertificate { secret: String },
    #[error("Secret {secret}: data {key}: {message}")]
    Invalid { secret: String, key: String, message: String },
    #[error("Secret {secret}: the key in {key} is not the private key of the certificate in {certificate}")]
    KeyMismatch { secret: String, certificate: String, key: String },
}

/// Whether 1.4's gateway agent looked at a Secret at all.
pub fn is_gateway_secret(name: &str, data: &BTreeMap<String, Vec<u8>>) -> bool {
    !(name.starts_with("istio") || name.starts_with("prometheus") || data.get("token").is_some_and(|t| !t.is_empty()))
}

fn inline(bytes: &[u8]) -> Option<DataSource> {
    Some(DataSource { specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())), ..Default::default() })
}

/// The first non-empty value among `keys`, with its key.
fn first_of<'a>(data: &'a BTreeMap<String, Vec<u8>>, keys: &[&'a str]) -> Option<(&'a str, &'a [u8])> {
    keys.iter().find_map(|key| data.get(*key).filter(|value| !value.is_empty()).map(|value| (*key, value.as_slice())))
}

fn invalid(secret: &str, key: &str, message: impl std::fmt::Display) -> GatewaySecretError {
    GatewaySecretError::Invalid { secret: secret.to_string(), key: key.to_string(), message: message.to_string() }
}

fn ca_secret(name: String, secret_name: &str, key: &str, pem: &[u8]) -> Result<Secret, GatewaySecretError> {
    istio_pki::pem::certificates(pem).map_err(|error| invalid(secret_name, key, error))?;
    Ok(Secret {
        name,
        r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(pem),
            ..Default::default()
        })),
    })
}

/// The SDS secrets the Secret `name` (with its decoded `data`) yields; none for a Secret that
/// is not a gateway's.
pub fn secrets_from(name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Secret>, GatewaySecretError> {
    if !is_gateway_secret(name, data) {
        return Ok(Vec::new());
    }
    if name.ends_with(CA_SUFFIX) {
        let (key, pem) = first_of(data, &["cacert", "tls.crt"])
            .ok_or_else(|| GatewaySecretError::NoCaCertificate { secret: name.to_string() })?;
        return Ok(vec![ca_secret(name.to_string(), name, key, pem)?]);
    }
    let pair = match (first_of(data, &["cert"]), first_of(data, &["key"])) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => first_of(data, &["tls.crt"]).zip(first_of(data, &["tls.key"])),
    };
    let ((cert_key, cert_pem), (key_key, key_pem)) =
        pair.ok_or_else(|| GatewaySecretError::NoCertificate { secret: name.to_string() })?;
    let chain = istio_pki::pem::certificates(cert_pem).map_err(|error| invalid(name, cert_key, error))?;
    let leaf = istio_pki::certificate::inspect(&chain[0]).map_err(|error| invalid(name, cert_key, error))?;
    let public = istio_pki::keys::public_key_der(&String::from_utf8_lossy(key_pem))
        .map_err(|error| invalid(name, key_key, error))?;
    if public != leaf.public_key_der {
        return Err(GatewaySecretError::KeyMismatch {
            secret: name.to_string(),
            certificate: cert_key.to_string(),
            key: key_key.to_string(),
        });
    }
    let mut secrets = vec![Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(cert_pem),
            private_key: inline(key_pem),
            ..Default::default()
        })),
    }];
    if let Some(ca) = first_of(data, &["cacert"]) {
        secrets.push(ca_secret(format!("{name}{CA_SUFFIX}"), name, ca.0, ca.1)?);
    }
    Ok(secrets)
}

/// The served set: every gateway secret by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewaySecrets {
    pub secrets: BTreeMap<String, Secret>,
    pub version: u64,
}

impl SecretSet for GatewaySecrets {
    fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.get(name).cloned()
    }

    fn version(&self) -> u64 {
        self.version
    }
}

/// The secrets of every Kubernetes Secret seen, by the Secret's name, each kept at its last
/// good contents.
#[derive(Debug, Default)]
pub struct GatewaySecretTable {
    by_source: BTreeMap<String, Vec<Secret>>,
    version: u64,
}

impl GatewaySecretTable {
    /// Takes the Secret `name`'s new contents. A Secret that yields nothing valid keeps what
    /// it held before, and the error says why.
    pub fn update(&mut self, name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<(), GatewaySecretError> {
        let secrets = secrets_from(name, data)?;
        if secrets.is_empty() {
            self.by_source.remove(name);
        } else {
            self.by_source.insert(name.to_string(), secrets);
        }
        Ok(())
    }

    /// Forgets the Secret `name`.
    pub fn remove(&mut self, name: &str) {
        self.by_source.remove(name);
    }

    /// The set to serve; the version grows only when the contents differ from `served`.
    pub fn snapshot(&mut self, served: Option<&GatewaySecrets>) -> Option<GatewaySecrets> {
        // A compound Secret's `-cacert` gives way to a CA-only Secret of that name.
        let mut secrets = BTreeMap::new();
        for (source, yielded) in &self.by_source {
            for secret in yielded {
                let own = secret.name == *source;
                if own || !secrets.contains_key(&secret.name) {
                    secrets.insert(secret.name.clone(), secret.clone());
                }
            }
        }
        if served.is_some_and(|served| served.secrets == secrets) {
            return None;
        }
        self.version += 1;
        Some(GatewaySecrets { secrets, version: self.version })
    }
}

#[cfg(test)]
mod tests {
    use istio_pki::ca::{CertificateAuthority, LeafRequest};

    use super::*;

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries.iter().map(|(key, value)| (key.to_string(), value.as_bytes().to_vec())).collect()
    }

    fn server_pair() -> (String, String, String) {
        let ca = CertificateAuthority::self_signed("example.com").expect("CA");
        let issued = ca.issue(&LeafRequest::for_names(["httpbin.example.com"])).expect("leaf");
        (issued.cert_chain_pem, issued.key_pem, ca.root_pem().to_string())
    }

    fn kinds(secrets: &[Secret]) -> Vec<(String, &'static str)> {
        secrets
            .iter()
            .map(|secret| {
                let kind = match &secret.r#type {
                    Some(secret::Type::TlsCertificate(_)) => "certificate",
                    Some(secret::Type::ValidationContext(_)) => "ca",
                    _ => "other",
                };
                (secret.name.clone(), kind)
            })
            .collect()
    }

    #[test]
    fn generic_tls_compound_and_ca_only_secrets() {
        let (cert, key, root) = server_pair();
        let generic = secrets_from("httpbin-credential", &data(&[("cert", &cert), ("key", &key)])).expect("generic");
        assert_eq!(kinds(&generic), [("httpbin-credential".to_string(), "certificate")]);
        let tls = secrets_from("httpbin-tls", &data(&[("tls.crt", &cert), ("tls.key", &key)])).expect("tls");
        assert_eq!(kinds(&tls), [("httpbin-tls".to_string(), "certificate")]);
        let compound = secrets_from("httpbin-credential", &data(&[("cert", &cert), ("key", &key), ("cacert", &root)]))
            .expect("compound");
        assert_eq!(
            kinds(&compound),
            [("httpbin-credential".to_string(), "certificate"), ("httpbin-credential-cacert".to_string(), "ca")]
        );
        let ca_only = secrets_from("httpbin-credential-cacert", &data(&[("cacert", &root)])).expect("ca only");
        assert_eq!(kinds(&ca_only), [("httpbin-credential-cacert".to_string(), "ca")]);
        let ca_in_tls = secrets_from("client-cacert", &data(&[("tls.crt", &root)])).expect("ca in tls.crt");
        assert_eq!(kinds(&ca_in_tls), [("client-cacert".to_string(), "ca")]);
    }

    #[test]
    fn istio_and_token_secrets_are_passed_over() {
        let (cert, key, _) = server_pair();
        let pair = [("cert", cert.as_str()), ("key", key.as_str())];
        assert_eq!(secrets_from("istio.default", &data(&pair)), Ok(Vec::new()));
        assert_eq!(secrets_from("prometheus-token-x", &data(&pair)), Ok(Vec::new()));
        assert_eq!(secrets_from("default-token-abc", &data(&[("token", "t"), ("ca.crt", "x")])), Ok(Vec::new()));
    }

    #[test]
    fn broken_secrets_say_what_is_wrong_and_keep_the_last_good_contents() {
        let (cert, key, _) = server_pair();
        let (_, other_key, _) = server_pair();
        assert_eq!(
            secrets_from("empty", &data(&[("cert", &cert)])),
            Err(GatewaySecretError::NoCertificate { secret: "empty".into() })
        );
        assert_eq!(
            secrets_from("x-cacert", &data(&[("key", &key)])),
            Err(GatewaySecretError::NoCaCertificate { secret: "x-cacert".into() })
        );
        let garbage = secrets_from("garbage", &data(&[("cert", "not a pem"), ("key", &key)])).expect_err("garbage");
        assert!(garbage.to_string().starts_with("Secret garbage: data cert: "), "{garbage}");
        let mismatch = secrets_from("mismatch", &data(&[("tls.crt", &cert), ("tls.key", &other_key)]));
        assert_eq!(
            mismatch,
            Err(GatewaySecretError::KeyMismatch {
                secret: "mismatch".into(),
                certificate: "tls.crt".into(),
                key: "tls.key".into()
            })
        );

        let mut table = GatewaySecretTable::default();
        table.update("httpbin-credential", &data(&[("cert", &cert), ("key", &key)])).expect("good");
        let first = table.snapshot(None).expect("a first set");
        assert_eq!(first.version, 1);
        assert!(table.update("httpbin-credential", &data(&[("cert", "broken"), ("key", &key)])).is_err());
        assert_eq!(table.snapshot(Some(&first)), None, "a broken update changes nothing");
        table.remove("httpbin-credential");
        let emptied = table.snapshot(Some(&first)).expect("removal is a change");
        assert!(emptied.secrets.is_empty());
        assert_eq!(emptied.version, 2);
    }

    #[test]
    fn a_ca_only_secret_wins_over_a_compound_secrets_ca() {
        let (cert, key, root) = server_pair();
        let (_, _, other_root) = server_pair();
        let mut table = GatewaySecretTable::default();
        table.update("gw", &data(&[("cert", &cert), ("key", &key), ("cacert", &root)])).expect("compound");
        table.update("gw-cacert", &data(&[("cacert", &other_root)])).expect("ca only");
        let set = table.snapshot(None).expect("set");
        let Some(secret::Type::ValidationContext(context)) = &set.secrets["gw-cacert"].r#type else {
            panic!("a validation context")
        };
        assert_eq!(context.trusted_ca, inline(other_root.as_bytes()));
    }
}
