//! The 1.4 end-user authentication task and JWT claims in authorization, on `httpbin.foo`
//! behind the ingress gateway (host `httpbin.example.com`, since the demo's Bookinfo gateway
//! already takes `*`).
//!
//! The identity provider is played by the test: it signs the task's tokens (issuer and subject
//! `testing@secure.istio.io`) and serves its JWKS over HTTPS from a network namespace of its
//! own (`https://10.45.0.2/jwks.json`), with a certificate from a CA Pilot trusts through
//! `values.pilot.env.PILOT_JWKS_CA_FILE`; Pilot refreshes the keys every 5 s
//! (`PILOT_JWKS_REFRESH_INTERVAL`) so the unreachable-provider step is quick.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::certs::TestCa;
use e2e::local::{sample, LocalMesh};
use e2e::outside::OutsideHost;
use istio_pki::jwk::JwtIssuer;
use serde_json::json;

const ISSUER: &str = "testing@secure.istio.io";
const JWKS_URI: &str = "https://10.45.0.2/jwks.json";
const HOST: &str = "httpbin.example.com";

/// The test's identity provider: its CA (trusted by Pilot), its signing key, and another
/// issuer's key.
struct Provider {
    ca: TestCa,
    issuer: JwtIssuer,
    stranger: JwtIssuer,
}

fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let output = std::process::Command::new("openssl").args(["genrsa", "2048"]).output().expect("openssl");
        assert!(output.status.success(), "openssl genrsa failed");
        let issuer = JwtIssuer::from_pem(
            &String::from_utf8_lossy(&output.stdout),
            "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ",
        )
        .expect("RSA issuer");
        Provider { ca: TestCa::new(), issuer, stranger: JwtIssuer::ec("stranger").expect("EC issuer") }
    })
}

/// The install values: Pilot trusts the provider's CA and refreshes keys often.
pub(crate) fn install_values(mesh: &LocalMesh) -> Vec<String> {
    let ca = provider().ca.write_root(&mesh.scratch(), "jwks-ca.pem");
    vec![
        format!("values.pilot.env.PILOT_JWKS_CA_FILE={}", ca.display()),
        "values.pilot.env.PILOT_JWKS_REFRESH_INTERVAL=5s".to_string(),
    ]
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// A token of the provider's with these claims added to the task's (`iss`, `sub`, an hour).
fn token(extra: serde_json::Value) -> String {
    let mut claims = json!({"iss": ISSUER, "sub": ISSUER, "exp": now() + 3600});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    provider().issuer.sign(&claims).expect("sign")
}

/// The provider's JWKS server, up while the value lives.
fn jwks_server(mesh: &LocalMesh) -> OutsideHost {
    let dir = mesh.scratch().join("jwks");
    std::fs::create_dir_all(&dir).expect("jwks dir");
    std::fs::write(dir.join("jwks.json"), provider().issuer.jwks()).expect("write jwks");
    let files = provider().ca.issue_files(&mesh.scratch(), "jwks-server", &["10.45.0.2"]);
    let mut outside = OutsideHost::start();
    outside.serve_https(&dir, &files.cert, &files.key);
    outside
}

/// httpbin in `foo` (injected) and `sleep` in `legacy` (not), and httpbin behind the gateway.
pub(crate) fn set_up(mesh: &LocalMesh) {
    let (code, _, err) = mesh.istioctl(&["x", "local", "label", "namespace", "foo", "istio-injection=enabled"]);
    assert_eq!(code, 0, "{err}");
    mesh.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n");
    for (file, namespace) in [("httpbin/httpbin.yaml", "foo"), ("sleep/sleep.yaml", "legacy")] {
        let path = sample(file).display().to_string();
        let (code, out, err) = mesh.istioctl(&["x", "local", "apply", "-n", namespace, "-f", &path]);
        assert_eq!(code, 0, "{file} in {namespace}: {out}{err}");
    }
    mesh.wait_ready("httpbin", "foo", 1);
    mesh.wait_ready("sleep", "legacy", 1);
    mesh.apply_yaml(&format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
  namespace: foo
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"{HOST}\"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
  namespace: foo
spec:
  hosts:
  - \"{HOST}\"
  gateways:
  - httpbin-gateway
  http:
  - route:
    - destination:
        port:
          number: 8000
        host: httpbin.foo.svc.cluster.local
"
    ));
    until(mesh, "httpbin through the gateway", "/headers", None, 200);
}

pub(crate) fn reset(mesh: &LocalMesh) {
    mesh.delete_in("istio-system", "policies", "ingress-jwt");
    mesh.delete_in("foo", "policies", "jwt-example");
    mesh.delete_in("foo", "authorizationpolicies", "require-jwt");
    mesh.delete_in("foo", "destinationrules", "httpbin");
}

/// The status of `GET path` on httpbin through the gateway, with a bearer token or none.
fn status(mesh: &LocalMesh, path: &str, token: Option<&str>) -> u16 {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("host", HOST)];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    e2e::http_request(&mesh.gateway, "GET", path, &headers, "").0
}

/// Waits until `GET path` (with `token`) gets `expected`, three times in a row. Every check
/// waits so: after a policy change Envoy drains the connections of the old filter chain
/// gradually, so a request may still meet the old config for a while.
fn until(mesh: &LocalMesh, what: &str, path: &str, token: Option<&str>, expected: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streak = 0;
    loop {
        let seen = status(mesh, path, token);
        streak = if seen == expected { streak + 1 } else { 0 };
        if streak == 3 {
            return;
        }
        if Instant::now() > deadline {
            let (_, log, _) = mesh.istioctl(&["x", "local", "logs", "httpbin", "-n", "foo", "-c", "istio-proxy"]);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{what} ({:?}): GET {path} gets {seen}, not {expected}; httpbin's sidecar said:\n{}",
                mesh.plane,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn jwt_policy(trigger_rules: &str, peers: &str) -> String {
    format!(
        "apiVersion: \"authentication.istio.io/v1alpha1\"
kind: \"Policy\"
metadata:
  name: \"jwt-example\"
  namespace: foo
spec:
  targets:
  - name: httpbin
{peers}  origins:
  - jwt:
      issuer: \"{ISSUER}\"
      jwksUri: \"{JWKS_URI}\"
{trigger_rules}  principalBinding: USE_ORIGIN
"
    )
}

/// The sum of Pilot's counter `name` on its monitoring port.
fn pilot_counter(name: &str) -> u64 {
    let (_, _, body) = e2e::http_request("10.44.0.10:15014", "GET", "/metrics", &[], "");
    body.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()))
        .map(|value| value as u64)
        .sum()
}

/// End-user authentication: no token 401, the task's token 200, a bad, expired or foreign
/// one 401; then per-path requirements; then the provider goes away and the keys stay.
pub(crate) fn end_user_authentication(mesh: &LocalMesh) {
    let mut server = jwks_server(mesh);
    mesh.apply_yaml(&jwt_policy("", ""));
    until(mesh, "the jwt-example policy", "/headers", None, 401);
    let valid = token(json!({}));
    until(mesh, "the task's token", "/headers", Some(&valid), 200);
    until(mesh, "a malformed token", "/headers", Some("deadbeef"), 401);
    let expired = token(json!({"exp": now() - 600}));
    until(mesh, "an expired token", "/headers", Some(&expired), 401);
    let foreign = provider().stranger.sign(&json!({"iss": "someone@else.io", "sub": "x"})).expect("sign");
    until(mesh, "another issuer's token", "/headers", Some(&foreign), 401);
    let forged = provider().stranger.sign(&json!({"iss": ISSUER, "sub": ISSUER})).expect("sign");
    until(mesh, "the task's claims with another key", "/headers", Some(&forged), 401);
    let (code, report, err) = mesh.istioctl(&["x", "authz", "check", "httpbin.foo"]);
    assert_eq!(code, 0, "{err}");
    assert!(report.contains(&format!("yes (1: {ISSUER})")), "istioctl x authz check:\n{report}");

    // Per-path requirements: /user-agent excluded, then only /ip included.
    let excluded = "      trigger_rules:\n      - excluded_paths:\n        - exact: /user-agent\n";
    mesh.apply_yaml(&jwt_policy(excluded, ""));
    until(mesh, "excludedPaths /user-agent", "/user-agent", None, 200);
    until(mesh, "other paths still need a token", "/headers", None, 401);
    let included = "      trigger_rules:\n      - included_paths:\n        - prefix: /ip\n";
    mesh.apply_yaml(&jwt_policy(included, ""));
    until(mesh, "includedPaths /ip: paths not included need no token", "/headers", None, 200);
    until(mesh, "the included path needs a token", "/ip", None, 401);
    until(mesh, "/ip 200", "/ip", Some(&valid), 200);

    // The provider goes away: Pilot counts the failed refreshes and keeps the keys it has.
    let failures_before = pilot_counter("pilot_jwks_resolver_network_fetch_fail_total");
    server.stop_https();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pilot_counter("pilot_jwks_resolver_network_fetch_fail_total") <= failures_before {
        assert!(Instant::now() < deadline, "Pilot never counted a failed JWKS fetch");
        std::thread::sleep(Duration::from_millis(500));
    }
    mesh.apply_yaml(&jwt_policy("", ""));
    until(mesh, "the policy pushed again without its provider", "/headers", None, 401);
    until(mesh, "the last keys are still in place", "/headers", Some(&valid), 200);
    drop(server);
}

/// End-user authentication with mutual TLS: the policy's peers require mTLS as its origins a
/// token; the gateway (a mesh client) with a token gets 200, a plaintext client is refused.
pub(crate) fn end_user_with_mutual_tls(mesh: &LocalMesh) {
    let _server = jwks_server(mesh);
    mesh.apply_yaml(&jwt_policy("", "  peers:\n  - mtls: {}\n"));
    mesh.apply_yaml(
        "apiVersion: \"networking.istio.io/v1alpha3\"
kind: \"DestinationRule\"
metadata:
  name: \"httpbin\"
  namespace: \"foo\"
spec:
  host: \"httpbin.foo.svc.cluster.local\"
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
",
    );
    until(mesh, "origins and mutual TLS", "/headers", None, 401);
    let valid = token(json!({}));
    until(mesh, "origins and mutual TLS", "/headers", Some(&valid), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bearer = format!("Authorization: Bearer {valid}");
        let out = mesh.sleep_status("legacy", "http://httpbin.foo:8000/ip", &["-H", &bearer]);
        if out == "000" {
            break;
        }
        assert!(Instant::now() < deadline, "a plaintext client with a token got {out} ({:?})", mesh.plane);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Origin authentication on the ingress gateway (a Policy targeting `istio-ingressgateway`),
/// for `/headers` only: the gateway itself asks for the token.
pub(crate) fn ingress_gateway_jwt(mesh: &LocalMesh) {
    let _server = jwks_server(mesh);
    mesh.apply_yaml(&format!(
        "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: ingress-jwt
  namespace: istio-system
spec:
  targets:
  - name: istio-ingressgateway
  origins:
  - jwt:
      issuer: \"{ISSUER}\"
      jwksUri: \"{JWKS_URI}\"
      trigger_rules:
      - included_paths:
        - prefix: /headers
  principalBinding: USE_ORIGIN
"
    ));
    until(mesh, "a token at the gateway for /headers", "/headers", None, 401);
    until(mesh, "other paths pass the gateway without one", "/ip", None, 200);
    until(mesh, "/headers 200", "/headers", Some(&token(json!({}))), 200);
    let (code, report, err) = mesh.istioctl(&["x", "authz", "check", "istio-ingressgateway.istio-system"]);
    assert_eq!(code, 0, "{err}");
    assert!(report.contains(&format!("yes (1: {ISSUER})")), "istioctl x authz check:\n{report}");
}

/// JWT claims in an AuthorizationPolicy: a `groups` list claim, then a `scope` list claim.
pub(crate) fn jwt_claims(mesh: &LocalMesh) {
    let _server = jwks_server(mesh);
    mesh.apply_yaml(&jwt_policy("", ""));
    let claims_policy = |claim: &str, value: &str| {
        format!(
            "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  rules:
  - from:
    - source:
        requestPrincipals: [\"{ISSUER}/{ISSUER}\"]
    when:
    - key: request.auth.claims[{claim}]
      values: [\"{value}\"]
"
        )
    };
    mesh.apply_yaml(&claims_policy("groups", "group1"));
    let in_group = token(json!({"groups": ["group1", "group2"]}));
    let other_group = token(json!({"groups": ["group3"]}));
    until(mesh, "groups claim", "/headers", Some(&other_group), 403);
    until(mesh, "groups claim", "/headers", Some(&in_group), 200);
    until(mesh, "no groups claim", "/headers", Some(&token(json!({}))), 403);
    until(mesh, "no token", "/headers", None, 401);
    let someone_else = token(json!({"sub": "someone", "groups": ["group1"]}));
    until(mesh, "another request principal", "/headers", Some(&someone_else), 403);

    mesh.apply_yaml(&claims_policy("scope", "scope1"));
    let scoped = token(json!({"scope": ["scope1", "scope2"]}));
    until(mesh, "scope claim", "/headers", Some(&scoped), 200);
    until(mesh, "groups do not give scopes", "/headers", Some(&in_group), 403);
}
