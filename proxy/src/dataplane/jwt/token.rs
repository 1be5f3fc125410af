//! One JWT checked against one provider, in the order and with the outcomes of Envoy's
//! `jwt_authn`: the token's form (three base64url sections, a JSON header with a supported
//! `alg`, a JSON object payload), the issuer, the time window (`exp`, `nbf`, with the
//! provider's clock skew), the audiences, and last the signature against the provider's JWKS.
//! Signatures are checked by the `jsonwebtoken` crate; this module only picks the keys.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Why a token was not accepted, with the text Envoy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtError {
    Missing,
    NotYetValid,
    Expired,
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    HeaderBadAlg,
    HeaderUnsupportedAlg,
    PayloadBadBase64,
    PayloadBadJson,
    ExpNotInteger,
    NbfNotInteger,
    SignatureBadBase64,
    VerificationFails,
    UnknownIssuer,
    AudienceNotAllowed,
    NoMatchingKey,
    NoValidKeys,
}

impl JwtError {
    /// The body of the 401 (or 403) Envoy sends for this error.
    pub(crate) fn message(self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::Expired => "Jwt is expired",
            JwtError::BadFormat => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            JwtError::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            JwtError::HeaderBadJson => "Jwt header is an invalid JSON",
            JwtError::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            JwtError::HeaderUnsupportedAlg => "Jwt header [alg] is not supported",
            JwtError::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            JwtError::PayloadBadJson => "Jwt payload is an invalid JSON",
            JwtError::ExpNotInteger => "Jwt payload [exp] field is not an integer",
            JwtError::NbfNotInteger => "Jwt payload [nbf] field is not an integer",
            JwtError::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            JwtError::VerificationFails => "Jwt verification fails",
            JwtError::UnknownIssuer => "Jwt issuer is not configured",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtError::NoMatchingKey => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtError::NoValidKeys => "Jwks doesn't have any valid public key",
        }
    }
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub(crate) struct ParsedToken<'a> {
    raw: &'a str,
    algorithm: Algorithm,
    key_id: Option<String>,
    pub payload: Map<String, Value>,
}

impl ParsedToken<'_> {
    /// The `iss` claim ("" when absent or not a string).
    pub(crate) fn issuer(&self) -> &str {
        self.payload.get("iss").and_then(Value::as_str).unwrap_or_default()
    }
}

fn base64url(section: &str) -> Option<Vec<u8>> {
    // Envoy's decoder is lenient: padded or not, and stray bits in the last character are
    // ignored (what decodes to garbage then fails as JSON, as it does in Envoy).
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(section).ok()
}

/// Splits and decodes a token, checking its form as Envoy's parser does.
pub(crate) fn parse(raw: &str) -> Result<ParsedToken<'_>, JwtError> {
    // An empty section does not count, as in Envoy's parser: `header.payload.` is malformed.
    let sections: Vec<&str> = raw.split('.').filter(|section| !section.is_empty()).collect();
    let [header, payload, signature] = sections[..] else { return Err(JwtError::BadFormat) };
    let header = base64url(header).ok_or(JwtError::HeaderBadBase64)?;
    let header: Value = serde_json::from_slice(&header).map_err(|_| JwtError::HeaderBadJson)?;
    let Some(header) = header.as_object() else { return Err(JwtError::HeaderBadJson) };
    let algorithm = match header.get("alg") {
        Some(Value::String(name)) => supported_algorithm(name).ok_or(JwtError::HeaderUnsupportedAlg)?,
        _ => return Err(JwtError::HeaderBadAlg),
    };
    let key_id = header.get("kid").and_then(Value::as_str).map(str::to_string);
    let payload = base64url(payload).ok_or(JwtError::PayloadBadBase64)?;
    let payload: Value = serde_json::from_slice(&payload).map_err(|_| JwtError::PayloadBadJson)?;
    let Value::Object(payload) = payload else { return Err(JwtError::PayloadBadJson) };
    // A time claim that is not a number would otherwise make the token never expire.
    for (claim, error) in [("exp", JwtError::ExpNotInteger), ("nbf", JwtError::NbfNotInteger)] {
        if payload.get(claim).is_some_and(|value| !value.is_number()) {
            return Err(error);
        }
    }
    base64url(signature).ok_or(JwtError::SignatureBadBase64)?;
    Ok(ParsedToken { raw, algorithm, key_id, payload })
}

/// The algorithms Envoy verifies (`none` is not one of them).
fn supported_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One usable key of a JWKS.
struct Key {
    id: Option<String>,
    algorithm: Option<String>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Key").field("id", &self.id).field("algorithm", &self.algorithm).finish()
    }
}

/// A provider's keys: those of its JWKS the crate can use (others are passed over, as Envoy
/// passes over keys it does not support).
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The usable keys of a JWKS document (`{"keys": [...]}`); text that is not one gives an
    /// empty set, which fails every token with "Jwks doesn't have any valid public key".
    pub(crate) fn from_jwks(text: &str) -> KeySet {
        let Ok(document) = serde_json::from_str::<Value>(text) else { return KeySet::default() };
        let Some(entries) = document.get("keys").and_then(Value::as_array) else { return KeySet::default() };
        let keys = entries
            .iter()
            .filter_map(|entry| {
                let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
                let decoding = DecodingKey::from_jwk(&jwk).ok()?;
                Some(Key {
                    id: entry.get("kid").and_then(Value::as_str).map(str::to_string),
                    algorithm: entry.get("alg").and_then(Value::as_str).map(str::to_string),
                    decoding,
                })
            })
            .collect();
        KeySet { keys }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks the signature with the keys whose `kid` and `alg` fit the token's.
    fn verify(&self, token: &ParsedToken<'_>) -> Result<(), JwtError> {
        if self.keys.is_empty() {
            return Err(JwtError::NoValidKeys);
        }
        let algorithm_name = format!("{:?}", token.algorithm);
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|key| match (&token.key_id, &key.id) {
                (Some(wanted), Some(id)) => wanted == id,
                _ => true,
            })
            .filter(|key| key.algorithm.as_deref().is_none_or(|algorithm| algorithm == algorithm_name))
            .collect();
        if candidates.is_empty() {
            return Err(JwtError::NoMatchingKey);
        }
        let mut validation = Validation::new(token.algorithm);
        // The claims are Envoy's to check (above); the crate checks the signature only.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut family_matched = false;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token.raw, &key.decoding, &validation) {
                Ok(_) => return Ok(()),
                Err(error) => {
                    if !matches!(error.kind(), jsonwebtoken::errors::ErrorKind::InvalidAlgorithm) {
                        family_matched = true;
                    }
                }
            }
        }
        Err(if family_matched { JwtError::VerificationFails } else { JwtError::NoMatchingKey })
    }
}

/// What a provider checks besides the signature.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// Required `iss` (empty: any).
    pub issuer: String,
    /// Allowed audiences (empty: any).
    pub audiences: Vec<String>,
    /// Seconds of tolerance on `exp` and `nbf`.
    pub clock_skew: u64,
    pub require_expiration: bool,
}

/// Audiences compared as Envoy compares them: without an `http://` or `https://` scheme and
/// without a trailing `/`.
fn sanitized_audience(audience: &str) -> &str {
    let audience = audience.strip_prefix("http://").or_else(|| audience.strip_prefix("https://")).unwrap_or(audience);
    audience.strip_suffix('/').unwrap_or(audience)
}

fn number(value: Option<&Value>) -> Option<u64> {
    value.and_then(|value| value.as_u64().or_else(|| value.as_f64().map(|float| float as u64)))
}

/// Checks a parsed token: issuer, time window, audiences (`audiences` overrides the
/// provider's when a requirement names its own), then the signature.
pub(crate) fn verify(
    token: &ParsedToken<'_>,
    checks: &Checks,
    audiences: Option<&[String]>,
    keys: &KeySet,
) -> Result<(), JwtError> {
    check_claims(&token.payload, checks, audiences)?;
    keys.verify(token)
}

/// The checks of a payload, without the signature: what is checked again when a token whose
/// signature was verified before comes back (its time window may have passed since).
pub(crate) fn check_claims(
    payload: &Map<String, Value>,
    checks: &Checks,
    audiences: Option<&[String]>,
) -> Result<(), JwtError> {
    let issuer = payload.get("iss").and_then(Value::as_str).unwrap_or_default();
    if !checks.issuer.is_empty() && issuer != checks.issuer {
        return Err(JwtError::UnknownIssuer);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or_default();
    match number(payload.get("exp")) {
        Some(expiry) if now > expiry.saturating_add(checks.clock_skew) => return Err(JwtError::Expired),
        None if checks.require_expiration => return Err(JwtError::Expired),
        _ => {}
    }
    if let Some(not_before) = number(payload.get("nbf")) {
        if now.saturating_add(checks.clock_skew) < not_before {
            return Err(JwtError::NotYetValid);
        }
    }
    let allowed = audiences.unwrap_or(&checks.audiences);
    if !allowed.is_empty() {
        let presented: Vec<&str> = match payload.get("aud") {
            Some(Value::String(audience)) => vec![audience.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = presented.iter().any(|presented| {
            allowed.iter().any(|allowed| sanitized_audience(allowed) == sanitized_audience(presented))
        });
        if !fits {
            return Err(JwtError::AudienceNotAllowed);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use istio_pki::jwk::JwtIssuer;
    use serde_json::json;

    /// An RSA 2048 key, as `openssl genrsa` writes it.
    pub(crate) const RSA_KEY: &str = include_str!("testdata/rsa.pem");

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
    }

    fn checks() -> Checks {
        Checks { issuer: "testing@secure.istio.io".into(), clock_skew: 60, ..Checks::default() }
    }

    fn check(issuer: &JwtIssuer, token: &str, checks: &Checks) -> Result<(), JwtError> {
        let keys = KeySet::from_jwks(&issuer.jwks());
        verify(&parse(token)?, checks, None, &keys)
    }

    fn sign(issuer: &JwtIssuer, claims: serde_json::Value) -> String {
        issuer.sign(&claims).expect("sign")
    }

    #[test]
    fn a_signed_token_passes_with_rsa_and_ec_keys() {
        for issuer in [JwtIssuer::from_pem(RSA_KEY, "a").expect("rsa"), JwtIssuer::ec("b").expect("ec")] {
            let token = sign(&issuer, json!({"iss": "testing@secure.istio.io", "sub": "s", "exp": now() + 60}));
            assert_eq!(check(&issuer, &token, &checks()), Ok(()));
        }
    }

    #[test]
    fn expiry_and_not_before_allow_the_clock_skew() {
        let issuer = JwtIssuer::ec("a").expect("ec");
        let claims = |exp: u64| json!({"iss": "testing@secure.istio.io", "exp": exp});
        assert_eq!(check(&issuer, &sign(&issuer, claims(now() - 30)), &checks()), Ok(()), "within the skew");
        assert_eq!(check(&issuer, &sign(&issuer, claims(now() - 120)), &checks()), Err(JwtError::Expired));
        let early = json!({"iss": "testing@secure.istio.io", "nbf": now() + 600});
        assert_eq!(check(&issuer, &sign(&issuer, early), &checks()), Err(JwtError::NotYetValid));
        let no_expiry = sign(&issuer, json!({"iss": "testing@secure.istio.io"}));
        assert_eq!(check(&issuer, &no_expiry, &checks()), Ok(()), "exp is optional by default");
        let strict = Checks { require_expiration: true, ..checks() };
        assert_eq!(check(&issuer, &no_expiry, &strict), Err(JwtError::Expired));
    }

    #[test]
    fn issuer_and_audiences_are_checked_before_the_signature() {
        let issuer = JwtIssuer::ec("a").expect("ec");
        let other = JwtIssuer::ec("a").expect("ec");
        let foreign = sign(&other, json!({"iss": "someone@else"}));
        assert_eq!(check(&issuer, &foreign, &checks()), Err(JwtError::UnknownIssuer));
        let with_audience = Checks { audiences: vec!["https://bookinfo.example/".into()], ..checks() };
        let token = sign(&issuer, json!({"iss": "testing@secure.istio.io", "aud": ["x", "bookinfo.example"]}));
        assert_eq!(check(&issuer, &token, &with_audience), Ok(()), "scheme and slash ignored");
        let token = sign(&issuer, json!({"iss": "testing@secure.istio.io", "aud": "y"}));
        assert_eq!(check(&issuer, &token, &with_audience), Err(JwtError::AudienceNotAllowed));
        let forged = sign(&other, json!({"iss": "testing@secure.istio.io"}));
        assert_eq!(check(&issuer, &forged, &checks()), Err(JwtError::VerificationFails), "signed by another key");
    }

    #[test]
    fn malformed_tokens_are_refused_with_envoy_reasons() {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let payload = encode(r#"{"iss":"testing@secure.istio.io"}"#);
        let cases = [
            ("abc".to_string(), JwtError::BadFormat),
            ("a.b.c.d".to_string(), JwtError::BadFormat),
            (format!("!!.{payload}.c2ln"), JwtError::HeaderBadBase64),
            (format!("{}.{payload}.c2ln", encode("not json")), JwtError::HeaderBadJson),
            (format!("{}.{payload}.c2ln", encode(r#"{"typ":"JWT"}"#)), JwtError::HeaderBadAlg),
            (format!("{}.{payload}.", encode(r#"{"alg":"none"}"#)), JwtError::BadFormat),
            (format!("{}.{payload}.c2ln", encode(r#"{"alg":"none"}"#)), JwtError::HeaderUnsupportedAlg),
            (format!("{}.{}.c2ln", encode(r#"{"alg":"RS256"}"#), encode("[1]")), JwtError::PayloadBadJson),
            (
                format!("{}.{}.c2ln", encode(r#"{"alg":"RS256"}"#), encode(r#"{"exp":"never"}"#)),
                JwtError::ExpNotInteger,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(parse(&token).err(), Some(expected), "{token}");
        }
    }

    #[test]
    fn keys_are_chosen_by_kid_and_type() {
        let rsa = JwtIssuer::from_pem(RSA_KEY, "one").expect("rsa");
        let token = sign(&rsa, json!({"iss": "testing@secure.istio.io"}));
        let ec = JwtIssuer::ec("one").expect("ec");
        assert_eq!(check(&ec, &token, &checks()), Err(JwtError::NoMatchingKey), "an EC key for an RS256 token");
        let other_kid = JwtIssuer::from_pem(RSA_KEY, "two").expect("rsa");
        assert_eq!(check(&other_kid, &token, &checks()), Err(JwtError::NoMatchingKey), "another kid");
        assert_eq!(KeySet::from_jwks("not json").len(), 0);
        let parsed = parse(&token).expect("parse");
        assert_eq!(verify(&parsed, &checks(), None, &KeySet::from_jwks(r#"{"keys": []}"#)), Err(JwtError::NoValidKeys));
        let mixed = json!({"keys": [{"kty": "unknown"}, rsa.jwk()]}).to_string();
        assert_eq!(KeySet::from_jwks(&mixed).len(), 1, "unsupported keys are passed over");
        assert_eq!(verify(&parsed, &checks(), None, &KeySet::from_jwks(&mixed)), Ok(()));
    }
}
