//! The text `describe` prints, section by section, as 1.4's `istioctl x describe` wrote it, and
//! the config-dump lookups behind it (the `istio.config` breadcrumbs on clusters and routes,
//! the RBAC filter on an inbound port).

use istio_config::object::Object;
use serde_json::Value;

use crate::authn::AuthenticationDebug;

pub(crate) const PROXY_CONTAINER: &str = "istio-proxy";
const K8S_SUFFIX: &str = ".svc.cluster.local";

/// What names are printed relative to.
pub(crate) struct Context {
    /// The command's namespace: objects in it are printed without it.
    pub namespace: String,
    pub ignore_unmeshed: bool,
}

impl Context {
    /// `name`, or `name.namespace` outside the command's namespace (1.4's `kname`).
    pub(crate) fn kname(&self, object: &Object) -> String {
        if object.namespace() == self.namespace {
            object.name().to_string()
        } else {
            format!("{}.{}", object.name(), object.namespace())
        }
    }
}

fn status(pod: &Object) -> &Value {
    pod.body.get("status").unwrap_or(&Value::Null)
}

pub(crate) fn container_ready(pod: &Object, container: &str) -> Option<bool> {
    status(pod)["containerStatuses"]
        .as_array()?
        .iter()
        .find(|status| status["name"] == container)
        .map(|status| status["ready"].as_bool().unwrap_or(false))
}

pub(crate) fn is_meshed(pod: &Object) -> bool {
    pod.spec()["containers"].as_array().into_iter().flatten().any(|container| container["name"] == PROXY_CONTAINER)
}

/// The pod's section: ports, readiness, mesh membership and the labels telemetry wants.
pub(crate) fn pod(out: &mut String, context: &Context, pod: &Object) {
    let mut ports = Vec::new();
    for container in pod.spec()["containers"].as_array().into_iter().flatten() {
        for port in container["ports"].as_array().into_iter().flatten() {
            let protocol =
                port["protocol"].as_str().filter(|p| *p != "TCP").map(|p| format!("/{p}")).unwrap_or_default();
            ports.push(format!(
                "{}{protocol} ({})",
                port["containerPort"].as_i64().unwrap_or(0),
                container["name"].as_str().unwrap_or_default()
            ));
        }
    }
    let name = context.kname(pod);
    out.push_str(&format!("Pod: {name}\n"));
    if ports.is_empty() {
        out.push_str("   Pod does not expose ports\n");
    } else {
        out.push_str(&format!("   Pod Ports: {}\n", ports.join(", ")));
    }
    let phase = status(pod)["phase"].as_str().unwrap_or_default();
    if phase != "Running" {
        out.push_str(&format!("   Pod is not Running ({phase})\n"));
        return;
    }
    for container in status(pod)["containerStatuses"].as_array().into_iter().flatten() {
        if !container["ready"].as_bool().unwrap_or(false) {
            out.push_str(&format!(
                "WARNING: Pod {name} Container {} NOT READY\n",
                container["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if context.ignore_unmeshed {
        return;
    }
    if !is_meshed(pod) {
        out.push_str(&format!("WARNING: {name} is not part of mesh; no Istio sidecar\n"));
        return;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.get("app").is_none_or(String::is_empty) {
        out.push_str("Suggestion: add 'app' label to pod for Istio telemetry.\n");
    }
    if labels.get("version").is_none_or(String::is_empty) {
        out.push_str("Suggestion: add 'version' label to pod for Istio telemetry.\n");
    }
}

/// The pod port a Service port reaches (1.4's `FindPort`); none when a named target port is
/// not among the pod's.
pub(crate) fn find_port(pod: &Object, port: &Value) -> Option<i64> {
    match &port["targetPort"] {
        Value::Number(number) => Some(number.as_i64().unwrap_or(0)),
        Value::String(name) => pod.spec()["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"].as_str() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_i64()),
        _ => Some(port["port"].as_i64().unwrap_or(0)),
    }
}

/// The protocol a Service port's name selects, as the mesh reads it (`UNSUPPORTED` when none).
pub(crate) fn port_protocol(name: &str) -> &'static str {
    match istio_config::synthetic::protocol_from_port_name(name, "TCP") {
        "" => "UNSUPPORTED",
        protocol => protocol,
    }
}

/// A Service's section: its TCP ports, their protocols and the pod ports they reach. Every
/// proxy here detects protocols, as 1.4's did, so unnamed ports read `auto-detect`.
pub(crate) fn service(out: &mut String, context: &Context, service: &Object, pod: &Object) {
    out.push_str(&format!("Service: {}\n", context.kname(service)));
    for port in service.spec()["ports"].as_array().into_iter().flatten() {
        if port["protocol"].as_str().is_some_and(|p| p != "TCP") {
            continue;
        }
        let name = port["name"].as_str().unwrap_or_default();
        match find_port(pod, port) {
            Some(target) => {
                let protocol = if name.is_empty() { "auto-detect" } else { port_protocol(name) };
                out.push_str(&format!(
                    "   Port: {name} {}/{protocol} targets pod port {target}\n",
                    port["port"].as_i64().unwrap_or(0)
                ));
            }
            None => out.push_str(&format!("   no suitable port for manifest: {}\n", pod.name())),
        }
    }
}

fn section<'a>(dump: &'a Value, type_name: &str) -> Option<&'a Value> {
    crate::proxy_config::section(dump, type_name)
}

/// `(name, namespace)` from an `istio.config` breadcrumb of the given kind.
fn breadcrumb(metadata: &Value, kind: &str) -> Option<(String, String)> {
    let path = metadata["filter_metadata"]["istio"]["config"].as_str()?;
    let rest = path.strip_prefix("/apis/networking/v1alpha3/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix(kind)?.strip_prefix('/')?;
    Some((name.to_string(), namespace.to_string()))
}

fn service_fqdn(service: &Object) -> String {
    format!("{}.{}{K8S_SUFFIX}", service.name(), service.namespace())
}

/// The DestinationRule behind the proxy's outbound cluster for a service port.
pub(crate) fn destination_rule_breadcrumb(dump: &Value, service: &Object, port: i64) -> Option<(String, String)> {
    let wanted = format!("outbound|{port}||{}", service_fqdn(service));
    let clusters = section(dump, "ClustersConfigDump")?;
    clusters["dynamic_active_clusters"]
        .as_array()?
        .iter()
        .map(|entry| &entry["cluster"])
        .find(|cluster| cluster["name"].as_str() == Some(wanted.as_str()))
        .and_then(|cluster| breadcrumb(&cluster["metadata"], "destination-rule"))
}

/// Whether a route of a virtual host leads to the service, as 1.4 decided it: the virtual
/// host's domains name the service, or the route's cluster is the service's outbound cluster.
fn route_reaches(route: &Value, domains: &[Value], service: &Object, port: i64) -> bool {
    let fqdn = service_fqdn(service);
    if domains.iter().filter_map(Value::as_str).any(|domain| domain == fqdn) {
        return true;
    }
    let target = |cluster: &str| {
        cluster.strip_prefix(&format!("outbound|{port}|")).and_then(|rest| rest.split_once('|')).map(|(_, host)| host)
            == Some(fqdn.as_str())
    };
    let action = &route["route"];
    action["cluster"].as_str().is_some_and(target)
        || action["weighted_clusters"]["clusters"]
            .as_array()
            .is_some_and(|clusters| clusters.iter().any(|c| c["name"].as_str().is_some_and(target)))
}

/// The VirtualService behind the proxy's routes to a service port.
pub(crate) fn virtual_service_breadcrumb(dump: &Value, service: &Object, port: i64) -> Option<(String, String)> {
    let routes = section(dump, "RoutesConfigDump")?;
    let port_name = port.to_string();
    for entry in routes["dynamic_route_configs"].as_array()? {
        let config = &entry["route_config"];
        let name = config["name"].as_str().unwrap_or_default();
        if name != port_name && !name.starts_with("http.") {
            continue;
        }
        for host in config["virtual_hosts"].as_array().into_iter().flatten() {
            let domains = host["domains"].as_array().cloned().unwrap_or_default();
            for route in host["routes"].as_array().into_iter().flatten() {
                if route_reaches(route, &domains, service, port) {
                    if let Some(found) = breadcrumb(&route["metadata"], "virtual-service") {
                        return Some(found);
                    }
                }
            }
        }
    }
    None
}

fn labels_match(selector: &Value, pod: &Object) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    selector.as_object().into_iter().flatten().all(|(key, value)| labels.get(key).map(String::as_str) == value.as_str())
}

/// The rule's subsets that match any of the pods, and those that match none.
pub(crate) fn subsets(rule: &Object, pods: &[Object]) -> (Vec<String>, Vec<String>) {
    let mut matching = Vec::new();
    let mut nonmatching = Vec::new();
    for subset in rule.spec()["subsets"].as_array().into_iter().flatten() {
        let name = subset["name"].as_str().unwrap_or_default().to_string();
        if pods.iter().any(|pod| labels_match(&subset["labels"], pod)) {
            matching.push(name);
        } else {
            nonmatching.push(name);
        }
    }
    (matching, nonmatching)
}

pub(crate) fn destination_rule(out: &mut String, context: &Context, rule: &Object, pods: &[Object]) {
    let spec = rule.spec();
    out.push_str(&format!(
        "DestinationRule: {} for {:?}\n",
        context.kname(rule),
        spec["host"].as_str().unwrap_or_default()
    ));
    let (matching, nonmatching) = subsets(rule, pods);
    if !matching.is_empty() || !nonmatching.is_empty() {
        if matching.is_empty() {
            out.push_str(&format!(
                "  WARNING POD DOES NOT MATCH ANY SUBSETS.  (Non matching subsets {})\n",
                nonmatching.join(",")
            ));
        }
        out.push_str(&format!("   Matching subsets: {}\n", matching.join(",")));
        if !nonmatching.is_empty() {
            out.push_str(&format!("      (Non-matching subsets {})\n", nonmatching.join(",")));
        }
    }
    let policy = &spec["trafficPolicy"];
    if policy.is_null() {
        out.push_str("   No Traffic Policy\n");
        return;
    }
    if let Some(tls) = policy.get("tls") {
        out.push_str(&format!("   Traffic Policy TLS Mode: {}\n", tls["mode"].as_str().unwrap_or("DISABLE")));
    }
    let extra: Vec<&str> = [
        ("loadBalancer", "load balancer"),
        ("connectionPool", "connection pool"),
        ("outlierDetection", "outlier detection"),
        ("portLevelSettings", "port level settings"),
    ]
    .iter()
    .filter(|(key, _)| policy.get(*key).is_some())
    .map(|(_, text)| *text)
    .collect();
    if !extra.is_empty() {
        out.push_str(&format!("   {}\n", extra.join("/")));
    }
}

/// The pod's mutual TLS for a service port, from Pilot's authentication debug rows.
pub(crate) fn authn(
    out: &mut String,
    context: &Context,
    pod: &Object,
    rows: Option<&[AuthenticationDebug]>,
    service: &Object,
    port: i64,
) {
    let Some(rows) = rows else { return };
    let fqdn = service_fqdn(service);
    let matching: Vec<&AuthenticationDebug> =
        rows.iter().filter(|row| row.host == fqdn && i64::from(row.port) == port).collect();
    if matching.is_empty() {
        out.push_str("Authn: None\n");
    }
    for row in matching {
        if row.tls_conflict_status != "OK" && row.tls_conflict_status != "AUTO" {
            out.push_str(&format!(
                "WARNING TLS Conflict on {} port {} (pod enforces {}, clients speak {})\n",
                context.kname(pod),
                row.port,
                row.server_protocol,
                row.client_protocol
            ));
            if row.destination_rule_name != "-" {
                out.push_str(&format!(
                    "  Check DestinationRule {} and AuthenticationPolicy {}\n",
                    row.destination_rule_name, row.authentication_policy_name
                ));
            } else {
                out.push_str(&format!(
                    "  There is no DestinationRule.  Check AuthenticationPolicy {}\n",
                    row.authentication_policy_name
                ));
            }
            continue;
        }
        if row.tls_conflict_status == "AUTO" {
            out.push_str(&format!("Pod is {}, clients configured automatically\n", row.server_protocol));
            continue;
        }
        let mode = match row.server_protocol.as_str() {
            "HTTP" => Some("HTTP"),
            "mTLS" => Some("STRICT"),
            "HTTP/mTLS" => Some("PERMISSIVE"),
            "TLS" => Some("SIMPLE"),
            "custom mTLS" => Some("custom mTLS"),
            "UNKNOWN" => Some("Unknown"),
            _ => None,
        };
        match mode {
            Some(mode) => out.push_str(&format!(
                "Pod is {mode} (enforces {}) and clients speak {}\n",
                row.server_protocol, row.client_protocol
            )),
            None if row.client_protocol != "-" => {
                out.push_str(&format!("Pod is {} and clients are {}\n", row.server_protocol, row.client_protocol))
            }
            None => out.push_str(&format!("Pod is {}, client protocol unspecified\n", row.server_protocol)),
        }
    }
}

/// A host as an FQDN, short names taking the VirtualService's namespace.
fn destination_fqdn(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.ends_with(K8S_SUFFIX) {
        host.to_string()
    } else if host.contains('.') {
        format!("{host}{K8S_SUFFIX}")
    } else {
        format!("{host}.{namespace}{K8S_SUFFIX}")
    }
}

fn render_string_match(value: &Value) -> String {
    if let Some(exact) = value["exact"].as_str() {
        exact.to_string()
    } else if let Some(prefix) = value["prefix"].as_str() {
        format!("{prefix}*")
    } else if let Some(regex) = value["regex"].as_str() {
        format!("regex:{regex:?}")
    } else {
        value.to_string()
    }
}

fn render_match(matcher: &Value) -> String {
    let mut text = String::new();
    if matcher.get("uri").is_some() {
        text += &render_string_match(&matcher["uri"]);
        if matcher["ignoreUriCase"].as_bool() == Some(true) {
            text += " uncased";
        }
    }
    if let Some(headers) = matcher["headers"].as_object().filter(|h| !h.is_empty()) {
        let conditions: Vec<String> =
            headers.iter().map(|(key, value)| format!("{key}={}", render_string_match(value))).collect();
        text += &format!(" when headers are {}", conditions.join("; "));
    }
    text.trim().to_string()
}

fn render_matches(matches: &[Value]) -> String {
    if matches.is_empty() {
        "everything".to_string()
    } else {
        matches.iter().map(render_match).collect::<Vec<_>>().join(", ")
    }
}

fn strings_of(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// Whether an HTTP route reaches the service (and the pod's subsets), with what to say about it.
fn http_route_facts(
    vs: &Object,
    route: &Value,
    service: &Object,
    matching: &[String],
    nonmatching: &[String],
    rule: Option<&Object>,
    context: &Context,
) -> (bool, Vec<String>) {
    let fqdn = service_fqdn(service);
    let mut facts = Vec::new();
    let mut mismatches = Vec::new();
    let mut reaches = false;
    for destination in strings_of(&route["route"]) {
        let host = destination["destination"]["host"].as_str().unwrap_or_default();
        if destination_fqdn(host, vs.namespace()) != fqdn {
            mismatches.push(format!("Route to {host}"));
            continue;
        }
        let subset = destination["destination"]["subset"].as_str().unwrap_or_default();
        if !subset.is_empty() {
            if nonmatching.iter().any(|s| s == subset) {
                mismatches.push(format!(
                    "Route to non-matching subset {subset} for ({})",
                    render_matches(&strings_of(&route["match"]))
                ));
                continue;
            }
            if !matching.iter().any(|s| s == subset) {
                mismatches.push(match rule {
                    None => format!("Warning: Route to subset {subset} but NO DESTINATION RULE defining subsets!"),
                    Some(rule) => {
                        format!(
                            "Warning: Route to UNKNOWN subset {subset}; check DestinationRule {}",
                            context.kname(rule)
                        )
                    }
                });
                continue;
            }
        }
        reaches = true;
        if let Some(weight) = destination["weight"].as_i64().filter(|w| *w > 0) {
            facts.push(format!("Weight {weight}%"));
        }
    }
    if reaches {
        let mut conditions = Vec::new();
        if let Some(fault) = route.get("fault") {
            conditions.push(format!("Fault injection {fault}"));
        }
        conditions.extend(strings_of(&route["match"]).iter().map(render_match));
        if !conditions.is_empty() {
            facts.push(conditions.join(", "));
        }
    } else {
        facts.extend(mismatches);
    }
    (reaches, facts)
}

fn tcp_route_facts(vs: &Object, route: &Value, service: &Object) -> (bool, Vec<String>) {
    let fqdn = service_fqdn(service);
    let reaches = strings_of(&route["route"]).iter().any(|destination| {
        destination_fqdn(destination["destination"]["host"].as_str().unwrap_or_default(), vs.namespace()) == fqdn
    });
    let facts = if reaches { strings_of(&route["match"]).iter().map(Value::to_string).collect() } else { Vec::new() };
    (reaches, facts)
}

/// The VirtualService's section: the routes that reach the pod, or why none do.
pub(crate) fn virtual_service(
    out: &mut String,
    context: &Context,
    vs: &Object,
    service: &Object,
    matching: &[String],
    nonmatching: &[String],
    rule: Option<&Object>,
) {
    out.push_str(&format!("VirtualService: {}\n", context.kname(vs)));
    let spec = vs.spec();
    let (http, tcp, tls) = (strings_of(&spec["http"]), strings_of(&spec["tcp"]), strings_of(&spec["tls"]));
    let results = http
        .iter()
        .map(|route| http_route_facts(vs, route, service, matching, nonmatching, rule, context))
        .chain(tcp.iter().map(|route| tcp_route_facts(vs, route, service)));
    let mut matches = 0;
    let mut facts = 0;
    let mut mismatches = Vec::new();
    for (reaches, new_facts) in results {
        if reaches {
            matches += 1;
            facts += new_facts.len();
            for fact in new_facts {
                out.push_str(&format!("   {fact}\n"));
            }
        } else {
            mismatches.extend(new_facts);
        }
    }
    if matches == 0 {
        if !http.is_empty() {
            out.push_str(&format!(
                "   WARNING: No destinations match pod subsets (checked {} HTTP routes)\n",
                http.len()
            ));
        }
        if !tcp.is_empty() {
            out.push_str(&format!(
                "   WARNING: No destinations match pod subsets (checked {} TCP routes)\n",
                tcp.len()
            ));
        }
        for mismatch in &mismatches {
            out.push_str(&format!("      {mismatch}\n"));
        }
        return;
    }
    let possible = http.len() + tls.len() + tcp.len();
    if matches < possible {
        out.push_str(&format!("   {} additional destination(s) that will not reach this pod\n", possible - matches));
        if facts == 0 {
            for mismatch in &mismatches {
                out.push_str(&format!("      {mismatch}\n"));
            }
        }
        return;
    }
    if facts == 0 {
        if !http.is_empty() {
            out.push_str(&format!("   {} HTTP route(s)\n", http.len()));
        }
        if !tcp.is_empty() {
            out.push_str(&format!("   {} TCP route(s)\n", tcp.len()));
        }
    }
}

/// The names of the RBAC policies on the pod's inbound side of a port.
pub(crate) fn rbac_policies(dump: &Value, port: i64) -> Vec<String> {
    let Some(listeners) = section(dump, "ListenersConfigDump") else { return Vec::new() };
    for entry in listeners["dynamic_listeners"].as_array().into_iter().flatten() {
        let listener = &entry["active_state"]["listener"];
        let address = &listener["address"]["socket_address"];
        let inbound_port = address["port_value"].as_i64() == Some(port) && address["address"] != "0.0.0.0";
        let virtual_inbound = listener["name"] == "virtualInbound";
        if !inbound_port && !virtual_inbound {
            continue;
        }
        for chain in listener["filter_chains"].as_array().into_iter().flatten() {
            if virtual_inbound && chain["filter_chain_match"]["destination_port"].as_i64() != Some(port) {
                continue;
            }
            for filter in chain["filters"].as_array().into_iter().flatten() {
                for http_filter in filter["typed_config"]["http_filters"].as_array().into_iter().flatten() {
                    if http_filter["name"] == "envoy.filters.http.rbac" {
                        let mut names: Vec<String> = http_filter["typed_config"]["rules"]["policies"]
                            .as_object()
                            .map(|policies| policies.keys().cloned().collect())
                            .unwrap_or_default();
                        names.sort();
                        return names;
                    }
                }
            }
        }
    }
    Vec::new()
}

/// The ingress gateway's address: its load balancer's, else its node's.
pub(crate) fn ingress_address(service: &Object, pod: &Object) -> String {
    let balancer = service.body.get("status").and_then(|s| s["loadBalancer"]["ingress"][0]["ip"].as_str());
    balancer.or_else(|| status(pod)["hostIP"].as_str()).unwrap_or("unknown").to_string()
}

/// `Exposed on Ingress Gateway http://ADDRESS` for the gateway Service's `http2` port.
pub(crate) fn ingress_service(out: &mut String, service: &Object, pod: &Object, address: &str) {
    for port in service.spec()["ports"].as_array().into_iter().flatten() {
        if port["protocol"].as_str().is_some_and(|p| p != "TCP") || port["name"] != "http2" {
            continue;
        }
        if let Some(target) = find_port(pod, port) {
            let suffix = if target == 80 { String::new() } else { format!(":{target}\n") };
            out.push_str(&format!("\nExposed on Ingress Gateway http://{address}{suffix}\n"));
        }
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
