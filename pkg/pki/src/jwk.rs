//! JSON Web Keys: the public half of an RSA or P-256 key pair as a JWK (what an identity
//! provider publishes at its `jwks_uri`), and an issuer that signs JWTs with the private half.
//! The end-user authentication tests act as such a provider with these. (RSA keys are
//! loaded, not generated: the crypto provider signs with RSA but does not make RSA keys.)

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Why a key could not be published or used.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    #[error("unsupported key type for a JWK (RSA and P-256 are supported)")]
    Unsupported,
    #[error("malformed RSA public key: {0}")]
    Rsa(String),
    #[error("unusable private key: {0}")]
    Key(String),
    #[error("the key cannot sign JWTs: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public key of `pair` as a JWK with key id `kid` (`alg` RS256 or ES256, `use: sig`).
pub fn public_jwk(pair: &rcgen::KeyPair, kid: &str) -> Result<Value, JwkError> {
    let raw = pair.public_key_raw();
    if pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
        use pkcs1::der::Decode;
        let key = pkcs1::RsaPublicKey::<pkcs1::UintRef<'_>>::from_der(raw)
            .map_err(|error| JwkError::Rsa(error.to_string()))?;
        return Ok(json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": base64url(key.modulus.as_bytes()),
            "e": base64url(key.public_exponent.as_bytes()),
        }));
    }
    if pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) && raw.len() == 65 && raw[0] == 4 {
        return Ok(json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": base64url(&raw[1..33]),
            "y": base64url(&raw[33..]),
        }));
    }
    Err(JwkError::Unsupported)
}

/// A token issuer: a key pair, its key id, and the JWKS document publishing it.
pub struct JwtIssuer {
    encoding: EncodingKey,
    algorithm: Algorithm,
    kid: String,
    jwk: Value,
}

impl JwtIssuer {
    /// An issuer signing with the private key in PEM text: RS256 for an RSA key (PKCS#1 or
    /// PKCS#8, as `openssl genrsa` writes it), ES256 for a P-256 one.
    pub fn from_pem(pem: &str, kid: &str) -> Result<JwtIssuer, JwkError> {
        let pair = crate::keys::signing_key(pem).map_err(|error| JwkError::Key(error.to_string()))?;
        let pkcs8 = pair.serialize_pem();
        let (encoding, algorithm) = if pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
            (EncodingKey::from_rsa_pem(pkcs8.as_bytes()).map_err(JwkError::Signing)?, Algorithm::RS256)
        } else {
            (EncodingKey::from_ec_pem(pkcs8.as_bytes()).map_err(JwkError::Signing)?, Algorithm::ES256)
        };
        Ok(JwtIssuer { encoding, algorithm, kid: kid.to_string(), jwk: public_jwk(&pair, kid)? })
    }

    /// A new P-256 (ES256) issuer.
    pub fn ec(kid: &str) -> Result<JwtIssuer, JwkError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|_| JwkError::Unsupported)?;
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).map_err(JwkError::Signing)?;
        Ok(JwtIssuer { encoding, algorithm: Algorithm::ES256, kid: kid.to_string(), jwk: public_jwk(&pair, kid)? })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `{"keys": [the JWK]}`, as a `jwks_uri` serves it.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// A JWT with these claims, signed with the key and naming its `kid`.
    pub fn sign(&self, claims: &Value) -> Result<String, JwkError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(JwkError::Signing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{jwk::Jwk, DecodingKey, Validation};

    #[test]
    fn tokens_verify_with_the_published_key() {
        let rsa = JwtIssuer::from_pem(include_str!("../testdata/rsa-pkcs1.pem"), "r").expect("rsa");
        for issuer in [rsa, JwtIssuer::ec("e").expect("ec")] {
            let token = issuer.sign(&json!({"iss": "me", "sub": "you"})).expect("sign");
            let jwk: Jwk = serde_json::from_value(issuer.jwk().clone()).expect("jwk parses");
            let key = DecodingKey::from_jwk(&jwk).expect("decoding key");
            let mut validation = Validation::new(issuer.algorithm);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies").claims;
            assert_eq!(claims["sub"], "you");
            assert!(issuer.jwks().contains(&format!("\"kid\":\"{}\"", issuer.kid)));
        }
    }
}
