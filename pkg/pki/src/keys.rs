//! Private keys a CA signs with, from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, RSA or ECDSA) and
//! PKCS#1 (`BEGIN RSA PRIVATE KEY`, what `openssl genrsa` writes and what Istio's
//! `samples/certs` hold). PKCS#1 keys are rewrapped as PKCS#8, the form the signer takes.

use pkcs8::der::asn1::OctetStringRef;
use pkcs8::der::{Decode, Encode};
use rcgen::KeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pem::PemError;

/// Why a PEM private key cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("malformed RSA (PKCS#1) private key: {0}")]
    MalformedPkcs1(#[source] pkcs8::der::Error),
    #[error("re-encoding the RSA key as PKCS#8: {0}")]
    Encode(#[source] pkcs8::der::Error),
    #[error("unusable private key: {0}")]
    Rejected(#[source] rcgen::Error),
}

/// The key pair in PEM text, ready to sign certificates.
pub fn signing_key(pem: &str) -> Result<KeyPair, KeyError> {
    let pkcs8 = match crate::pem::private_key(pem.as_bytes())? {
        PrivateKeyDer::Pkcs8(pkcs8) => pkcs8,
        PrivateKeyDer::Pkcs1(pkcs1) => rsa_as_pkcs8(pkcs1.secret_pkcs1_der())?,
        PrivateKeyDer::Sec1(_) => {
            return Err(KeyError::Unsupported(
                "EC PRIVATE KEY (SEC1) keys are not supported; convert with `openssl pkcs8 -topk8 -nocrypt`",
            ))
        }
        _ => return Err(KeyError::Unsupported("unknown private key format")),
    };
    KeyPair::try_from(&PrivateKeyDer::Pkcs8(pkcs8)).map_err(KeyError::Rejected)
}

/// The public key (SubjectPublicKeyInfo, DER) of the private key in PEM text, to compare
/// with a certificate's.
pub fn public_key_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    Ok(rcgen::PublicKeyData::subject_public_key_info(&signing_key(pem)?))
}

/// A PKCS#1 RSAPrivateKey wrapped in a PKCS#8 PrivateKeyInfo (algorithm `rsaEncryption`).
fn rsa_as_pkcs8(pkcs1_der: &[u8]) -> Result<PrivatePkcs8KeyDer<'static>, KeyError> {
    pkcs1::RsaPrivateKeyRef::from_der(pkcs1_der).map_err(KeyError::MalformedPkcs1)?;
    let key = OctetStringRef::new(pkcs1_der).map_err(KeyError::Encode)?;
    let info = pkcs8::PrivateKeyInfoRef::new(pkcs1::ALGORITHM_ID, key);
    Ok(PrivatePkcs8KeyDer::from(info.to_der().map_err(KeyError::Encode)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA 2048 key in PKCS#1, as `openssl genrsa -traditional 2048` writes it.
    const RSA_PKCS1: &str = include_str!("../testdata/rsa-pkcs1.pem");

    #[test]
    fn pkcs1_rsa_keys_sign_with_rsa_sha256() {
        let key = signing_key(RSA_PKCS1).expect("PKCS#1 key");
        assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
        // The same key as PKCS#8 is taken as it is.
        let again = signing_key(&key.serialize_pem()).expect("PKCS#8 key");
        assert_eq!(again.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn generated_ecdsa_keys_round_trip() {
        let key = KeyPair::generate().expect("key");
        let again = signing_key(&key.serialize_pem()).expect("PKCS#8 key");
        assert_eq!(again.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    }

    #[test]
    fn what_cannot_sign_is_named() {
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIEBzTMJ/zukBm0MtzYA2Zljx9WQ+sdPC5R5PaB3hXvpJoAoGCCqGSM49\nAwEHoUQDQgAEUPt23AslyEJY20H7MVu7m7KpLGqhKLss/m9xFtdU3YxY1TxAqPN5\nQvHuVUd76sdAD4sojKCnDxqhkTySwnSMjA==\n-----END EC PRIVATE KEY-----\n";
        let error = signing_key(sec1).expect_err("SEC1");
        assert!(error.to_string().contains("openssl pkcs8 -topk8"), "{error}");
        let error = signing_key("no key here").expect_err("nothing");
        assert!(error.to_string().starts_with("no usable private key"), "{error}");
        let broken = "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n";
        let error = signing_key(broken).expect_err("broken PKCS#1");
        assert!(error.to_string().starts_with("malformed RSA (PKCS#1) private key"), "{error}");
    }
}
