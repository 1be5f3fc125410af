//! Table tests for validation: for each rule, a valid case and invalid cases that must be
//! reported at the right field with the right reason.

use super::*;
use crate::yaml::parse_objects;

/// Violations of the single object in `yaml`, each as `field: message`.
fn problems(yaml: &str) -> Vec<String> {
    let (objects, errors) = parse_objects("test.yaml", yaml);
    assert!(errors.is_empty(), "test YAML does not parse: {errors:?}");
    assert_eq!(objects.len(), 1, "one object per case");
    object_violations(&objects[0].object).iter().map(ToString::to_string).collect()
}

fn assert_valid(yaml: &str) {
    let found = problems(yaml);
    assert!(found.is_empty(), "expected valid, got {found:#?}\n{yaml}");
}

/// Asserts that some violation contains every fragment.
fn assert_invalid(yaml: &str, fragments: &[&str]) {
    let found = problems(yaml);
    assert!(
        found.iter().any(|line| fragments.iter().all(|fragment| line.contains(fragment))),
        "expected a violation containing {fragments:?}, got {found:#?}\n{yaml}"
    );
}

fn vs(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n{}", indent(spec))
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n{}",
        indent(spec)
    )
}

fn kind(api_version: &str, kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{}",
        indent(spec)
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

const ROUTE: &str = "http:\n- route:\n  - destination:\n      host: reviews\n";

#[test]
fn virtual_service_valid_forms() {
    assert_valid(&vs(&format!("hosts: [reviews]\n{ROUTE}")));
    assert_valid(&vs(r#"hosts: [reviews]
http:
- match:
  - headers:
      end-user:
        exact: jason
    uri: {regex: "^/api/v[0-9]+"}
  route:
  - destination: {host: reviews, subset: v2}
- route:
  - destination: {host: reviews, subset: v1}
    weight: 50
  - destination: {host: reviews, subset: v3, port: {number: 9080}}
    weight: 50
  timeout: 0.5s
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure,503"}
  fault:
    delay: {percentage: {value: 100.0}, fixedDelay: 7s}
  mirror: {host: reviews, subset: v2}
  mirrorPercent: 50
  corsPolicy: {allowMethods: [GET, POST], maxAge: 24h, allowCredentials: true}
"#));
    assert_valid(&vs(
        "hosts: [\"*\"]\ngateways: [bookinfo-gateway]\nhttp:\n- route:\n  - destination: {host: productpage}\n",
    ));
    assert_valid(&vs("hosts: [tcp-echo]\ntcp:\n- match: [{port: 31400}]\n  route:\n  - destination: {host: tcp-echo, subset: v1}\n    weight: 80\n  - destination: {host: tcp-echo, subset: v2}\n    weight: 20\n"));
}

#[test]
fn virtual_service_invalid_forms() {
    assert_invalid(&vs(ROUTE), &["spec.hosts", "at least one host"]);
    assert_invalid(&vs("hosts: [reviews]\n"), &["http, tcp or tls must be provided"]);
    assert_invalid(
        &vs(&format!("hosts: [\"*\"]\n{ROUTE}")),
        &["spec.hosts[0]", "not allowed for virtual services bound to the mesh"],
    );
    assert_invalid(&vs(&format!("hosts: [\"bad_host!\"]\n{ROUTE}")), &["spec.hosts[0]", "invalid"]);
    assert_invalid(&vs(&format!("hosts: [a.com, \"*.com\"]\n{ROUTE}")), &["duplicate hosts in virtual service"]);
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r, subset: v1}\n    weight: 60\n  - destination: {host: r, subset: v2}\n    weight: 60\n"),
        &["spec.http[0].route", "total destination weight 120 != 100"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  timeout: 0.0001s\n"),
        &["spec.http[0].timeout", "greater than 1ms"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  retries: {attempts: 2, retryOn: bogus}\n"),
        &["spec.http[0].retries.retryOn", "\"bogus\" is not a valid retryOn policy"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  fault: {abort: {httpStatus: 700}}\n"),
        &["spec.http[0].fault.abort.httpStatus", "not in range 0-600"],
    );
    assert_invalid(&vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  fault: {delay: {percentage: {value: 120}, fixedDelay: 1s}}\n"), &["fault.delay.percentage", "percentage 120"]);
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  fault: {}\n"),
        &["abort and/or a delay"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- match: [{uri: {regex: \"(unclosed\"}}]\n  route:\n  - destination: {host: r}\n"),
        &["spec.http[0].match[0].uri.regex", "invalid regex"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r, subset: \"not valid\"}\n"),
        &["destination.subset", "subset name is invalid"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- redirect: {uri: /x}\n  route:\n  - destination: {host: r}\n"),
        &["cannot contain both route and redirect"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- redirect: {}\n"),
        &["spec.http[0].redirect", "must specify URI, authority, or both"],
    );
    assert_invalid(&vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  headers: {request: {set: {\"bad header\": x}}}\n"), &["headers.request.set", "not a valid header name"]);
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  corsPolicy: {allowMethods: [FETCH]}\n"),
        &["corsPolicy.allowMethods", "not a supported HTTP method"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  mirrorPercent: 101\n"),
        &["mirrorPercent", "max value of 100"],
    );
    assert_invalid(
        &vs("hosts: [r]\ngateways: [\"ns/\"]\nhttp:\n- route:\n  - destination: {host: r}\n"),
        &["spec.gateways[0]", "cannot be empty"],
    );
    assert_invalid(&vs("hosts: [r]\ntcp:\n- route: []\n"), &["spec.tcp[0].route", "TCP route is required"]);
    assert_invalid(
        &vs("hosts: [r.com]\ntls:\n- match: [{sniHosts: [other.com]}]\n  route:\n  - destination: {host: r}\n"),
        &["sniHosts", "not a compatible subset"],
    );
}

#[test]
fn json_mapping_errors_name_the_field() {
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {hots: r}\n"),
        &["spec.http[0].route[0].destination", "unrecognized field name 'hots'"],
    );
    assert_invalid(
        &vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n  timeout: 5\n"),
        &["spec.http[0].timeout"],
    );
    assert_invalid(&vs("hosts: r\n"), &["spec.hosts"]);
    assert_invalid(&dr("host: r\ntrafficPolicy: {tls: {mode: SIMPLEST}}\n"), &["spec.trafficPolicy.tls.mode"]);
}

#[test]
fn destination_rule_rules() {
    assert_valid(&dr(r#"host: reviews
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  connectionPool:
    tcp: {maxConnections: 1, connectTimeout: 30ms}
    http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
  outlierDetection: {consecutiveErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
  tls: {mode: ISTIO_MUTUAL}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s}}
"#));
    assert_invalid(&dr("host: reviews\ntrafficPolicy: {}\n"), &["spec.trafficPolicy", "at least one field"]);
    assert_invalid(
        &dr("host: reviews\ntrafficPolicy: {tls: {mode: MUTUAL}}\n"),
        &["spec.trafficPolicy.tls.clientCertificate", "client certificate required"],
    );
    assert_invalid(
        &dr("host: reviews\ntrafficPolicy: {connectionPool: {http: {maxRetries: -1}}}\n"),
        &["connectionPool.http.maxRetries", "non-negative"],
    );
    assert_invalid(
        &dr("host: reviews\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}\n"),
        &["maxEjectionPercent", "percentage 150"],
    );
    assert_invalid(
        &dr("host: reviews\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c}}}}\n"),
        &["httpCookie.ttl", "ttl required"],
    );
    assert_invalid(
        &dr("host: reviews\nsubsets:\n- name: v1\n  labels: {version: \"bad value!\"}\n"),
        &["spec.subsets[0].labels", "invalid tag value"],
    );
    assert_invalid(&dr("host: reviews\nsubsets:\n- {name: v1}\n- {name: v1}\n"), &["duplicate subset name"]);
    assert_invalid(&dr("host: reviews\nexportTo: [foo]\n"), &["spec.exportTo", "only . or *"]);
    assert_invalid(
        &dr("host: reviews\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n"),
        &["portLevelSettings[0]", "at least one field"],
    );
}

#[test]
fn gateway_rules() {
    let gateway = |spec: &str| kind("networking.istio.io/v1alpha3", "Gateway", "gw", spec);
    assert_valid(&gateway("selector: {istio: ingressgateway}\nservers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*\"]\n"));
    assert_valid(&gateway("servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"bookinfo/httpbin.example.com\"]\n  tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*\"]\n  tls: {httpsRedirect: true}\n"));
    assert_invalid(&gateway("servers: []\n"), &["gateway must have at least one server"]);
    assert_invalid(
        &gateway("servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n"),
        &["spec.servers[0].tls", "must have TLS settings"],
    );
    assert_invalid(&gateway("servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n"), &["caCertificates", "client CA bundle"]);
    assert_invalid(
        &gateway("servers:\n- port: {number: 80, name: http, protocol: BOGUS}\n  hosts: [a.com]\n"),
        &["port.protocol", "invalid protocol"],
    );
    assert_invalid(&gateway("servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.com]\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: [b.com]\n"), &["duplicate name http"]);
    assert_invalid(
        &gateway("servers:\n- port: {number: 70000, name: http, protocol: HTTP}\n  hosts: [a.com]\n"),
        &["port.number", "1..65535"],
    );
    assert_invalid(
        &gateway("servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"Bad_NS/a.com\"]\n"),
        &["hosts", "invalid namespace value"],
    );
}

#[test]
fn service_entry_rules() {
    let entry = |spec: &str| kind("networking.istio.io/v1alpha3", "ServiceEntry", "se", spec);
    assert_valid(&entry("hosts: [www.googleapis.com]\nports:\n- {number: 443, name: https, protocol: HTTPS}\nresolution: DNS\nlocation: MESH_EXTERNAL\n"));
    assert_valid(&entry("hosts: [db.internal]\naddresses: [10.0.0.0/24]\nports:\n- {number: 5432, name: tcp, protocol: TCP}\nresolution: STATIC\nendpoints:\n- address: 10.0.0.5\n  ports: {tcp: 15432}\n"));
    assert_invalid(&entry("hosts: [\"*\"]\nports: [{number: 80, name: http, protocol: HTTP}]\n"), &["invalid host *"]);
    assert_invalid(
        &entry("hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\n"),
        &["spec.endpoints", "must be provided"],
    );
    assert_invalid(&entry("hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: NONE\nendpoints: [{address: 1.1.1.1}]\n"), &["no endpoints should be provided"]);
    assert_invalid(&entry("hosts: [a.com]\naddresses: [10.0.0.0/8]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS\n"), &["CIDR addresses are allowed only for NONE/STATIC"]);
    assert_invalid(
        &entry("hosts: [a.com, b.com]\nports: [{number: 3306, name: tcp, protocol: TCP}]\nresolution: DNS\n"),
        &["multiple hosts provided with non-HTTP, non-TLS ports"],
    );
    assert_invalid(&entry("hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: http2, protocol: HTTP}]\nresolution: DNS\n"), &["service entry port 80 already defined"]);
    assert_invalid(&entry("hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nendpoints: [{address: 1.1.1.1, ports: {other: 8080}}]\n"), &["endpoint port 8080 is not defined"]);
    assert_invalid(
        &entry("hosts: [\"*.a.com\"]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS\n"),
        &["hosts must be FQDN"],
    );
}

#[test]
fn sidecar_rules() {
    let sidecar = |spec: &str| kind("networking.istio.io/v1alpha3", "Sidecar", "default", spec);
    assert_valid(&sidecar("egress:\n- hosts: [\"./*\", \"istio-system/*\"]\n"));
    assert_valid(&sidecar("workloadSelector: {labels: {app: ratings}}\ningress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: 127.0.0.1:8080\negress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  hosts: [\"*/reviews.default.svc.cluster.local\"]\n- hosts: [\"~/*\"]\n"));
    assert_invalid(&sidecar("ingress: []\n"), &["sidecar: missing egress"]);
    assert_invalid(&sidecar("egress:\n- hosts: [reviews]\n"), &["spec.egress[0].hosts", "namespace/dnsName"]);
    assert_invalid(
        &sidecar("egress:\n- hosts: [\"./*\"]\n- port: {number: 80, protocol: HTTP, name: http}\n  hosts: [\"./*\"]\n"),
        &["empty port should be the last listener"],
    );
    assert_invalid(&sidecar("ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: 10.0.0.1:80\negress:\n- hosts: [\"./*\"]\n"), &["defaultEndpoint", "127.0.0.1:<port>"]);
    assert_invalid(
        &sidecar("workloadSelector: {labels: {}}\negress:\n- hosts: [\"./*\"]\n"),
        &["workloadSelector must have one or more labels"],
    );
}

#[test]
fn envoy_filter_rules() {
    let filter = |spec: &str| kind("networking.istio.io/v1alpha3", "EnvoyFilter", "ef", spec);
    assert_valid(&filter("workloadSelector: {labels: {app: reviews}}\nconfigPatches:\n- applyTo: HTTP_FILTER\n  match:\n    context: SIDECAR_INBOUND\n    listener:\n      filterChain:\n        filter:\n          name: envoy.http_connection_manager\n          subFilter: {name: envoy.router}\n  patch:\n    operation: INSERT_BEFORE\n    value: {name: envoy.lua, config: {inlineCode: \"function envoy_on_request(h) end\"}}\n"));
    assert_invalid(&filter("configPatches:\n- patch: {operation: ADD, value: {}}\n"), &["applyTo", "missing applyTo"]);
    assert_invalid(
        &filter("configPatches:\n- applyTo: CLUSTER\n  patch: {operation: MERGE}\n"),
        &["patch.value", "missing patch value"],
    );
    assert_invalid(
        &filter(
            "configPatches:\n- applyTo: CLUSTER\n  match: {listener: {portNumber: 80}}\n  patch: {operation: REMOVE}\n",
        ),
        &["cannot have non cluster match"],
    );
    assert_invalid(&filter("configPatches:\n- applyTo: NETWORK_FILTER\n  match: {listener: {filterChain: {filter: {name: x, subFilter: {name: y}}}}}\n  patch: {operation: REMOVE}\n"), &["subfilter match can be used with applyTo HTTP_FILTER only"]);
    assert_invalid(&filter("configPatches:\n- applyTo: CLUSTER\n  match: {proxy: {proxyVersion: \"(\"}}\n  patch: {operation: REMOVE}\n"), &["proxyVersion", "invalid regex"]);
    // The value must be the xDS object applyTo names (1.4 read it as v2; v3 here, v2 upgraded).
    assert_invalid(
        &filter("configPatches:\n- applyTo: CLUSTER\n  patch: {operation: ADD, value: {name: c, no_such_field: 1}}\n"),
        &["configPatches[0].patch.value", "no_such_field"],
    );
    assert_invalid(
        &filter("configPatches:\n- applyTo: HTTP_FILTER\n  patch: {operation: ADD, value: {name: com.example.custom, config: {a: 1}}}\n"),
        &["configPatches[0].patch.value", "com.example.custom"],
    );
    assert_valid(&filter("configPatches:\n- applyTo: HTTP_FILTER\n  patch: {operation: MERGE, value: {config: {upstream_cluster: scooby}}}\n- applyTo: CLUSTER\n  patch: {operation: MERGE, value: {dns_lookup_family: V6_ONLY}}\n"));
    envoy_filter_cases_of_1_4_6(&filter);
}

/// The rest of 1.4.6's EnvoyFilter validation table, and its order: a patch stops at its first
/// listener-class problem, so a bad value behind it is not reported as well.
fn envoy_filter_cases_of_1_4_6(filter: &dyn Fn(&str) -> String) {
    let patch = |apply_to: &str, matcher: &str, body: &str| {
        filter(&format!("configPatches:\n- applyTo: {apply_to}\n  match: {matcher}\n  patch: {body}\n"))
    };
    assert_valid(&filter("filters: []\n"));
    let deprecated = |entry: &str| filter(&format!("filters:\n- {entry}\n"));
    assert_invalid(
        &deprecated("{insertPosition: {index: BEFORE}, filterType: HTTP, filterName: f, filterConfig: {}}"),
        &["insertPosition", "missing relativeTo"],
    );
    assert_invalid(&deprecated("{filterName: f, filterConfig: {}}"), &["filterType", "missing filter type"]);
    assert_invalid(&deprecated("{filterType: HTTP, filterConfig: {}}"), &["filterName", "missing filter name"]);
    assert_invalid(&deprecated("{filterType: HTTP, filterName: f}"), &["filterConfig", "missing filter config"]);
    assert_valid(&deprecated(
        "{insertPosition: {index: FIRST}, filterType: NETWORK, filterName: envoy.foo, filterConfig: {}}",
    ));
    assert_invalid(&filter("configPatches:\n- applyTo: CLUSTER\n"), &["patch", "missing patch"]);
    assert_invalid(&filter("configPatches:\n- applyTo: CLUSTER\n  patch: {value: {}}\n"), &["missing patch operation"]);
    assert_invalid(
        &patch("CLUSTER", "{proxy: {proxyVersion: \"a++\"}}", "{operation: REMOVE}"),
        &["invalid regex for proxy version", "invalid nested repetition operator: `++`"],
    );
    assert_valid(&patch("CLUSTER", "{proxy: {proxyVersion: \"^1\\\\.[2-9](.*?)$\"}}", "{operation: REMOVE}"));
    assert_invalid(
        &patch("LISTENER", "{cluster: {service: foo}}", "{operation: ADD, value: {name: l}}"),
        &["configPatches[0].match", "cannot have non listener match"],
    );
    assert_invalid(
        &patch("NETWORK_FILTER", "{listener: {filterChain: {filter: {}}}}", "{operation: REMOVE}"),
        &["filterChain.filter", "filter match has no name to match on"],
    );
    assert_invalid(
        &patch(
            "HTTP_FILTER",
            "{listener: {filterChain: {filter: {name: envoy.tcp_proxy, subFilter: {name: f}}}}}",
            "{operation: REMOVE}",
        ),
        &["subFilter", "requires filter match with envoy.http_connection_manager"],
    );
    assert_invalid(
        &patch(
            "HTTP_FILTER",
            "{listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {}}}}}",
            "{operation: REMOVE}",
        ),
        &["subFilter", "subfilter match has no name to match on"],
    );
    assert_invalid(
        &patch("VIRTUAL_HOST", "{listener: {portNumber: 80}}", "{operation: REMOVE}"),
        &["cannot have non route configuration match"],
    );
    assert_valid(&patch("CLUSTER", "{cluster: {}}", "{operation: ADD, value: {lb_policy: RING_HASH}}"));
    assert_invalid(
        &filter("workloadSelector: {}\nconfigPatches:\n- applyTo: CLUSTER\n  patch: {operation: REMOVE}\n"),
        &["spec.workloadSelector", "workloadSelector cannot have empty labels"],
    );
    // One problem per patch: the listener-class mismatch, not the bad value behind it.
    let found = problems(&patch("LISTENER", "{cluster: {}}", "{operation: ADD, value: {no_such_field: 1}}"));
    assert_eq!(found.len(), 1, "{found:#?}");
    // A route- or cluster-class mismatch does not stop the value's check, as in 1.4.
    let found = problems(&patch("CLUSTER", "{listener: {}}", "{operation: ADD, value: {no_such_field: 1}}"));
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn authentication_rules() {
    let mesh_policy = |name: &str, spec: &str| {
        format!(
            "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata:\n  name: {name}\nspec:\n{}",
            indent(spec)
        )
    };
    let policy = |name: &str, spec: &str| kind("authentication.istio.io/v1alpha1", "Policy", name, spec);
    assert_valid(&mesh_policy("default", "peers:\n- mtls: {mode: PERMISSIVE}\n"));
    assert_valid(&policy("jwt-example", "targets:\n- name: httpbin\n  ports: [{number: 8000}]\norigins:\n- jwt:\n    issuer: testing@secure.istio.io\n    jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.4/security/tools/jwt/samples/jwks.json\n    triggerRules:\n    - excludedPaths: [{exact: /health_check}]\nprincipalBinding: USE_ORIGIN\n"));
    assert_invalid(
        &mesh_policy("mesh", "peers:\n- mtls: {}\n"),
        &["metadata.name", "cluster-scoped authentication policy name must be \"default\""],
    );
    assert_invalid(&policy("custom", "peers:\n- mtls: {}\n"), &["no target rules  must be named \"default\""]);
    assert_invalid(&policy("default", "targets: [{name: httpbin}]\n"), &["must not have any target rules"]);
    assert_invalid(&policy("p", "targets: [{name: \"Not_A_Label\"}]\n"), &["targets[0].name", "must be a valid label"]);
    assert_invalid(
        &policy("p", "targets: [{name: a}]\norigins:\n- jwt: {jwksUri: \"ftp://x/keys\"}\n"),
        &["origins[0].jwt.issuer", "issuer must be set"],
    );
    assert_invalid(
        &policy("p", "targets: [{name: a}]\norigins:\n- jwt: {issuer: i, jwksUri: \"ftp://x/keys\"}\n"),
        &["jwksUri", "URI scheme \"ftp\" is not supported"],
    );
    assert_invalid(
        &policy("p", "targets: [{name: a}]\norigins:\n- jwt: {issuer: i}\n- jwt: {issuer: i}\n"),
        &["already defined"],
    );
    assert_invalid(&policy("p", "targets: [{name: a, ports: [{}]}]\n"), &["ports[0]", "number or name"]);
}

#[test]
fn rbac_and_authorization_rules() {
    let rbac = |kind_name: &str, name: &str, spec: &str| kind("rbac.istio.io/v1alpha1", kind_name, name, spec);
    assert_valid(&rbac("ServiceRole", "details-reviews-viewer", "rules:\n- services: [\"details.default.svc.cluster.local\"]\n  methods: [GET]\n  constraints:\n  - key: destination.labels[version]\n    values: [v2]\n"));
    assert_valid(&rbac("ServiceRoleBinding", "bind", "subjects:\n- user: \"cluster.local/ns/default/sa/bookinfo-productpage\"\nroleRef: {kind: ServiceRole, name: details-reviews-viewer}\n"));
    assert_invalid(&rbac("ServiceRole", "r", "rules: []\n"), &["at least 1 rule must be specified"]);
    assert_invalid(
        &rbac("ServiceRole", "r", "rules:\n- services: [a]\n  methods: [GET]\n  notMethods: [POST]\n"),
        &["cannot define methods and not_methods for the same rule 0"],
    );
    assert_invalid(
        &rbac("ServiceRole", "r", "rules:\n- services: [a]\n  constraints: [{key: k, values: [\"\"]}]\n"),
        &["empty string is not allowed"],
    );
    assert_invalid(
        &rbac("ServiceRoleBinding", "b", "subjects: [{}]\nroleRef: {kind: ServiceRole, name: r}\n"),
        &["empty subjects are not allowed"],
    );
    assert_invalid(
        &rbac("ServiceRoleBinding", "b", "subjects: [{user: a}]\nroleRef: {kind: ClusterRole, name: r}\n"),
        &["spec.roleRef.kind", "only supported value is \"ServiceRole\""],
    );
    assert_invalid(&rbac("ServiceRoleBinding", "b", "subjects: [{user: a}]\n"), &["`roleRef` must be specified"]);
    let cluster = |name: &str, spec: &str| {
        format!(
            "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata:\n  name: {name}\nspec:\n{}",
            indent(spec)
        )
    };
    assert_valid(&cluster("default", "mode: ON_WITH_INCLUSION\ninclusion: {namespaces: [default]}\n"));
    assert_invalid(&cluster("other", "mode: \"ON\"\n"), &["invalid name(other)"]);
    assert_invalid(&cluster("default", "mode: ON_WITH_EXCLUSION\n"), &["exclusion cannot be null"]);
    let authz = |spec: &str| kind("security.istio.io/v1beta1", "AuthorizationPolicy", "p", spec);
    assert_valid(&authz("{}\n"));
    assert_valid(&authz("selector: {matchLabels: {app: reviews}}\nrules:\n- from:\n  - source: {principals: [\"cluster.local/ns/default/sa/bookinfo-productpage\"]}\n  to:\n  - operation: {methods: [GET], ports: [\"9080\"]}\n  when:\n  - key: request.headers[version]\n    values: [v1]\n"));
    assert_invalid(&authz("rules:\n- from: [{source: {}}]\n"), &["from[0].source", "`from.source` must not be empty"]);
    // Unknown fields (a typo would otherwise widen or narrow a policy silently).
    assert_invalid(
        &authz("rules:\n- from: [{source: {principal: [a]}}]\n"),
        &["spec.rules[0].from[0].source", "unrecognized field name 'principal'"],
    );
    assert_invalid(
        &rbac("ServiceRoleBinding", "b", "subjects: [{usr: a}]\nroleRef: {kind: ServiceRole, name: r}\n"),
        &["spec.subjects[0]", "unrecognized field name 'usr'"],
    );
    assert_invalid(&authz("rules:\n- to: [{operation: {ports: [\"99999\"]}}]\n"), &["invalid port \"99999\""]);
    assert_invalid(
        &authz("rules:\n- when: [{key: source.ip, values: [not-an-ip]}]\n"),
        &["invalid value for key source.ip"],
    );
    assert_invalid(
        &authz("rules:\n- when: [{key: request.magic, values: [x]}]\n"),
        &["unknown attribute (request.magic)"],
    );
    assert_invalid(&authz("action: DENY\n"), &["unrecognized field name 'action'"]);
}

#[test]
fn mixer_rules() {
    let config = |kind_name: &str, spec: &str| kind("config.istio.io/v1alpha2", kind_name, "x", spec);
    assert_valid(&config("rule", "match: destination.labels[\"app\"] == \"ratings\" && source.labels[\"app\"]==\"reviews\" && source.labels[\"version\"] == \"v3\"\nactions:\n- handler: denyreviewsv3handler\n  instances: [denyreviewsv3request]\n"));
    assert_valid(&config("handler", "compiledAdapter: denier\nparams:\n  status: {code: 7, message: Not allowed}\n"));
    assert_valid(&config("instance", "compiledTemplate: checknothing\n"));
    assert_valid(&config("instance", "compiledTemplate: metric\nparams:\n  value: \"2\"\n  dimensions:\n    source: source.workload.name | \"unknown\"\n  monitored_resource_type: '\"UNSPECIFIED\"'\n"));
    assert_valid(&config("handler", "compiledAdapter: memquota\nparams:\n  quotas:\n  - name: requestcountquota.instance.istio-system\n    maxAmount: 500\n    validDuration: 1s\n"));
    assert_invalid(
        &config("rule", "match: destination.labels[\"app\" == 1\nactions:\n- {handler: h, instances: [i]}\n"),
        &["spec.match", "unable to parse expression"],
    );
    assert_invalid(
        &config("rule", "actions:\n- {handler: \"\", instances: [i]}\n"),
        &["spec.actions[0].handler", "handler must be specified"],
    );
    assert_invalid(
        &config("rule", "actions:\n- {handler: h}\n"),
        &["spec.actions[0].instances", "at least one instance"],
    );
    assert_invalid(&config("instance", "params: {}\n"), &["either compiledTemplate or template"]);
    assert_invalid(
        &config("instance", "compiledTemplate: metric\nparams:\n  value: \"1 +\"\n"),
        &["spec.params.value", "unable to parse expression"],
    );
    assert_invalid(
        &config("instance", "compiledTemplate: metric\nparams:\n  valeu: \"1\"\n"),
        &["spec.params", "unrecognized field name 'valeu'"],
    );
    assert_invalid(&config("instance", "compiledTemplate: nosuch\n"), &["unknown template \"nosuch\""]);
    assert_invalid(
        &config("handler", "compiledAdapter: memquota\nparams:\n  quotas: [{name: q, maxAmount: 0}]\n"),
        &["quotas[0].maxAmount", "must be > 0"],
    );
    assert_invalid(&config("handler", "compiledAdapter: prometheus\nparams:\n  metrics: [{name: \"bad name\", instance_name: i, kind: COUNTER}]\n"), &["metrics[0].name", "invalid metric name"]);
    assert_invalid(
        &config(
            "handler",
            "compiledAdapter: listchecker\nparams:\n  entryType: IP_ADDRESSES\n  overrides: [\"10.0.0.0/99\"]\n",
        ),
        &["overrides[0]", "could not parse override"],
    );
    assert_invalid(
        &config("handler", "compiledAdapter: redisquota\nparams: {connectionPoolSize: 0}\n"),
        &["redis server url should not be empty"],
    );
    assert_invalid(&config("handler", "adapter: keyval\n"), &["connection.address"]);
    assert_invalid(&config("denier", "status: {code: 42}\n"), &["spec.status.code", "not a gRPC status code"]);
    assert_invalid(&config("metric", "value: \"(\"\n"), &["spec.value", "unable to parse expression"]);
    assert_invalid(&config("attributemanifest", "attributes:\n  source.name: {}\n"), &["valueType must be set"]);
    assert_valid(&config("QuotaSpec", "rules:\n- quotas:\n  - {charge: 1, quota: requestcountquota}\n"));
    assert_invalid(
        &config("QuotaSpec", "rules:\n- quotas:\n  - {charge: 0, quota: q}\n"),
        &["a quota must have a positive charge"],
    );
    assert_valid(&config("QuotaSpecBinding", "quotaSpecs: [{name: request-count, namespace: istio-system}]\nservices: [{name: productpage, namespace: default}]\n"));
    assert_invalid(
        &config("QuotaSpecBinding", "quotaSpecs: [{name: r}]\nservices: [{name: a, service: b}]\n"),
        &["either name or service, not both"],
    );
    assert_invalid(
        &config("HTTPAPISpec", "patterns: [{uriTemplate: /x}]\n"),
        &["httpMethod", "http_method cannot be empty"],
    );
    assert_invalid(&config("HTTPAPISpecBinding", "services: [{name: a}]\n"), &["at least one spec must be specified"]);
}

#[test]
fn metadata_and_kinds() {
    assert_invalid(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: Bad_Name}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n",
        &["metadata.name", "invalid name"],
    );
    assert_invalid(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: a}\nspec: {}\n",
        &["apiVersion", "use networking.istio.io/v1alpha3"],
    );
    assert_invalid(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualServce\nmetadata: {name: a}\nspec: {}\n",
        &["kind", "unknown kind VirtualServce"],
    );
    assert_invalid("apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default, namespace: x}\nspec: {}\n", &["cluster-scoped"]);
    assert_valid(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: Whatever_Not_Checked}\nspec: {anything: goes}\n",
    );
}

#[test]
fn mesh_config_rules() {
    assert!(mesh_config_violations(&serde_json::json!({"connectTimeout": "10s", "defaultConfig": {"discoveryAddress": "istio-pilot.istio-system:15010"}})).is_empty());
    let found = mesh_config_violations(&serde_json::json!({"connectTimeout": "60s"}));
    assert!(found.iter().any(|v| v.field == "connectTimeout" && v.message.contains("<=30s")), "{found:?}");
    let found = mesh_config_violations(&serde_json::json!({"defaultConfig": {"discoveryAddress": "pilot"}}));
    assert!(found.iter().any(|v| v.field == "defaultConfig.discoveryAddress"), "{found:?}");
    let found = mesh_config_violations(&serde_json::json!({"noSuchField": 1}));
    assert!(found.iter().any(|v| v.message.contains("unrecognized field name")), "{found:?}");
}

/// Regexes are refused where RE2 (Istio's, Envoy's) refuses them: a repetition of a
/// repetition, which Rust's regex would take.
#[test]
fn regexes_are_read_as_re2_reads_them() {
    use super::common::validate_regex;
    for (pattern, operator) in [("a++", "++"), ("x(a**)", "**"), ("b|c{2}*", "{2}*"), ("a?+", "?+")] {
        let error = validate_regex(pattern).expect_err(pattern).to_string();
        assert!(error.contains(&format!("invalid nested repetition operator: `{operator}`")), "{pattern}: {error}");
    }
    for pattern in ["(a+)+", "a+?", "a*?b??", "^1\\.[2-9](.*?)$", "[+*]+"] {
        assert!(validate_regex(pattern).is_ok(), "{pattern}");
    }
}
