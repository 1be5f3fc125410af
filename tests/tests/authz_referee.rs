//! Pilot's authorization and origin-authentication output, refereed by a stock Envoy: each case
//! (the situations of Istio 1.4.6's authz builder test data, with inputs of our own) is a
//! workload in a namespace of its own with its policies; Pilot (the real binary, from a
//! config directory) generates its inbound filters, read over ADS with `istioctl x xds`; the
//! filters are placed in one static bootstrap, a TLS listener per case (client certificates
//! optional, so the peer's SPIFFE identity is known when one is presented), and run in both
//! data planes. Every request of a case's matrix (identity, method, path, header, token, port)
//! must get the same answer from Envoy and from our proxy, and the answer 1.4's semantics give.
//!
//! The mesh's trust domain is `td1`, with the aliases `cluster.local`, `old-td` and `foobar`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::backend::Backend;
use e2e::certs::TestCa;
use e2e::envoy::free_port;
use e2e::Process;
use istio_pki::jwk::JwtIssuer;
use serde_json::{json, Value};

const ISSUER: &str = "testing@secure.istio.io";

/// A request of a case's matrix.
#[derive(Debug, Clone, Default)]
struct Ask {
    /// The client certificate's SPIFFE name (`None`: TLS without a client certificate).
    identity: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    header: Option<(&'static str, &'static str)>,
    /// Claims of a bearer token signed by the issuer (`exp` added when absent).
    token: Option<Value>,
    /// Ask on the case's second listener (another port, same filters).
    other_port: bool,
}

fn get(path: &'static str) -> Ask {
    Ask { method: "GET", path, ..Ask::default() }
}

impl Ask {
    fn from(mut self, identity: &'static str) -> Ask {
        self.identity = Some(identity);
        self
    }
    fn method(mut self, method: &'static str) -> Ask {
        self.method = method;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Ask {
        self.header = Some((name, value));
        self
    }
    fn token(mut self, claims: Value) -> Ask {
        self.token = Some(claims);
        self
    }
    fn other_port(mut self) -> Ask {
        self.other_port = true;
        self
    }
}

/// One case: its Istio config (in namespace `NS`, which the harness fills in; `PORT` is the
/// case's first listener port) and its matrix with the expected status codes.
struct Case {
    name: &'static str,
    config: String,
    matrix: Vec<(Ask, &'static str)>,
}

const SLEEP: &str = "spiffe://td1/ns/foo/sa/sleep";
const SLEEP_OLD_TD: &str = "spiffe://old-td/ns/foo/sa/sleep";
const SLEEP_CLUSTER_LOCAL: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
const OTHER_TD: &str = "spiffe://other-td/ns/foo/sa/sleep";
const BAR_NS: &str = "spiffe://td1/ns/bar/sa/client";
const BAR_ACCOUNT: &str = "spiffe://td1/ns/foo/sa/bar";
const IDENTITIES: [&str; 6] = [SLEEP, SLEEP_OLD_TD, SLEEP_CLUSTER_LOCAL, OTHER_TD, BAR_NS, BAR_ACCOUNT];

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: NS\nspec:\n{spec}---\n"
    )
}

fn rbac(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: rbac.istio.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: NS\nspec:\n{spec}---\n")
}

/// Origin authentication for the case's service with the test issuer's keys inline.
fn origins(jwks: &str) -> String {
    format!(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: jwt\n  namespace: NS\nspec:\n  targets:\n  - name: httpbin\n  origins:\n  - jwt:\n      issuer: \"{ISSUER}\"\n      jwks: '{jwks}'\n  principalBinding: USE_ORIGIN\n---\n"
    )
}

const SELECT: &str = "  selector:\n    matchLabels:\n      app: httpbin\n";

fn cases(jwks: &str) -> Vec<Case> {
    vec![
        Case {
            name: "deny-all",
            config: policy("deny-all", SELECT),
            matrix: vec![(get("/"), "403"), (get("/").from(SLEEP), "403")],
        },
        Case {
            name: "allow-all",
            config: policy("allow-all", &format!("{SELECT}  rules:\n  - {{}}\n")),
            matrix: vec![(get("/"), "200"), (get("/x").from(OTHER_TD).method("DELETE"), "200")],
        },
        Case {
            name: "single-policy",
            config: policy(
                "httpbin",
                &format!(
                    "{SELECT}  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/foo/sa/sleep\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n        paths: [\"/get\", \"/status/*\"]\n    when:\n    - key: request.headers[x-header]\n      values: [\"allowed\"]\n"
                ),
            ),
            matrix: vec![
                (get("/get").from(SLEEP).header("x-header", "allowed"), "200"),
                (get("/status/200").from(SLEEP_OLD_TD).header("x-header", "allowed"), "200"),
                (get("/get").from(SLEEP_CLUSTER_LOCAL).header("x-header", "allowed"), "200"),
                (get("/get").from(SLEEP), "403"),
                (get("/get").from(SLEEP).method("POST").header("x-header", "allowed"), "403"),
                (get("/other").from(SLEEP).header("x-header", "allowed"), "403"),
                (get("/get").from(OTHER_TD).header("x-header", "allowed"), "403"),
                (get("/get").header("x-header", "allowed"), "403"),
            ],
        },
        Case {
            name: "multiple-policies",
            config: policy("by-method", &format!("{SELECT}  rules:\n  - to:\n    - operation:\n        methods: [\"GET\"]\n"))
                + &policy(
                    "by-path",
                    "  selector:\n    matchLabels:\n      version: v1\n  rules:\n  - to:\n    - operation:\n        paths: [\"/v2\"]\n",
                )
                + &policy("not-mine", "  selector:\n    matchLabels:\n      app: other\n  rules:\n  - {}\n"),
            matrix: vec![(get("/x"), "200"), (get("/v2").method("POST"), "200"), (get("/x").method("POST"), "403")],
        },
        Case {
            name: "principal-with-wildcard",
            config: policy(
                "wildcards",
                &format!(
                    "{SELECT}  rules:\n  - from:\n    - source:\n        principals: [\"*\"]\n    to:\n    - operation:\n        paths: [\"/any-peer\"]\n  - from:\n    - source:\n        principals: [\"*/ns/foo/sa/bar\"]\n  - from:\n    - source:\n        principals: [\"*bar/ns/foo/sa/sleep\"]\n    to:\n    - operation:\n        paths: [\"/foobar\"]\n"
                ),
            ),
            matrix: vec![
                (get("/any-peer").from(OTHER_TD), "200"),
                (get("/any-peer"), "403"),
                (get("/x").from(BAR_ACCOUNT), "200"),
                (get("/x").from(SLEEP), "403"),
                (get("/foobar").from(SLEEP), "200"),
                (get("/foobar").from(OTHER_TD), "403"),
            ],
        },
        Case {
            name: "td-aliases",
            config: policy(
                "old-td",
                &format!("{SELECT}  rules:\n  - from:\n    - source:\n        principals: [\"old-td/ns/foo/sa/sleep\"]\n"),
            ) + &policy(
                "unknown-td",
                &format!("{SELECT}  rules:\n  - from:\n    - source:\n        principals: [\"other-td/ns/foo/sa/client\"]\n"),
            ),
            matrix: vec![
                (get("/").from(SLEEP), "200"),
                (get("/").from(SLEEP_OLD_TD), "200"),
                (get("/").from(SLEEP_CLUSTER_LOCAL), "200"),
                (get("/").from(OTHER_TD), "403"),
            ],
        },
        Case {
            name: "namespaces-not-paths-and-ip-blocks",
            config: policy(
                "namespaces",
                &format!(
                    "{SELECT}  rules:\n  - from:\n    - source:\n        namespaces: [\"foo\"]\n        notIpBlocks: [\"10.0.0.0/8\"]\n    to:\n    - operation:\n        notPaths: [\"/admin*\"]\n  - from:\n    - source:\n        ipBlocks: [\"127.0.0.1\"]\n    to:\n    - operation:\n        hosts: [\"open.example.com\"]\n"
                ),
            ),
            matrix: vec![
                (get("/x").from(SLEEP), "200"),
                (get("/admin/x").from(SLEEP), "403"),
                (get("/x").from(BAR_NS), "403"),
                (get("/x").header("host", "open.example.com"), "200"),
                (get("/x"), "403"),
            ],
        },
        Case {
            name: "ports-and-conditions",
            config: policy(
                "ports",
                &format!(
                    "{SELECT}  rules:\n  - to:\n    - operation:\n        ports: [\"PORT\"]\n    when:\n    - key: source.principal\n      values: [\"td1/ns/foo/*\"]\n    - key: source.namespace\n      notValues: [\"bar\"]\n"
                ),
            ),
            matrix: vec![
                (get("/").from(SLEEP), "200"),
                (get("/").from(SLEEP).other_port(), "403"),
                (get("/").from(OTHER_TD), "403"),
                (get("/"), "403"),
            ],
        },
        Case {
            name: "request-principals-and-claims",
            config: origins(jwks)
                + &policy(
                    "require-jwt",
                    &format!(
                        "{SELECT}  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"{ISSUER}/alice\"]\n    when:\n    - key: request.auth.claims[groups]\n      values: [\"group1\"]\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n    to:\n    - operation:\n        paths: [\"/any-user\"]\n    when:\n    - key: request.auth.audiences\n      values: [\"bookstore\"]\n"
                    ),
                ),
            matrix: vec![
                (get("/").token(json!({"sub": "alice", "groups": ["group1", "group2"]})), "200"),
                (get("/").token(json!({"sub": "alice", "groups": ["group2"]})), "403"),
                (get("/").token(json!({"sub": "bob", "groups": ["group1"]})), "403"),
                (get("/any-user").token(json!({"sub": "bob", "aud": "bookstore"})), "200"),
                (get("/any-user").token(json!({"sub": "bob", "aud": ["x", "bookstore"]})), "200"),
                (get("/any-user").token(json!({"sub": "bob"})), "403"),
                (get("/"), "401"),
                (get("/").token(json!({"sub": "alice", "groups": ["group1"], "exp": 1})), "401"),
            ],
        },
        Case {
            name: "v1alpha1-roles-and-bindings",
            config: rbac(
                "ServiceRole",
                "viewer",
                "  rules:\n  - services: [\"httpbin.*\"]\n    methods: [\"GET\"]\n    paths: [\"/x*\"]\n    constraints:\n    - key: destination.labels[version]\n      values: [\"v1\"]\n  - services: [\"details.*\"]\n    methods: [\"*\"]\n",
            ) + &rbac(
                "ServiceRoleBinding",
                "bind-viewer",
                "  subjects:\n  - user: \"cluster.local/ns/foo/sa/sleep\"\n  - properties:\n      source.namespace: \"bar\"\n  roleRef:\n    kind: ServiceRole\n    name: viewer\n",
            ) + &rbac(
                "ServiceRole",
                "versioned",
                "  rules:\n  - services: [\"*\"]\n    paths: [\"/v2\"]\n    constraints:\n    - key: destination.labels[version]\n      values: [\"v2\"]\n",
            ) + &rbac(
                "ServiceRoleBinding",
                "bind-versioned",
                "  subjects:\n  - user: \"*\"\n  roleRef:\n    kind: ServiceRole\n    name: versioned\n",
            ),
            matrix: vec![
                (get("/x1").from(SLEEP), "200"),
                (get("/x1").from(SLEEP_OLD_TD), "200"),
                (get("/x1").from(BAR_NS), "200"),
                (get("/x1").from(SLEEP).method("POST"), "403"),
                (get("/y").from(SLEEP), "403"),
                (get("/x1").from(OTHER_TD), "403"),
                (get("/v2"), "403"),
            ],
        },
        Case {
            name: "v1alpha1-anyone-and-permissive",
            config: rbac("ServiceRole", "reader", "  rules:\n  - services: [\"*\"]\n    methods: [\"GET\"]\n")
                + &rbac(
                    "ServiceRoleBinding",
                    "bind-reader",
                    "  subjects:\n  - user: \"*\"\n  roleRef:\n    kind: ServiceRole\n    name: reader\n",
                )
                + &rbac("ServiceRole", "writer", "  rules:\n  - services: [\"*\"]\n    methods: [\"POST\"]\n")
                + &rbac(
                    "ServiceRoleBinding",
                    "bind-writer",
                    "  subjects:\n  - user: \"*\"\n  roleRef:\n    kind: ServiceRole\n    name: writer\n  mode: PERMISSIVE\n",
                ),
            matrix: vec![(get("/"), "200"), (get("/").from(OTHER_TD), "200"), (get("/").method("POST"), "403")],
        },
        Case {
            name: "v1alpha1-groups",
            config: origins(jwks)
                + &rbac("ServiceRole", "admin", "  rules:\n  - services: [\"*\"]\n")
                + &rbac(
                    "ServiceRoleBinding",
                    "bind-admin",
                    "  subjects:\n  - group: \"admins\"\n  - properties:\n      request.auth.claims[scope]: \"write\"\n  roleRef:\n    kind: ServiceRole\n    name: admin\n",
                ),
            matrix: vec![
                (get("/").token(json!({"sub": "a", "groups": ["users", "admins"]})), "200"),
                (get("/").token(json!({"sub": "a", "scope": "write"})), "200"),
                (get("/").token(json!({"sub": "a", "groups": ["users"]})), "403"),
            ],
        },
        Case {
            name: "v1alpha1-not-overridden",
            config: rbac("ServiceRole", "v1alpha1", "  rules:\n  - services: [\"*\"]\n    paths: [\"/v1alpha1\"]\n")
                + &rbac(
                    "ServiceRoleBinding",
                    "bind-v1alpha1",
                    "  subjects:\n  - user: \"*\"\n  roleRef:\n    kind: ServiceRole\n    name: v1alpha1\n",
                )
                + &policy(
                    "not-selected",
                    "  selector:\n    matchLabels:\n      app: httpbin\n      foo: bar\n  rules:\n  - to:\n    - operation:\n        methods: [\"GET\"]\n",
                ),
            matrix: vec![(get("/v1alpha1").method("POST"), "200"), (get("/v1beta1"), "403")],
        },
        Case {
            name: "v1alpha1-overridden",
            config: rbac("ServiceRole", "v1alpha1", "  rules:\n  - services: [\"*\"]\n    paths: [\"/v1alpha1\"]\n")
                + &rbac(
                    "ServiceRoleBinding",
                    "bind-v1alpha1",
                    "  subjects:\n  - user: \"*\"\n  roleRef:\n    kind: ServiceRole\n    name: v1alpha1\n",
                )
                + &policy("selected", &format!("{SELECT}  rules:\n  - to:\n    - operation:\n        methods: [\"GET\"]\n")),
            matrix: vec![(get("/v1alpha1").method("POST"), "403"), (get("/v1beta1"), "200")],
        },
    ]
}

/// The case's namespace and workload address.
fn namespace(index: usize) -> String {
    format!("case-{index}")
}

fn workload_ip(index: usize) -> String {
    format!("10.1.0.{}", index + 10)
}

fn service_entry(index: usize) -> String {
    let ns = namespace(index);
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin
  namespace: {ns}
spec:
  hosts: [httpbin.{ns}.svc.cluster.local]
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  subjectAltNames: [\"spiffe://td1/ns/{ns}/sa/httpbin\"]
  endpoints: [{{address: {ip}, labels: {{app: httpbin, version: v1}}}}]
---
",
        ip = workload_ip(index)
    )
}

/// Pilot's HTTP filters (all but the router) for the case's inbound port 8000.
fn pilot_filters(pilot: u16, index: usize) -> Vec<Value> {
    let ns = namespace(index);
    let node = format!("sidecar~{}~httpbin-1.{ns}~{ns}.svc.cluster.local", workload_ip(index));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = std::process::Command::new(e2e::binary("istioctl"))
            .args(["x", "xds", "--address", &format!("127.0.0.1:{pilot}"), "--node", &node, "--type", "lds"])
            .args(["--meta", r#"LABELS={"app":"httpbin","version":"v1"}"#, "--meta", &format!("NAMESPACE={ns}")])
            .output()
            .expect("run istioctl x xds");
        if output.status.success() {
            let responses: Value = serde_json::from_slice(&output.stdout).expect("xds JSON");
            let listeners = responses[0]["resources"].as_array().cloned().unwrap_or_default();
            let inbound = listeners.iter().find(|listener| listener["name"] == "virtualInbound");
            let chain = inbound.and_then(|inbound| {
                inbound["filter_chains"]
                    .as_array()?
                    .iter()
                    .find(|chain| chain["filter_chain_match"]["destination_port"] == 8000)
                    .cloned()
            });
            if let Some(chain) = chain {
                let filters =
                    chain["filters"][0]["typed_config"]["http_filters"].as_array().cloned().unwrap_or_default();
                return filters.into_iter().filter(|filter| filter["name"] != "envoy.filters.http.router").collect();
            }
        }
        assert!(Instant::now() < deadline, "no inbound chain for {node}: {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn socket(port: u16) -> String {
    format!("{{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}")
}

/// A TLS listener (client certificate optional) with the case's filters before the router.
fn listener(name: &str, port: u16, filters: &[Value], certs: &Path) -> String {
    let mut http_filters: Vec<Value> = filters.to_vec();
    http_filters.push(json!({"name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    let manager = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]},
            "http_filters": http_filters,
        }
    });
    let certs = certs.display();
    format!(
        r#"  - name: {name}
    address: {address}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {certs}/server.crt}}
              private_key: {{filename: {certs}/server.key}}
            validation_context:
              trusted_ca: {{filename: {certs}/root.pem}}
      filters: [{manager}]
"#,
        address = socket(port)
    )
}

fn curl(port: u16, ask: &Ask, certs: &Path, token: Option<&str>) -> String {
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", ask.method, "--cacert"])
        .arg(certs.join("root.pem"))
        .args(["--resolve", &format!("server.example.com:{port}:127.0.0.1")]);
    if let Some(identity) = ask.identity {
        let file = identity.trim_start_matches("spiffe://").replace('/', "_");
        command
            .arg("--cert")
            .arg(certs.join(format!("{file}.crt")))
            .arg("--key")
            .arg(certs.join(format!("{file}.key")));
    }
    if let Some((name, value)) = ask.header {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    command.arg(format!("https://server.example.com:{port}{}", ask.path));
    let output = command.output().expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs Envoy (ENVOY_BIN), curl and openssl; run by ./test.sh"]
fn pilot_authorization_answers_like_envoy_and_like_istio_1_4() {
    let app = Backend::start("app");
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let ca = TestCa::new();
    ca.write_root(&certs, "root.pem");
    ca.issue_files(&certs, "server", &["server.example.com"]);
    for identity in IDENTITIES {
        ca.issue_files(&certs, &identity.trim_start_matches("spiffe://").replace('/', "_"), &[identity]);
    }
    let output = std::process::Command::new("openssl").args(["genrsa", "2048"]).output().expect("openssl");
    let issuer = JwtIssuer::from_pem(&String::from_utf8_lossy(&output.stdout), "k1").expect("issuer");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let sign = |claims: &Value| {
        let mut claims = claims.clone();
        claims["iss"] = json!(ISSUER);
        if claims.get("exp").is_none() {
            claims["exp"] = json!(now + 3600);
        }
        issuer.sign(&claims).expect("sign")
    };

    // Ports first: a case may name its own.
    let cases = cases(&issuer.jwks());
    let ports: Vec<(u16, u16)> = cases.iter().map(|_| (free_port(), free_port())).collect();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let v1alpha1: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(_, case)| case.name.starts_with("v1alpha1"))
        .map(|(i, _)| namespace(i))
        .collect();
    std::fs::write(
        config.join("rbac-config.yaml"),
        format!(
            "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata:\n  name: default\nspec:\n  mode: ON_WITH_INCLUSION\n  inclusion:\n    namespaces: {v1alpha1:?}\n"
        ),
    )
    .expect("write");
    for (index, case) in cases.iter().enumerate() {
        let text = service_entry(index)
            + &case
                .config
                .replace("namespace: NS", &format!("namespace: {}", namespace(index)))
                .replace("PORT", &ports[index].0.to_string());
        std::fs::write(config.join(format!("{}.yaml", case.name)), text).expect("write case");
    }
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        "trustDomain: td1\ntrustDomainAliases: [cluster.local, old-td, foobar]\nrootNamespace: istio-system\n",
    )
    .expect("write mesh");
    let (grpc, http, monitoring) = (free_port(), free_port(), free_port());
    let _pilot = Process::start(
        "pilot",
        &[
            "discovery",
            "--configDir",
            &config.display().to_string(),
            "--meshConfig",
            &mesh.display().to_string(),
            "--grpcAddr",
            &format!("127.0.0.1:{grpc}"),
            "--httpAddr",
            &format!("127.0.0.1:{http}"),
            "--monitoringAddr",
            &format!("127.0.0.1:{monitoring}"),
        ],
    );

    let mut listeners = String::new();
    for (index, case) in cases.iter().enumerate() {
        let filters = pilot_filters(grpc, index);
        assert!(!filters.is_empty(), "{}: Pilot generated no filter", case.name);
        listeners.push_str(&listener(&format!("case{index}"), ports[index].0, &filters, &certs));
        listeners.push_str(&listener(&format!("case{index}b"), ports[index].1, &filters, &certs));
    }
    let mut results: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for plane in e2e::envoy::PLANES {
        let admin = free_port();
        let bootstrap = format!(
            "admin: {{address: {admin_address}}}\nstatic_resources:\n  listeners:\n{listeners}  clusters:\n  - name: app\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: app\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {app_address}}}}}]}}]\n",
            admin_address = socket(admin),
            app_address = socket(app.port),
        );
        let file = dir.path().join(format!("{plane}.yaml"));
        std::fs::write(&file, bootstrap).expect("write bootstrap");
        let file = file.display().to_string();
        let proxy = e2e::envoy::start_static(plane, &file);
        let deadline = Instant::now() + Duration::from_secs(30);
        while ports.iter().any(|(a, b)| {
            std::net::TcpStream::connect(("127.0.0.1", *a)).is_err()
                || std::net::TcpStream::connect(("127.0.0.1", *b)).is_err()
        }) {
            assert!(Instant::now() < deadline, "{plane} did not take Pilot's filters:\n{}", proxy.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut answers = Vec::new();
        let mut wrong = Vec::new();
        for (index, case) in cases.iter().enumerate() {
            for (ask, expected) in &case.matrix {
                let token = ask.token.as_ref().map(&sign);
                let port = if ask.other_port { ports[index].1 } else { ports[index].0 };
                let status = curl(port, ask, &certs, token.as_deref());
                let line = format!(
                    "{}: {} {} {:?} {:?} {:?}: {status}",
                    case.name, ask.method, ask.path, ask.identity, ask.header, ask.token
                );
                if status != *expected {
                    wrong.push(format!("{line} (1.4 gives {expected})"));
                }
                answers.push(line);
            }
        }
        assert!(wrong.is_empty(), "{plane}: answers that differ from 1.4's semantics:\n{}", wrong.join("\n"));
        results.insert(plane, answers);
    }
    assert_eq!(results["built-in"], results["envoy"], "the same answers on both planes");
}
