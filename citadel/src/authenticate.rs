//! Who is calling the CA API: Istio 1.4's authenticators, tried in order until one succeeds.
//! - a client certificate the caller presented and the TLS handshake verified against the
//!   mesh's root (a workload renewing with the certificate it has): its subject alternative
//!   names are its identities;
//! - a service-account token in `authorization: Bearer …`, checked by the Kubernetes API server
//!   (TokenReview, audience `istio-ca`) or, on the local platform, against the platform's
//!   token-signing key. The identity is `spiffe://TRUST-DOMAIN/ns/NS/sa/SA`.

use std::sync::Arc;

use istio_pki::identity::SpiffeId;
use istio_pki::token::{ServiceAccount, TokenError, TokenVerifier, CITADEL_AUDIENCE};
use istio_pki::CertificateDer;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

/// How a caller was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    ClientCertificate,
    IdToken,
}

/// An authenticated caller: the identities it proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub source: AuthSource,
    pub identities: Vec<String>,
}

/// What a request brings to prove who sent it.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// The verified client certificate chain, leaf first.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The `authorization` metadata.
    pub authorization: Option<String>,
}

/// Why an authenticator did not recognise the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no client certificate")]
    NoClientCertificate,
    #[error("the client certificate names no identity")]
    NoIdentityInCertificate,
    #[error("no bearer token (the authorization metadata should be \"Bearer TOKEN\")")]
    NoBearerToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("failed to get a token review response: {0}")]
    TokenReviewCall(#[source] kube::Error),
    #[error("the service account authentication returns an error: {0}")]
    TokenReviewError(String),
    #[error("the token is not authenticated")]
    NotAuthenticated,
    #[error("the token is not a service account")]
    NotServiceAccount,
    #[error("the token's account gives no identity: {0}")]
    Identity(#[from] istio_pki::identity::IdentityError),
}

/// One way of recognising callers.
pub enum Authenticator {
    /// The verified client certificate's names.
    ClientCertificate,
    /// Tokens signed by the local platform.
    LocalToken { verifier: TokenVerifier, trust_domain: String },
    /// Tokens the Kubernetes API server vouches for.
    TokenReview { client: kube::Client, trust_domain: String },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Authenticator {
    /// Istio 1.4's name for the authenticator, used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Authenticator::ClientCertificate => "ClientCertAuthenticator",
            Authenticator::LocalToken { .. } => "LocalJWTAuthenticator",
            Authenticator::TokenReview { .. } => "KubeJWTAuthenticator",
        }
    }

    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Caller, AuthError> {
        match self {
            Authenticator::ClientCertificate => from_certificate(credentials),
            Authenticator::LocalToken { verifier, trust_domain } => {
                let account = verifier.verify(bearer_token(credentials)?)?;
                token_caller(trust_domain, &account)
            }
            Authenticator::TokenReview { client, trust_domain } => {
                let account = review(client, bearer_token(credentials)?).await?;
                token_caller(trust_domain, &account)
            }
        }
    }
}

/// Why no authenticator recognised a caller: each one's name, position and error.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct AuthFailures(pub Vec<(&'static str, AuthError)>);

fn describe(failures: &[(&'static str, AuthError)]) -> String {
    if failures.is_empty() {
        return "no authenticator is configured".to_string();
    }
    let lines: Vec<String> =
        failures.iter().enumerate().map(|(index, (name, error))| format!("{name} at index {index}: {error}")).collect();
    lines.join("; ")
}

/// Tries each authenticator in turn; when none succeeds, the error lists why each failed.
pub async fn authenticate(authenticators: &[Authenticator], credentials: &Credentials) -> Result<Caller, AuthFailures> {
    let mut failures = Vec::new();
    for authenticator in authenticators {
        match authenticator.authenticate(credentials).await {
            Ok(caller) => return Ok(caller),
            Err(error) => failures.push((authenticator.name(), error)),
        }
    }
    Err(AuthFailures(failures))
}

fn from_certificate(credentials: &Credentials) -> Result<Caller, AuthError> {
    let chain = credentials.peer_certificates.as_ref().ok_or(AuthError::NoClientCertificate)?;
    let leaf = chain.first().ok_or(AuthError::NoClientCertificate)?;
    let identities = istio_pki::certificate::subject_alt_names(leaf);
    if identities.is_empty() {
        return Err(AuthError::NoIdentityInCertificate);
    }
    Ok(Caller { source: AuthSource::ClientCertificate, identities })
}

fn bearer_token(credentials: &Credentials) -> Result<&str, AuthError> {
    let value = credentials.authorization.as_deref().ok_or(AuthError::NoBearerToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NoBearerToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::NoBearerToken);
    }
    Ok(token)
}

fn token_caller(trust_domain: &str, account: &ServiceAccount) -> Result<Caller, AuthError> {
    let identity = SpiffeId::new(trust_domain, &account.namespace, &account.name)?;
    Ok(Caller { source: AuthSource::IdToken, identities: vec![identity.to_string()] })
}

/// Asks the API server whether `token` is a service account's, for audience `istio-ca`,
/// with Istio 1.4's checks on the answer.
async fn review(client: &kube::Client, token: &str) -> Result<ServiceAccount, AuthError> {
    if !istio_pki::token::is_trustworthy(token)? {
        return Err(TokenError::NotTrustworthy.into());
    }
    let request = TokenReview {
        spec: TokenReviewSpec { token: Some(token.to_string()), audiences: Some(vec![CITADEL_AUDIENCE.to_string()]) },
        ..TokenReview::default()
    };
    let reviews: kube::Api<TokenReview> = kube::Api::all(client.clone());
    let answer =
        reviews.create(&kube::api::PostParams::default(), &request).await.map_err(AuthError::TokenReviewCall)?;
    let status = answer.status.unwrap_or_default();
    if let Some(error) = status.error.filter(|error| !error.is_empty()) {
        return Err(AuthError::TokenReviewError(error));
    }
    if status.authenticated != Some(true) {
        return Err(AuthError::NotAuthenticated);
    }
    let user = status.user.unwrap_or_default();
    if !user.groups.unwrap_or_default().iter().any(|group| group == "system:serviceaccounts") {
        return Err(AuthError::NotServiceAccount);
    }
    Ok(ServiceAccount::from_user_name(user.username.as_deref().unwrap_or_default())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use istio_pki::token::{TokenIssuer, TokenRequest, LOCAL_ISSUER};

    fn token(private: &str, namespace: &str, name: &str) -> String {
        let account = ServiceAccount { namespace: namespace.to_string(), name: name.to_string() };
        let issuer = TokenIssuer::new(private, LOCAL_ISSUER).expect("issuer");
        let request = TokenRequest {
            account: &account,
            pod: None,
            audience: CITADEL_AUDIENCE,
            lifetime: Duration::from_secs(60),
        };
        issuer.issue(&request).expect("token")
    }

    #[tokio::test]
    async fn a_local_token_proves_its_account_and_failures_say_why() {
        let key = istio_pki::token::generate_signing_key().expect("key");
        let verifier = TokenVerifier::new(&key.1, LOCAL_ISSUER, CITADEL_AUDIENCE).expect("verifier");
        let authenticators = [
            Authenticator::ClientCertificate,
            Authenticator::LocalToken { verifier, trust_domain: "cluster.local".to_string() },
        ];
        let good = Credentials {
            authorization: Some(format!("Bearer {}", token(&key.0, "foo", "sleep"))),
            ..Credentials::default()
        };
        let caller = authenticate(&authenticators, &good).await.expect("caller");
        assert_eq!(caller.identities, ["spiffe://cluster.local/ns/foo/sa/sleep"]);
        assert_eq!(caller.source, AuthSource::IdToken);

        let error = authenticate(&authenticators, &Credentials::default()).await.expect_err("nothing").to_string();
        assert!(error.contains("ClientCertAuthenticator at index 0: no client certificate"), "{error}");
        assert!(error.contains("LocalJWTAuthenticator at index 1: no bearer token"), "{error}");

        let other = istio_pki::token::generate_signing_key().expect("key");
        let forged = Credentials {
            authorization: Some(format!("Bearer {}", token(&other.0, "foo", "sleep"))),
            ..Credentials::default()
        };
        let error = authenticate(&authenticators, &forged).await.expect_err("forged").to_string();
        assert!(error.contains("signature does not verify"), "{error}");
    }

    #[test]
    fn a_client_certificate_proves_its_names() {
        let ca = istio_pki::ca::CertificateAuthority::self_signed("test CA").expect("ca");
        let issued = ca
            .issue(&istio_pki::ca::LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/httpbin"]))
            .expect("leaf");
        let chain = istio_pki::pem::certificates(issued.cert_chain_pem.as_bytes()).expect("pem");
        let credentials = Credentials { peer_certificates: Some(Arc::new(chain)), ..Credentials::default() };
        let caller = from_certificate(&credentials).expect("caller");
        assert_eq!(caller.identities, ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
        assert_eq!(caller.source, AuthSource::ClientCertificate);
    }

    #[test]
    fn bearer_tokens_are_read_as_grpc_sends_them() {
        let with = |value: &str| Credentials { authorization: Some(value.to_string()), ..Credentials::default() };
        assert_eq!(bearer_token(&with("Bearer abc")).expect("token"), "abc");
        assert_eq!(bearer_token(&with("bearer abc")).expect("token"), "abc");
        for bad in ["abc", "Basic abc", "Bearer ", "Bearer"] {
            assert!(bearer_token(&with(bad)).is_err(), "{bad}");
        }
    }

    /// A fake API server answering TokenReviews, to check the request Citadel sends and how
    /// it reads the answers (Istio 1.4's cases: errors, unauthenticated, not an account).
    #[tokio::test]
    async fn token_reviews_are_asked_and_read_as_istio_did() {
        use http::{Request, Response};
        use kube::client::Body;

        let key = istio_pki::token::generate_signing_key().expect("key");
        let token = token(&key.0, "foo", "sleep");
        let answers = [
            (
                serde_json::json!({"authenticated": true, "user": {"username": "system:serviceaccount:foo:sleep",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:foo", "system:authenticated"]}}),
                Ok("sleep"),
            ),
            (serde_json::json!({"authenticated": false, "error": "invalid bearer token"}), Err("invalid bearer token")),
            (serde_json::json!({"authenticated": false}), Err("not authenticated")),
            (
                serde_json::json!({"authenticated": true, "user": {"username": "alice", "groups": ["system:authenticated"]}}),
                Err("not a service account"),
            ),
        ];
        for (status, expected) in answers {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let client = kube::Client::new(service, "default");
            let sent = token.clone();
            let server = tokio::spawn(async move {
                let (request, respond) = handle.next_request().await.expect("a request");
                assert_eq!(request.method(), "POST");
                assert_eq!(request.uri().path(), "/apis/authentication.k8s.io/v1/tokenreviews");
                let body = request.into_body().collect_bytes().await.expect("body");
                let review: serde_json::Value = serde_json::from_slice(&body).expect("json");
                assert_eq!(review["spec"]["token"], sent.as_str());
                assert_eq!(review["spec"]["audiences"], serde_json::json!(["istio-ca"]));
                let mut answer = review.clone();
                answer["status"] = status;
                respond.send_response(Response::new(Body::from(serde_json::to_vec(&answer).expect("json"))));
            });
            let authenticator = Authenticator::TokenReview { client, trust_domain: "cluster.local".to_string() };
            let credentials = Credentials { authorization: Some(format!("Bearer {token}")), ..Credentials::default() };
            let result = authenticator.authenticate(&credentials).await;
            server.await.expect("server");
            match expected {
                Ok(account) => {
                    let caller = result.expect("caller");
                    assert_eq!(caller.identities, [format!("spiffe://cluster.local/ns/foo/sa/{account}")]);
                }
                Err(message) => {
                    let error = result.expect_err(message).to_string();
                    assert!(error.contains(message), "{error}");
                }
            }
        }
    }
}
