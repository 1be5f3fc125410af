//! Envoy's `jwt_authn` filter followed by RBAC on its payload, with a stock Envoy as referee:
//! the same static bootstrap runs in the built-in data plane (`proxy run`) and in Envoy, and a
//! matrix of requests must get the same status, body and `www-authenticate` from both, and
//! the answers the filter's semantics give:
//!
//! - provider `origins-0` (RS256, issuer `testing@secure.istio.io`, payload in metadata under
//!   the issuer) required everywhere but the exact path `/health`;
//! - provider `origins-1` (ES256, audience `bookinfo.example`, token in `x-jwt-assertion`)
//!   accepted as an alternative on `/any`; on `/optional` a token may be missing but not bad;
//! - RBAC on `/admin` allows only tokens whose `groups` list holds `group1`, and on `/scope`
//!   only a `scope` claim `read` (string or list);
//! - the `jwt_authn.allowed|denied` stats.

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::backend::Backend;
use e2e::envoy::free_port;
use istio_pki::jwk::JwtIssuer;
use serde_json::json;

const ISSUER: &str = "testing@secure.istio.io";
const OTHER_ISSUER: &str = "other@secure.istio.io";

fn socket(port: u16) -> String {
    format!("{{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}")
}

fn bootstrap(admin: u16, port: u16, app: u16, rsa: &JwtIssuer, ec: &JwtIssuer) -> String {
    let groups_rule = |claim: &str, value: &str| {
        format!(
            "{{or_ids: {{ids: [\
             {{metadata: {{filter: envoy.filters.http.jwt_authn, path: [{{key: \"{ISSUER}\"}}, {{key: {claim}}}], value: {{string_match: {{exact: {value}}}}}}}}}, \
             {{metadata: {{filter: envoy.filters.http.jwt_authn, path: [{{key: \"{ISSUER}\"}}, {{key: {claim}}}], value: {{list_match: {{one_of: {{string_match: {{exact: {value}}}}}}}}}}}}}]}}}}"
        )
    };
    format!(
        r#"admin: {{address: {admin}}}
static_resources:
  listeners:
  - name: plain
    address: {address}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}]
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                origins-0:
                  issuer: "{ISSUER}"
                  forward: true
                  payload_in_metadata: "{ISSUER}"
                  local_jwks: {{inline_string: '{rsa_jwks}'}}
                origins-1:
                  issuer: "{OTHER_ISSUER}"
                  audiences: [bookinfo.example]
                  from_headers: [{{name: x-jwt-assertion}}]
                  payload_in_metadata: "{OTHER_ISSUER}"
                  local_jwks: {{inline_string: '{ec_jwks}'}}
              rules:
              - match: {{path: /health}}
              - match: {{prefix: /optional}}
                requires: {{allow_missing: {{}}}}
              - match: {{prefix: /any-or-none}}
                requires: {{requires_any: {{requirements: [{{provider_name: origins-0}}, {{allow_missing: {{}}}}]}}}}
              - match: {{prefix: /any}}
                requires: {{requires_any: {{requirements: [{{provider_name: origins-0}}, {{provider_name: origins-1}}]}}}}
              - match: {{prefix: /}}
                requires: {{provider_name: origins-0}}
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
                  not-admin:
                    permissions: [{{not_rule: {{or_rules: {{rules: [{{url_path: {{path: {{prefix: /admin}}}}}}, {{url_path: {{path: {{prefix: /scope}}}}}}]}}}}}}]
                    principals: [{{any: true}}]
                  admins:
                    permissions: [{{url_path: {{path: {{prefix: /admin}}}}}}]
                    principals: [{groups}]
                  readers:
                    permissions: [{{url_path: {{path: {{prefix: /scope}}}}}}]
                    principals: [{scope}]
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {app_address}}}}}]}}]
"#,
        admin = socket(admin),
        address = socket(port),
        rsa_jwks = rsa.jwks(),
        ec_jwks = ec.jwks(),
        groups = groups_rule("groups", "group1"),
        scope = groups_rule("scope", "read"),
        app_address = socket(app),
    )
}

/// A request (path and headers) and the start of the answer it must get.
type Case = (&'static str, Vec<(&'static str, String)>, &'static str);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An RSA key as `openssl genrsa` writes it (the crypto provider makes no RSA keys).
fn rsa_issuer() -> JwtIssuer {
    let output = std::process::Command::new("openssl").args(["genrsa", "2048"]).output().expect("run openssl");
    assert!(output.status.success(), "openssl genrsa: {}", String::from_utf8_lossy(&output.stderr));
    JwtIssuer::from_pem(&String::from_utf8_lossy(&output.stdout), "rsa-1").expect("rsa issuer")
}

#[test]
#[ignore = "needs Envoy (ENVOY_BIN) and openssl; run by ./test.sh"]
fn jwt_authn_and_rbac_on_its_payload_answer_like_envoy() {
    let app = Backend::start("app");
    let rsa = rsa_issuer();
    let ec = JwtIssuer::ec("ec-1").expect("ec issuer");
    let impostor = JwtIssuer::ec("rsa-1").expect("ec issuer");
    let sign = |issuer: &JwtIssuer, claims: serde_json::Value| issuer.sign(&claims).expect("sign");
    let valid = sign(&rsa, json!({"iss": ISSUER, "sub": ISSUER, "exp": now() + 3600}));
    let expired = sign(&rsa, json!({"iss": ISSUER, "sub": ISSUER, "exp": now() - 3600}));
    let group1 = sign(&rsa, json!({"iss": ISSUER, "sub": "a", "groups": ["group1", "group2"]}));
    let group3 = sign(&rsa, json!({"iss": ISSUER, "sub": "b", "groups": ["group3"]}));
    let scope_list = sign(&rsa, json!({"iss": ISSUER, "sub": "c", "scope": ["read", "write"]}));
    let scope_text = sign(&rsa, json!({"iss": ISSUER, "sub": "c", "scope": "read"}));
    let foreign = sign(&rsa, json!({"iss": "someone@else", "sub": "x"}));
    let forged = sign(&impostor, json!({"iss": ISSUER, "sub": "x"}));
    let audience_ok = sign(&ec, json!({"iss": OTHER_ISSUER, "sub": "y", "aud": "https://bookinfo.example/"}));
    let audience_bad = sign(&ec, json!({"iss": OTHER_ISSUER, "sub": "y", "aud": "elsewhere"}));
    let none_alg = {
        use base64::Engine as _;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode(&format!(r#"{{"iss":"{ISSUER}"}}"#)))
    };
    let bearer = |token: &str| format!("Bearer {token}");

    let cases: Vec<Case> = vec![
        ("/headers", vec![], "401 Jwt is missing"),
        ("/headers", vec![("authorization", bearer(&valid))], "200"),
        ("/headers?access_token=X", vec![], "401"),
        ("/headers", vec![("authorization", bearer(&expired))], "401 Jwt is expired"),
        ("/headers", vec![("authorization", bearer(&foreign))], "401 Jwt issuer is not configured"),
        ("/headers", vec![("authorization", bearer(&forged))], "401"),
        ("/headers", vec![("authorization", bearer(&none_alg))], "401"),
        (
            "/headers",
            vec![("authorization", bearer(&format!("{none_alg}c2ln")))],
            "401 Jwt header [alg] is not supported",
        ),
        ("/headers", vec![("authorization", "Bearer not-a-token".into())], "401"),
        ("/headers", vec![("authorization", bearer(&"A".repeat(6000)))], "401"),
        ("/health", vec![], "200"),
        ("/health?x=1", vec![], "200"),
        ("/healthz", vec![], "401 Jwt is missing"),
        ("/optional", vec![], "200"),
        ("/optional", vec![("authorization", bearer(&valid))], "200"),
        ("/optional", vec![("authorization", bearer(&expired))], "401 Jwt is expired"),
        ("/any", vec![("x-jwt-assertion", audience_ok.clone())], "200"),
        ("/any", vec![("x-jwt-assertion", audience_bad.clone())], "403 Audiences in Jwt are not allowed"),
        ("/any", vec![], "401 Jwt is missing"),
        ("/any", vec![("authorization", bearer(&forged))], "401"),
        ("/any", vec![("authorization", bearer(&valid)), ("x-jwt-assertion", audience_bad.clone())], "200"),
        ("/any-or-none", vec![], "200"),
        ("/any-or-none", vec![("authorization", bearer(&foreign))], "401 Jwt issuer is not configured"),
        ("/any-or-none", vec![("authorization", bearer(&expired))], "401 Jwt is expired"),
        ("/headers", vec![("authorization", bearer(&valid))], "200"),
        ("/headers?access_token=not.a.token", vec![("authorization", bearer(&valid))], "401"),
        ("/admin", vec![("authorization", bearer(&group1))], "200"),
        ("/admin", vec![("authorization", bearer(&group3))], "403 RBAC: access denied"),
        ("/admin", vec![("authorization", bearer(&valid))], "403 RBAC: access denied"),
        ("/scope", vec![("authorization", bearer(&scope_list))], "200"),
        ("/scope", vec![("authorization", bearer(&scope_text))], "200"),
        ("/scope", vec![("authorization", bearer(&group1))], "403 RBAC: access denied"),
    ];
    let mut per_plane = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for plane in e2e::envoy::PLANES {
        let (admin, port) = (free_port(), free_port());
        let file = dir.path().join(format!("{plane}.yaml"));
        std::fs::write(&file, bootstrap(admin, port, app.port, &rsa, &ec)).expect("write bootstrap");
        let file = file.display().to_string();
        let proxy = e2e::envoy::start_static(plane, &file);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() || TcpStream::connect(("127.0.0.1", admin)).is_err() {
            assert!(Instant::now() < deadline, "{plane} does not listen:\n{}", proxy.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut seen = Vec::new();
        for (path, headers, expected) in &cases {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
            let (status, response_headers, body) =
                e2e::http_request(&format!("127.0.0.1:{port}"), "GET", path, &headers, "");
            let answer = if status == 200 { "200".to_string() } else { format!("{status} {body}") };
            assert!(answer.starts_with(expected), "{plane}: GET {path} {headers:?}: got {answer}, want {expected}");
            let challenge = response_headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
                .map(|(_, value)| value.replace(&port.to_string(), "PORT"));
            seen.push(format!("GET {path}: {answer} {challenge:?}"));
        }
        let stats = (
            e2e::envoy::admin_stat(admin, "http.plain.jwt_authn.allowed"),
            e2e::envoy::admin_stat(admin, "http.plain.jwt_authn.denied"),
        );
        per_plane.push((seen, stats));
    }
    assert_eq!(per_plane[0].0, per_plane[1].0, "the same answers, bodies and challenges on both planes");
    assert_eq!(per_plane[0].1, per_plane[1].1, "the same jwt_authn stats on both planes (allowed, denied)");
    assert!(per_plane[0].1 .0 > 0 && per_plane[0].1 .1 > 0, "requests were counted: {:?}", per_plane[0].1);
}
