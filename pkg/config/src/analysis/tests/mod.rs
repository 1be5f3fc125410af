//! The analyzers against the situations of 1.4.6's analyzer test table: each case runs one
//! analyzer over its own input and expects exactly the listed (code, origin) pairs.

use super::*;
use crate::yaml::parse_objects;

pub(super) fn snapshot(yaml: &str) -> Snapshot {
    let (objects, errors) = parse_objects("input.yaml", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    Snapshot::new(objects.into_iter().map(|source| source.object), true)
}

/// Runs the named analyzer and returns `(code, origin)` pairs, sorted.
pub(super) fn run(analyzer_name: &str, yaml: &str) -> Vec<(String, String)> {
    let analyzer = all().into_iter().find(|a| a.name == analyzer_name).expect("analyzer exists");
    let mut found: Vec<(String, String)> = analyzer
        .analyze(&snapshot(yaml))
        .into_iter()
        .map(|m| (m.kind.code.to_string(), m.origin.map(|o| o.friendly_name()).unwrap_or_default()))
        .collect();
    found.sort();
    found
}

pub(super) fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut expected: Vec<(String, String)> = pairs.iter().map(|(c, o)| (c.to_string(), o.to_string())).collect();
    expected.sort();
    expected
}

#[test]
fn annotations_unknown_and_misplaced() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    networking.istio.io/exportNowhere: "x"
    networking.istio.io/exportTo: "."
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata:
  name: shop
  annotations:
    sidecar.istio.io/inject: "true"
    example.com/owner: me
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: tester
  annotations:
    sidecar.istio.io/inject: "false"
    kubernetes.io/ingress.class: istio
spec: {containers: [{name: t, image: curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: loadgen
  annotations:
    sidecar.istio.io/proxyCPU: "100m"
spec: {template: {metadata: {labels: {app: loadgen}}}}
---
apiVersion: v1
kind: Namespace
metadata:
  name: ops
  annotations:
    install.operator.istio.io/version: "1.4.6"
"#;
    let found = run("annotations.K8sAnalyzer", yaml);
    assert_eq!(
        found,
        expect(&[
            ("IST0108", "Service web"),
            ("IST0107", "Service shop"),
            ("IST0107", "Pod tester"),
            ("IST0107", "Deployment loadgen"),
        ])
    );
    let messages = all().into_iter().find(|a| a.name == "annotations.K8sAnalyzer").unwrap().analyze(&snapshot(yaml));
    let texts: Vec<String> = messages.iter().map(|m| m.render(false)).collect();
    assert!(
        texts.contains(&"Warn [IST0108] (Service web) Unknown annotation: networking.istio.io/exportNowhere".into())
    );
    assert!(texts.contains(
        &"Warn [IST0107] (Service shop) Misplaced annotation: sidecar.istio.io/inject can only be applied to Pod"
            .into()
    ));
}

const JWT_POLICY: &str = r#"
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: NAME, namespace: NS}
spec:
  targets: TARGETS
  origins: [{jwt: {issuer: "issuer@example.com", jwksUri: "https://example.com/jwks"}}]
"#;

fn jwt_case(namespace: &str, name: &str, targets: &str, service_ports: &str) -> String {
    let policy = JWT_POLICY.replace("NAME", name).replace("NS", namespace).replace("TARGETS", targets);
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: {namespace}}}\nspec:\n  ports: {service_ports}\n---{policy}"
    )
}

#[test]
fn jwt_targets_with_invalid_port_names() {
    let cases = [
        jwt_case("ns-a", "with-ports", "[{name: api, ports: [{number: 8000}]}]", "[{name: web, port: 8000}]"),
        jwt_case("ns-b", "without-ports", "[{name: api}]", "[{name: web, port: 8000}, {name: tcp-db, port: 9000}]"),
        jwt_case(
            "ns-c",
            "udp-port",
            "[{name: api, ports: [{name: http-dns}]}]",
            "[{name: http-dns, port: 53, protocol: UDP, targetPort: 5353}]",
        ),
        jwt_case(
            "ns-d",
            "named-bad",
            "[{name: api, ports: [{name: grpc}]}]",
            "[{name: grpc, port: 7000, targetPort: grpc}]",
        ),
        jwt_case(
            "ns-e",
            "named-not-tcp",
            "[{name: api, ports: [{name: http-x}]}]",
            "[{name: http-x, port: 7000, protocol: SCTP}]",
        ),
    ];
    let found = run("injection.JwtAnalyzer", &cases.join("\n---\n"));
    assert_eq!(
        found,
        expect(&[
            ("IST0119", "Policy with-ports.ns-a"),
            ("IST0119", "Policy without-ports.ns-b"),
            ("IST0119", "Policy without-ports.ns-b"),
            ("IST0119", "Policy udp-port.ns-c"),
            ("IST0119", "Policy named-bad.ns-d"),
            ("IST0119", "Policy named-not-tcp.ns-e"),
        ])
    );
    let analyzer = all().into_iter().find(|a| a.name == "injection.JwtAnalyzer").unwrap();
    let text = analyzer.analyze(&snapshot(&cases[2]))[0].text.clone();
    assert_eq!(
        text,
        "Authentication policy with JWT targets Service with invalid port specification (port: 53, name: http-dns, protocol: UDP, targetPort: 5353)."
    );
}

#[test]
fn jwt_targets_with_valid_port_names() {
    let cases = [
        jwt_case("ns-a", "plain", "[{name: api}]", "[{name: http, port: 80}, {name: https-x, port: 443}]"),
        jwt_case(
            "ns-b",
            "http2",
            "[{name: api, ports: [{number: 80}]}]",
            "[{name: http2-web, port: 80, protocol: TCP}]",
        ),
        jwt_case("ns-c", "by-name", "[{name: api, ports: [{name: http-web}]}]", "[{name: http-web, port: 80}]"),
        jwt_case("ns-d", "no-service", "[{name: other}]", "[{name: tcp, port: 80}]"),
    ];
    assert_eq!(run("injection.JwtAnalyzer", &cases.join("\n---\n")), expect(&[]));
}

#[test]
fn service_role_bindings_need_their_role() {
    let yaml = r#"
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: viewer}
spec: {rules: [{services: ["*"], methods: [GET]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-viewer}
spec: {subjects: [{user: "*"}], roleRef: {kind: ServiceRole, name: viewer}}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-nobody}
spec: {subjects: [{user: "*"}], roleRef: {kind: ServiceRole, name: nobody}}
"#;
    assert_eq!(run("auth.ServiceRoleBindingAnalyzer", yaml), expect(&[("IST0101", "ServiceRoleBinding bind-nobody")]));
}

#[test]
fn service_roles_need_their_services() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: good, namespace: default}
spec:
  rules:
  - services: ["ratings", "ratings.default.svc.cluster.local", "rat*", "*views.default.svc.cluster.local", "*"]
  - services: [".default.svc.cluster.local"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: namespace-wide, namespace: elsewhere}
spec: {rules: [{services: [".elsewhere.svc.cluster.local"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: everything, namespace: elsewhere}
spec: {rules: [{services: ["*"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: bogus-short, namespace: default}
spec: {rules: [{services: ["nothere"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: bogus-fqdn, namespace: default}
spec: {rules: [{services: ["nothere.default.svc.cluster.local"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: fqdn, namespace: elsewhere}
spec: {rules: [{services: ["ratings.default.svc.cluster.local"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: short, namespace: elsewhere}
spec: {rules: [{services: ["ratings"]}]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: prefix, namespace: elsewhere}
spec: {rules: [{services: ["rat*"]}]}
"#;
    assert_eq!(
        run("auth.ServiceRoleServicesAnalyzer", yaml),
        expect(&[
            ("IST0101", "ServiceRole bogus-short.default"),
            ("IST0101", "ServiceRole bogus-fqdn.default"),
            ("IST0101", "ServiceRole fqdn.elsewhere"),
            ("IST0101", "ServiceRole short.elsewhere"),
            ("IST0101", "ServiceRole prefix.elsewhere"),
            ("IST0101", "ServiceRole namespace-wide.elsewhere"),
        ])
    );
}

#[test]
fn deprecated_fields() {
    let yaml = r#"
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: old-headers}
spec:
  hosts: [egress]
  http:
  - appendHeaders: {x-a: b}
    route: [{destination: {host: egress}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: old-websocket}
spec:
  hosts: [ws]
  http:
  - websocketUpgrade: true
    route: [{destination: {host: ws}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: current}
spec:
  hosts: [ok]
  http:
  - headers: {request: {add: {x-a: b}}}
    route: [{destination: {host: ok}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: legacy-filter, namespace: istio-system}
spec:
  workloadLabels: {app: gateway}
  filters:
  - listenerMatch: {portNumber: 443}
    filterName: envoy.lua
    filterType: HTTP
    filterConfig: {inlineCode: "-- nothing"}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: group-binding, namespace: default}
spec:
  subjects: [{group: admins}]
  roleRef: {kind: ServiceRole, name: viewer}
"#;
    assert_eq!(
        run("deprecation.DeprecationAnalyzer", yaml),
        expect(&[
            ("IST0002", "VirtualService old-headers"),
            ("IST0002", "VirtualService old-websocket"),
            ("IST0002", "EnvoyFilter legacy-filter.istio-system"),
            ("IST0002", "EnvoyFilter legacy-filter.istio-system"),
            ("IST0002", "ServiceRoleBinding group-binding.default"),
        ])
    );
}

const INGRESS_GATEWAY_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ingress-pod, namespace: istio-system, labels: {istio: ingressgateway}}
spec: {containers: [{name: istio-proxy, image: "proxyv2:1.4.6"}]}
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, protocol: TCP}, {name: https, port: 443}]
"#;

fn gateway(name: &str, selector: &str, ports: &[u16]) -> String {
    let servers: Vec<String> = ports
        .iter()
        .map(|port| format!("  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: [\"*\"]"))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {selector}\n  servers:\n{}\n",
        servers.join("\n")
    )
}

#[test]
fn gateway_without_workload() {
    let yaml = gateway("web-gateway", "{istio: nosuchgateway}", &[80]);
    assert_eq!(run("gateway.IngressGatewayPortAnalyzer", &yaml), expect(&[("IST0101", "Gateway web-gateway")]));
}

#[test]
fn gateway_on_the_absent_system_gateway_checks_its_default_ports() {
    let yaml = gateway("web-gateway", "{istio: ingressgateway}", &[80, 8004]);
    let found = run("gateway.IngressGatewayPortAnalyzer", &yaml);
    assert_eq!(found, expect(&[("IST0104", "Gateway web-gateway")]));
    let analyzer = all().into_iter().find(|a| a.name == "gateway.IngressGatewayPortAnalyzer").unwrap();
    assert_eq!(
        analyzer.analyze(&snapshot(&yaml))[0].render(false),
        "Warn [IST0104] (Gateway web-gateway) The gateway refers to a port that is not exposed on the workload \
         (pod selector istio=ingressgateway; port 8004)"
    );
}

#[test]
fn gateway_ports_on_the_workload() {
    let yaml = format!("{INGRESS_GATEWAY_POD}---\n{}", gateway("web-gateway", "{istio: ingressgateway}", &[80, 443]));
    assert_eq!(run("gateway.IngressGatewayPortAnalyzer", &yaml), expect(&[]));
    let bad = format!("{INGRESS_GATEWAY_POD}---\n{}", gateway("web-gateway", "{istio: ingressgateway}", &[8080]));
    assert_eq!(run("gateway.IngressGatewayPortAnalyzer", &bad), expect(&[("IST0104", "Gateway web-gateway")]));
}

#[test]
fn gateways_on_custom_gateway_pods() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: gw-a, labels: {mygw: a}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: gw-b, labels: {mygw: b}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc-a}
spec: {selector: {mygw: a}, ports: [{name: http2, port: 8001, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc-b}
spec: {selector: {mygw: b}, ports: [{name: http2, port: 8002, protocol: TCP}]}
---
"#;
    let yaml =
        format!("{yaml}{}---\n{}", gateway("gw-8001", "{mygw: a}", &[8001]), gateway("gw-8002", "{mygw: a}", &[8002]));
    assert_eq!(run("gateway.IngressGatewayPortAnalyzer", &yaml), expect(&[("IST0104", "Gateway gw-8002")]));
}

const INJECTION_INPUT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: disabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Pod
metadata: {name: injected, namespace: default}
spec: {containers: [{name: app, image: "app:1"}, {name: istio-proxy, image: "proxyv2:1.4.6"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: default}
spec: {containers: [{name: app, image: "app:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: default, annotations: {sidecar.istio.io/inject: "False"}}
spec: {containers: [{name: app, image: "app:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain-in-foo, namespace: foo}
spec: {containers: [{name: app, image: "app:1"}]}
"#;

#[test]
fn injection() {
    assert_eq!(
        run("injection.Analyzer", INJECTION_INPUT),
        expect(&[("IST0102", "Namespace bar"), ("IST0103", "Pod plain.default")])
    );
}

#[test]
fn injection_version_mismatch() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: injector, namespace: istio-system, labels: {app: sidecarInjectorWebhook}}
spec: {containers: [{name: sidecar-injector-webhook, image: "docker.io/istio/sidecar_injector:1.4.6"}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: old, namespace: apps}
spec: {containers: [{name: app, image: "app:1"}, {name: istio-proxy, image: "docker.io/istio/proxyv2:1.4.5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: current, namespace: apps}
spec: {containers: [{name: app, image: "app:1"}, {name: istio-proxy, image: "docker.io/istio/proxyv2:1.4.6"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: custom, namespace: apps, annotations: {sidecar.istio.io/proxyImage: "my/proxy:dev"}}
spec: {containers: [{name: app, image: "app:1"}, {name: istio-proxy, image: "my/proxy:dev"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: old-uninjected-ns, namespace: default}
spec: {containers: [{name: istio-proxy, image: "docker.io/istio/proxyv2:1.4.5"}]}
"#;
    assert_eq!(run("injection.VersionAnalyzer", yaml), expect(&[("IST0105", "Pod old.apps")]));
}

#[test]
fn sidecars_without_selectors() {
    let yaml = r#"
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: only-default, namespace: ns1}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: selected, namespace: ns1}
spec: {workloadSelector: {labels: {app: a}}, egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: clash-1, namespace: ns2}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: clash-2, namespace: ns2}
spec: {egress: [{hosts: ["./*"]}]}
"#;
    assert_eq!(
        run("sidecar.DefaultSelectorAnalyzer", yaml),
        expect(&[("IST0111", "Sidecar clash-1.ns2"), ("IST0111", "Sidecar clash-2.ns2")])
    );
}

#[test]
fn sidecar_selectors() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: default, labels: {app: frontend}}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: other, labels: {app: frontend}}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: default, labels: {app: backend}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db, tier: data}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: fine, namespace: default}
spec: {workloadSelector: {labels: {app: frontend}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: selects-nothing, namespace: default}
spec: {workloadSelector: {labels: {app: ghost}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: wrong-namespace, namespace: other}
spec: {workloadSelector: {labels: {app: backend}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: same-1, namespace: default}
spec: {workloadSelector: {labels: {app: backend}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: same-2, namespace: default}
spec: {workloadSelector: {labels: {app: backend}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: overlap-1, namespace: default}
spec: {workloadSelector: {labels: {app: db}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: overlap-2, namespace: default}
spec: {workloadSelector: {labels: {tier: data}}}
"#;
    assert_eq!(
        run("sidecar.SelectorAnalyzer", yaml),
        expect(&[
            ("IST0101", "Sidecar selects-nothing.default"),
            ("IST0101", "Sidecar wrong-namespace.other"),
            ("IST0110", "Sidecar same-1.default"),
            ("IST0110", "Sidecar same-2.default"),
            ("IST0110", "Sidecar overlap-1.default"),
            ("IST0110", "Sidecar overlap-2.default"),
        ])
    );
    let analyzer = all().into_iter().find(|a| a.name == "sidecar.SelectorAnalyzer").unwrap();
    let texts: Vec<String> = analyzer.analyze(&snapshot(yaml)).iter().map(|m| m.text.clone()).collect();
    assert!(texts.contains(
        &"The Sidecars [same-1 same-2] in namespace \"default\" select the same workload pod \"backend\", which can lead to undefined behavior.".to_string()
    ));
}

mod virtualservice;

use virtualservice::virtual_service;

#[test]
fn schema_validation_reports_each_problem() {
    let yaml = virtual_service(
        "broken",
        "default",
        "  hosts: []\n  http:\n  - route: [{destination: {host: a}, weight: 150}]",
    );
    let messages = analyze(&all(), &snapshot(&yaml), &Options { discovery: false, namespaces: vec![] }).messages;
    assert!(!messages.is_empty());
    assert!(messages.iter().all(|m| m.kind.code == "IST0106"), "{messages:?}");
    assert!(messages[0]
        .render(false)
        .starts_with("Error [IST0106] (VirtualService broken.default) Schema validation error: "));
}

#[test]
fn analyzers_needing_discovery_are_skipped_without_it() {
    let result = analyze(&all(), &snapshot(INJECTION_INPUT), &Options { discovery: false, namespaces: vec![] });
    for skipped in ["injection.Analyzer", "annotations.K8sAnalyzer", "virtualservice.DestinationHostAnalyzer"] {
        assert!(result.skipped.iter().any(|name| name == skipped), "{skipped} was not skipped");
    }
    assert!(result.executed.iter().any(|name| name == "virtualservice.GatewayAnalyzer"));
    assert!(result.messages.is_empty());
}

#[test]
fn messages_are_limited_to_the_analysed_namespaces_and_sorted() {
    let objects = parse_objects("input.yaml", INJECTION_INPUT).0.into_iter().map(|s| s.object);
    let snapshot = Snapshot::new(objects, true);
    let options = Options { discovery: true, namespaces: vec!["default".into()] };
    let rendered: Vec<String> = analyze(&all(), &snapshot, &options).messages.iter().map(|m| m.render(false)).collect();
    assert_eq!(
        rendered,
        ["Warn [IST0103] (Pod plain.default) The pod is missing its Istio proxy. Run 'kubectl delete pod plain -n default' to restart it"]
    );
    let everything = analyze(&all(), &snapshot, &Options { discovery: true, namespaces: vec![] }).messages;
    let codes: Vec<&str> = everything.iter().map(|m| m.kind.code).collect();
    assert_eq!(codes, ["IST0102", "IST0103"]);
}

#[test]
fn levels_parse_and_compare() {
    assert_eq!(Level::parse("warn"), Ok(Level::Warning));
    assert_eq!(Level::parse("ERROR"), Ok(Level::Error));
    assert!(Level::parse("fatal").unwrap_err().to_string().contains("[Info Warn Error]"));
    assert!(Level::Error.at_least(Level::Warning));
    assert!(!Level::Info.at_least(Level::Warning));
}

#[test]
fn colored_output() {
    let origin = Origin { kind: "Gateway".into(), namespace: "default".into(), name: "gw".into() };
    let message = messages::referenced_resource_not_found(&origin, "selector", "a=b");
    assert_eq!(
        message.render(true),
        "\x1b[1;31mError\x1b[0m [IST0101] (Gateway gw.default) Referenced selector not found: \"a=b\""
    );
}
