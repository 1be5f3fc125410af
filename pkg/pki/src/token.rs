//! Service-account tokens: how a workload proves to Citadel which service account it runs
//! as before Citadel signs a certificate for that identity. They have the form of the
//! Kubernetes projected tokens Istio 1.4's node agent sent (a JWT with an audience, an expiry
//! and `sub: system:serviceaccount:NS:SA`).
//!
//! On Kubernetes the API server signs them and Citadel asks it (TokenReview) whether one is
//! good. The local platform has no API server: it signs pods' tokens itself with a
//! [`TokenIssuer`], and Citadel checks them with a [`TokenVerifier`] holding the issuer's
//! public key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience Citadel asks tokens to carry (Istio 1.4's SDS "trustworthy JWT").
pub const CITADEL_AUDIENCE: &str = "istio-ca";
/// The issuer the local platform signs as, the name a Kubernetes API server usually uses.
pub const LOCAL_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The prefix of a service account's user name: `system:serviceaccount:NS:SA`.
const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// A service account in a namespace, as a token names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// Reads `system:serviceaccount:NS:SA`, the user name Kubernetes gives a service account.
    pub fn from_user_name(user_name: &str) -> Result<ServiceAccount, TokenError> {
        let rest = user_name
            .strip_prefix(SUBJECT_PREFIX)
            .ok_or_else(|| TokenError::NotAServiceAccount(user_name.to_string()))?;
        match rest.split(':').collect::<Vec<_>>()[..] {
            [namespace, name] if !namespace.is_empty() && !name.is_empty() => {
                Ok(ServiceAccount { namespace: namespace.to_string(), name: name.to_string() })
            }
            _ => Err(TokenError::NotAServiceAccount(user_name.to_string())),
        }
    }

    /// `system:serviceaccount:NS:SA`
    pub fn user_name(&self) -> String {
        format!("{SUBJECT_PREFIX}{}:{}", self.namespace, self.name)
    }
}

/// Why a token was not accepted, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("legacy JWTs are not allowed and the provided jwt is not trustworthy (it has no audience or no expiry)")]
    NotTrustworthy,
    #[error("the token's signature does not verify: it was not issued by this cluster")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not meant for {expected:?} (its audience is {actual:?})")]
    Audience { expected: String, actual: Vec<String> },
    #[error("the token was issued by {actual:?}, not {expected:?}")]
    Issuer { expected: String, actual: String },
    #[error("the token is not a service account's: its subject is {0:?}")]
    NotAServiceAccount(String),
    #[error("the signing key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    #[error("making a signing key: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("signing the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The claims of a projected service-account token that matter here.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(default)]
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default)]
    nbf: u64,
    #[serde(rename = "kubernetes.io", default, skip_serializing_if = "Option::is_none")]
    kubernetes: Option<KubernetesClaims>,
}

/// The `kubernetes.io` claim: whose token it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<NamedObject>,
    serviceaccount: NamedObject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NamedObject {
    name: String,
    #[serde(default)]
    uid: String,
}

/// `aud` may be one string or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// A new token-signing key (ECDSA P-256): (private key as PKCS#8 PEM, public key as SPKI PEM).
pub fn generate_signing_key() -> Result<(String, String), TokenError> {
    let key = rcgen::KeyPair::generate().map_err(TokenError::Generate)?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// What a token is issued for.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub account: &'a ServiceAccount,
    /// The pod the token is mounted into, if any.
    pub pod: Option<&'a str>,
    pub audience: &'a str,
    pub lifetime: Duration,
}

/// Signs service-account tokens (ES256) with the local platform's key.
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TokenIssuer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with `private_key_pem`, an ECDSA P-256 key in PKCS#8 PEM.
    pub fn new(private_key_pem: &str, issuer: &str) -> Result<TokenIssuer, TokenError> {
        let key = EncodingKey::from_ec_pem(private_key_pem.as_bytes()).map_err(TokenError::Key)?;
        Ok(TokenIssuer { key, issuer: issuer.to_string() })
    }

    /// A signed token for `request`.
    pub fn issue(&self, request: &TokenRequest<'_>) -> Result<String, TokenError> {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: request.account.user_name(),
            aud: vec![request.audience.to_string()],
            exp: now + request.lifetime.as_secs(),
            iat: now,
            nbf: now,
            kubernetes: Some(KubernetesClaims {
                namespace: request.account.namespace.clone(),
                pod: request.pod.map(|pod| NamedObject { name: pod.to_string(), uid: String::new() }),
                serviceaccount: NamedObject { name: request.account.name.clone(), uid: String::new() },
            }),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).map_err(TokenError::Sign)
    }
}

/// Checks tokens a [`TokenIssuer`] signed: signature, issuer, audience and expiry.
pub struct TokenVerifier {
    key: DecodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TokenVerifier").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed by the key whose public half is `public_key_pem` (SPKI
    /// PEM), issued by `issuer`, for `audience`.
    pub fn new(public_key_pem: &str, issuer: &str, audience: &str) -> Result<TokenVerifier, TokenError> {
        let key = DecodingKey::from_ec_pem(public_key_pem.as_bytes()).map_err(TokenError::Key)?;
        Ok(TokenVerifier { key, issuer: issuer.to_string(), audience: audience.to_string() })
    }

    /// The service account a good token names.
    pub fn verify(&self, token: &str) -> Result<ServiceAccount, TokenError> {
        let claims = unverified_claims(token)?;
        if claims.aud.is_empty() || claims.exp == 0 {
            return Err(TokenError::NotTrustworthy);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let verified = jsonwebtoken::decode::<Claims>(token, &self.key, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::Signature,
                _ => TokenError::Malformed(error.to_string()),
            }
        })?;
        let claims = verified.claims;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer { expected: self.issuer.clone(), actual: claims.iss });
        }
        if !claims.aud.contains(&self.audience) {
            return Err(TokenError::Audience { expected: self.audience.clone(), actual: claims.aud });
        }
        ServiceAccount::from_user_name(&claims.sub)
    }
}

/// A token's claims read without checking its signature: whether it could be a trustworthy
/// token at all (Istio 1.4 refused legacy tokens before asking the API server).
fn unverified_claims(token: &str) -> Result<Claims, TokenError> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("expected three dot-separated parts".to_string()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|error| TokenError::Malformed(format!("the payload is not base64url: {error}")))?;
    serde_json::from_slice(&bytes).map_err(|error| TokenError::Malformed(format!("the payload: {error}")))
}

/// The service account a token names, read without checking its signature: the node agent
/// asks for a certificate for it, and Citadel checks the token when it answers (Istio 1.4's
/// `constructCSRHostName`).
pub fn claimed_account(token: &str) -> Result<ServiceAccount, TokenError> {
    ServiceAccount::from_user_name(&unverified_claims(token)?.sub)
}

/// Whether `token` has the audience and expiry a projected token has (Istio 1.4's check
/// before a TokenReview: legacy secret-based tokens have neither).
pub fn is_trustworthy(token: &str) -> Result<bool, TokenError> {
    let claims = unverified_claims(token)?;
    Ok(!claims.aud.is_empty() && claims.exp > 0)
}

/// Whether a token is past 80 % of its lifetime (or unreadable, or without an expiry), when
/// the kubelet replaces a projected token.
pub fn renewal_due(token: &str, now: SystemTime) -> bool {
    let Ok(claims) = unverified_claims(token) else { return true };
    if claims.exp == 0 || claims.exp <= claims.iat {
        return true;
    }
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let renew_at = claims.iat + (claims.exp - claims.iat) * 4 / 5;
    now >= renew_at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair() -> (String, String) {
        generate_signing_key().expect("key")
    }

    fn account() -> ServiceAccount {
        ServiceAccount { namespace: "foo".to_string(), name: "sleep".to_string() }
    }

    fn request(account: &ServiceAccount, lifetime: Duration) -> TokenRequest<'_> {
        TokenRequest { account, pod: Some("sleep-1"), audience: CITADEL_AUDIENCE, lifetime }
    }

    #[test]
    fn the_claimed_account_is_read_without_a_key() {
        let (private, _) = key_pair();
        let issuer = TokenIssuer::new(&private, LOCAL_ISSUER).expect("issuer");
        let token = issuer.issue(&request(&account(), Duration::from_secs(600))).expect("token");
        assert_eq!(claimed_account(&token).expect("claims"), account());
        assert!(claimed_account("not.a.token").is_err());
    }

    #[test]
    fn an_issued_token_verifies_to_its_account() {
        let (private, public) = key_pair();
        let issuer = TokenIssuer::new(&private, LOCAL_ISSUER).expect("issuer");
        let token = issuer.issue(&request(&account(), Duration::from_secs(600))).expect("token");
        let verifier = TokenVerifier::new(&public, LOCAL_ISSUER, CITADEL_AUDIENCE).expect("verifier");
        assert_eq!(verifier.verify(&token).expect("verified"), account());
        assert!(is_trustworthy(&token).expect("claims"));
    }

    #[test]
    fn forged_expired_and_misdirected_tokens_are_refused() {
        let (private, public) = key_pair();
        let (other_private, _) = key_pair();
        let verifier = TokenVerifier::new(&public, LOCAL_ISSUER, CITADEL_AUDIENCE).expect("verifier");
        let account = account();

        let forger = TokenIssuer::new(&other_private, LOCAL_ISSUER).expect("issuer");
        let forged = forger.issue(&request(&account, Duration::from_secs(600))).expect("token");
        assert!(matches!(verifier.verify(&forged), Err(TokenError::Signature)), "another key");

        let issuer = TokenIssuer::new(&private, LOCAL_ISSUER).expect("issuer");
        let expired = issuer.issue(&request(&account, Duration::ZERO)).expect("token");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(verifier.verify(&expired), Err(TokenError::Expired)), "expired");

        let other_audience = TokenRequest { audience: "kubernetes", ..request(&account, Duration::from_secs(600)) };
        let token = issuer.issue(&other_audience).expect("token");
        let error = verifier.verify(&token).expect_err("audience");
        assert!(error.to_string().contains("istio-ca"), "{error}");

        let elsewhere = TokenIssuer::new(&private, "https://elsewhere").expect("issuer");
        let token = elsewhere.issue(&request(&account, Duration::from_secs(600))).expect("token");
        assert!(matches!(verifier.verify(&token), Err(TokenError::Issuer { .. })));

        // A payload edited after signing: the identity changes, the signature no longer matches.
        let token = issuer.issue(&request(&account, Duration::from_secs(600))).expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(parts[1]).expect("payload")).expect("utf8");
        let edited = engine.encode(payload.replace("sleep", "admin"));
        let tampered = format!("{}.{}.{}", parts[0], edited, parts[2]);
        assert!(matches!(verifier.verify(&tampered), Err(TokenError::Signature)), "tampered");

        assert!(matches!(verifier.verify("not a token"), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn legacy_tokens_without_audience_or_expiry_are_not_trustworthy() {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let legacy = serde_json::json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:foo:sleep"});
        let token = format!("{}.{}.c2ln", engine.encode(r#"{"alg":"RS256"}"#), engine.encode(legacy.to_string()));
        assert!(!is_trustworthy(&token).expect("claims"));
        let (_, public) = key_pair();
        let verifier = TokenVerifier::new(&public, LOCAL_ISSUER, CITADEL_AUDIENCE).expect("verifier");
        assert!(matches!(verifier.verify(&token), Err(TokenError::NotTrustworthy)));
    }

    #[test]
    fn tokens_are_renewed_after_four_fifths_of_their_life() {
        let (private, _) = key_pair();
        let issuer = TokenIssuer::new(&private, LOCAL_ISSUER).expect("issuer");
        let token = issuer.issue(&request(&account(), Duration::from_secs(1000))).expect("token");
        let now = SystemTime::now();
        assert!(!renewal_due(&token, now));
        assert!(!renewal_due(&token, now + Duration::from_secs(700)));
        assert!(renewal_due(&token, now + Duration::from_secs(900)));
        assert!(renewal_due("garbage", now));
    }

    #[test]
    fn user_names_name_service_accounts() {
        let account = ServiceAccount::from_user_name("system:serviceaccount:default:example-pod-sa").expect("account");
        assert_eq!((account.namespace.as_str(), account.name.as_str()), ("default", "example-pod-sa"));
        assert_eq!(account.user_name(), "system:serviceaccount:default:example-pod-sa");
        for bad in ["system:anonymous", "system:serviceaccount:default", "system:serviceaccount::sa", "a:b:c:d"] {
            assert!(ServiceAccount::from_user_name(bad).is_err(), "{bad}");
        }
    }
}
