//! Kubernetes services as Istio sees them: one ServiceEntry per Service, built from Services,
//! Endpoints, Pods and Nodes — the FQDN host, the ClusterIP (none for headless services), ports
//! with the protocol taken from the port-name prefix, ready endpoints with their pod's labels and
//! node locality, and the pods' service accounts as SPIFFE subject alternative names; an
//! `ExternalName` Service is a MESH_EXTERNAL, DNS-resolved entry whose endpoint is the external
//! name (with neither address nor ClusterIP), as 1.4's Galley and Pilot made it. Galley
//! serves these as its synthetic ServiceEntries over MCP; Pilot's Kubernetes registry builds the
//! same entries when it reads the cluster itself.

use std::collections::{BTreeSet, HashMap};

use istio_api::pb::istio::networking::v1alpha3::{service_entry, Port, ServiceEntry};
use serde_json::Value;

use crate::object::{Object, ObjectKey};

const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
const SERVICE_ACCOUNTS_ANNOTATION: &str = "alpha.istio.io/kubernetes-serviceaccounts";
pub const REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
pub const ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
pub const REGION_LABEL_GA: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL_GA: &str = "topology.kubernetes.io/zone";
/// The pod label that overrides the locality its node gives it (1.4's `istio-locality`).
pub const LOCALITY_LABEL: &str = "istio-locality";

/// Istio's protocol for a Kubernetes port, from its name (`http`, `http-web`, `grpc-x`, …).
/// Unnamed or unknown names give an empty protocol, which Pilot sniffs.
pub fn protocol_from_port_name(name: &str, kubernetes_protocol: &str) -> &'static str {
    if kubernetes_protocol.eq_ignore_ascii_case("UDP") {
        return "UDP";
    }
    if name.get(.."grpc-web".len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case("grpc-web")) {
        return "GRPC-Web";
    }
    let prefix = name.split('-').next().unwrap_or_default().to_ascii_lowercase();
    match prefix.as_str() {
        "http" => "HTTP",
        "http2" => "HTTP2",
        "https" => "HTTPS",
        "grpc" => "GRPC",
        "tcp" => "TCP",
        "tls" => "TLS",
        "mongo" => "Mongo",
        "mysql" => "MySQL",
        "redis" => "Redis",
        "udp" => "UDP",
        _ => "",
    }
}

/// Ports 1.4 took for TCP when their name says nothing: SMTP, DNS, MySQL and MongoDB.
const WELL_KNOWN_TCP_PORTS: [u32; 4] = [25, 53, 3306, 27017];

/// The core objects synthetic entries are made from.
#[derive(Debug, Default)]
pub struct CoreObjects<'a> {
    pub services: Vec<&'a Object>,
    pub endpoints: HashMap<(String, String), &'a Object>,
    pub pods_by_ip: HashMap<String, &'a Object>,
    pub nodes: HashMap<String, &'a Object>,
}

impl<'a> CoreObjects<'a> {
    pub fn collect(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        let mut core = CoreObjects::default();
        for object in objects {
            if !object.group().is_empty() {
                continue;
            }
            match object.kind.as_str() {
                "Service" => core.services.push(object),
                "Endpoints" => {
                    core.endpoints.insert((object.namespace().to_string(), object.name().to_string()), object);
                }
                "Pod" => {
                    if let Some(ip) =
                        object.body.get("status").and_then(|status| status.get("podIP")).and_then(Value::as_str)
                    {
                        core.pods_by_ip.insert(ip.to_string(), object);
                    }
                }
                "Node" => {
                    core.nodes.insert(object.name().to_string(), object);
                }
                _ => {}
            }
        }
        core
    }
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(value, |value, key| value.get(key)).and_then(Value::as_str)
}

fn labels_of(object: &Object) -> HashMap<String, String> {
    object.metadata.labels.clone().unwrap_or_default().into_iter().collect()
}

fn annotation<'o>(object: &'o Object, name: &str) -> Option<&'o str> {
    object.metadata.annotations.as_ref()?.get(name).map(String::as_str)
}

/// A pod's locality, as 1.4's `GetPodLocality`: its `istio-locality` label (`region.zone` or
/// `region/zone/subzone`) when it has one, else its node's region and zone labels (the beta
/// names, or the GA `topology.kubernetes.io/*` ones).
fn locality(core: &CoreObjects<'_>, pod: Option<&Object>, node_name: Option<&str>) -> String {
    if let Some(label) = pod.and_then(|pod| pod.metadata.labels.as_ref()?.get(LOCALITY_LABEL)).filter(|l| !l.is_empty())
    {
        return if label.contains('/') { label.clone() } else { label.replace('.', "/") };
    }
    let Some(node) = node_name.and_then(|name| core.nodes.get(name)) else { return String::new() };
    let labels = labels_of(node);
    let region = labels.get(REGION_LABEL).or_else(|| labels.get(REGION_LABEL_GA));
    let zone = labels.get(ZONE_LABEL).or_else(|| labels.get(ZONE_LABEL_GA));
    match (region, zone) {
        (Some(region), Some(zone)) => format!("{region}/{zone}"),
        (Some(region), None) => region.clone(),
        (None, Some(zone)) => format!("/{zone}"),
        (None, None) => String::new(),
    }
}

/// The ServiceEntry for one Service (and its Endpoints, if any).
pub fn service_entry(
    core: &CoreObjects<'_>,
    service: &Object,
    domain_suffix: &str,
    trust_domain: &str,
) -> ServiceEntry {
    let spec = service.spec();
    let namespace = service.namespace();
    let host = format!("{}.{namespace}.svc.{domain_suffix}", service.name());
    let cluster_ip = str_at(spec, &["clusterIP"]).unwrap_or_default();
    let addresses =
        if cluster_ip.is_empty() || cluster_ip == "None" { Vec::new() } else { vec![cluster_ip.to_string()] };
    let service_ports: Vec<&Value> =
        spec.get("ports").and_then(Value::as_array).map(|ports| ports.iter().collect()).unwrap_or_default();
    let ports: Vec<Port> = service_ports
        .iter()
        .map(|port| {
            let name = str_at(port, &["name"]).unwrap_or_default();
            let number = port.get("port").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            let mut protocol = protocol_from_port_name(name, str_at(port, &["protocol"]).unwrap_or("TCP"));
            if protocol.is_empty() && WELL_KNOWN_TCP_PORTS.contains(&number) {
                protocol = "TCP";
            }
            Port { number, protocol: protocol.to_string(), name: name.to_string() }
        })
        .collect();
    let port_names: BTreeSet<&str> = ports.iter().map(|port| port.name.as_str()).collect();

    let mut endpoints = Vec::new();
    let mut accounts: BTreeSet<String> = annotation(service, SERVICE_ACCOUNTS_ANNOTATION)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|sa| !sa.is_empty())
                .map(|sa| format!("spiffe://{trust_domain}/ns/{namespace}/sa/{sa}"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(endpoints_object) = core.endpoints.get(&(namespace.to_string(), service.name().to_string())) {
        let subsets = endpoints_object.body.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default();
        for subset in &subsets {
            let mut subset_ports = HashMap::new();
            for port in subset.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let name = str_at(port, &["name"]).unwrap_or_default();
                let number = port.get("port").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                if port_names.contains(name) {
                    subset_ports.insert(name.to_string(), number);
                }
            }
            for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                let Some(ip) = str_at(address, &["ip"]) else { continue };
                let pod = core.pods_by_ip.get(ip);
                if let Some(pod) = pod {
                    let account = str_at(pod.spec(), &["serviceAccountName"]).unwrap_or("default");
                    accounts.insert(format!("spiffe://{trust_domain}/ns/{}/sa/{account}", pod.namespace()));
                }
                let node_name =
                    str_at(address, &["nodeName"]).or_else(|| pod.and_then(|pod| str_at(pod.spec(), &["nodeName"])));
                endpoints.push(service_entry::Endpoint {
                    address: ip.to_string(),
                    ports: subset_ports.clone(),
                    labels: pod.map(|pod| labels_of(pod)).unwrap_or_default(),
                    locality: locality(core, pod.copied(), node_name),
                    ..Default::default()
                });
            }
        }
    }
    endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    let external_name = (str_at(spec, &["type"]) == Some("ExternalName"))
        .then(|| str_at(spec, &["externalName"]))
        .flatten()
        .filter(|name| !name.is_empty());
    let (addresses, location, resolution) = match external_name {
        Some(external_name) => {
            if endpoints.is_empty() {
                endpoints.push(service_entry::Endpoint {
                    address: external_name.to_string(),
                    ports: ports.iter().map(|port| (port.name.clone(), port.number)).collect(),
                    labels: labels_of(service),
                    ..Default::default()
                });
            }
            (Vec::new(), service_entry::Location::MeshExternal, service_entry::Resolution::Dns)
        }
        None => (addresses, service_entry::Location::MeshInternal, service_entry::Resolution::Static),
    };
    ServiceEntry {
        hosts: vec![host],
        addresses,
        ports,
        location: location as i32,
        resolution: resolution as i32,
        endpoints,
        export_to: annotation(service, EXPORT_TO_ANNOTATION)
            .map(|value| value.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        subject_alt_names: accounts.into_iter().collect(),
    }
}

/// Whether an object feeds synthetic service entries.
pub fn is_core_input(key: &ObjectKey) -> bool {
    key.group.is_empty() && matches!(key.kind.as_str(), "Service" | "Endpoints" | "Pod" | "Node")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Object {
        serde_json::from_value(value).expect("object")
    }

    #[test]
    fn builds_an_entry_from_service_endpoints_pods_and_nodes() {
        let objects = vec![
            object(serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "11", "labels": {"app": "reviews"}},
                "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}, {"name": "metrics", "port": 9090}]}})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "12"},
                "subsets": [{"addresses": [{"ip": "10.1.0.7", "nodeName": "node-a"}, {"ip": "10.1.0.5"}],
                             "ports": [{"name": "http", "port": 9080}, {"name": "metrics", "port": 9090}]}]})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "reviews-v1-x", "namespace": "default", "labels": {"app": "reviews", "version": "v1"}},
                "spec": {"serviceAccountName": "bookinfo-reviews", "nodeName": "node-a"}, "status": {"podIP": "10.1.0.7"}})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "node-a", "labels": {REGION_LABEL: "us-east", ZONE_LABEL: "us-east-1a"}}})),
        ];
        let core = CoreObjects::collect(&objects);
        let entry = service_entry(&core, core.services[0], "cluster.local", "cluster.local");
        assert_eq!(entry.hosts, vec!["reviews.default.svc.cluster.local"]);
        assert_eq!(entry.addresses, vec!["10.96.0.12"]);
        assert_eq!((entry.ports[0].protocol.as_str(), entry.ports[1].protocol.as_str()), ("HTTP", ""));
        assert_eq!(entry.endpoints.len(), 2);
        let pod_endpoint = &entry.endpoints[1];
        assert_eq!(pod_endpoint.address, "10.1.0.7");
        assert_eq!(pod_endpoint.labels["version"], "v1");
        assert_eq!(pod_endpoint.locality, "us-east/us-east-1a");
        assert_eq!(pod_endpoint.ports["http"], 9080);
        assert_eq!(entry.subject_alt_names, vec!["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]);
    }

    #[test]
    fn a_pods_istio_locality_label_wins_over_its_nodes_ga_labels() {
        let objects = vec![
            object(serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "hello", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 5000}]}})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "hello", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "10.1.0.8", "nodeName": "node-b"}, {"ip": "10.1.0.9", "nodeName": "node-b"}],
                             "ports": [{"name": "http", "port": 5000}]}]})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "hello-a", "namespace": "default", "labels": {LOCALITY_LABEL: "region9.zone9"}},
                "spec": {"nodeName": "node-b"}, "status": {"podIP": "10.1.0.8"}})),
            object(serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "node-b", "labels": {REGION_LABEL_GA: "region2", ZONE_LABEL_GA: "zone3"}}})),
        ];
        let core = CoreObjects::collect(&objects);
        let entry = service_entry(&core, core.services[0], "cluster.local", "cluster.local");
        let localities: Vec<&str> = entry.endpoints.iter().map(|e| e.locality.as_str()).collect();
        assert_eq!(localities, vec!["region9/zone9", "region2/zone3"]);
    }

    #[test]
    fn headless_services_have_no_address_and_protocols_follow_port_names() {
        let service = object(
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "x"},
            "spec": {"clusterIP": "None", "ports": [{"name": "mongo", "port": 27017}]}}),
        );
        let core = CoreObjects::collect([&service]);
        let entry = service_entry(&core, &service, "cluster.local", "cluster.local");
        assert!(entry.addresses.is_empty());
        assert_eq!(entry.ports[0].protocol, "Mongo");
        assert_eq!(protocol_from_port_name("grpc-web-ui", "TCP"), "GRPC-Web");
        assert_eq!(protocol_from_port_name("grpc-api", "TCP"), "GRPC");
        assert_eq!(protocol_from_port_name("http2-api", "TCP"), "HTTP2");
        assert_eq!(protocol_from_port_name("dns", "UDP"), "UDP");
    }

    /// 1.4's conversion tables: an ExternalName Service is external, resolved by DNS, with the
    /// external name as its endpoint; unnamed well-known ports are TCP.
    #[test]
    fn external_name_services_are_external_dns_entries() {
        let service = object(serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "my-httpbin", "namespace": "default", "labels": {"app": "my-httpbin"}},
            "spec": {"type": "ExternalName", "externalName": "httpbin.org",
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80}, {"port": 3306}]}}));
        let core = CoreObjects::collect([&service]);
        let entry = service_entry(&core, &service, "cluster.local", "cluster.local");
        assert_eq!(entry.hosts, ["my-httpbin.default.svc.cluster.local"]);
        assert!(entry.addresses.is_empty());
        assert_eq!(entry.location, service_entry::Location::MeshExternal as i32);
        assert_eq!(entry.resolution, service_entry::Resolution::Dns as i32);
        assert_eq!(entry.endpoints.len(), 1);
        assert_eq!(entry.endpoints[0].address, "httpbin.org");
        assert_eq!(entry.endpoints[0].ports["http"], 80);
        assert_eq!(entry.endpoints[0].labels["app"], "my-httpbin");
        assert_eq!(entry.ports[1].protocol, "TCP", "3306 is a well-known TCP port");
        // Without an external name it is an ordinary Service.
        let plain = object(serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"type": "ExternalName", "clusterIP": "10.96.0.40", "ports": [{"name": "http", "port": 80}]}}));
        let entry = service_entry(&CoreObjects::collect([&plain]), &plain, "cluster.local", "cluster.local");
        assert_eq!(entry.resolution, service_entry::Resolution::Static as i32);
        assert_eq!(entry.addresses, ["10.96.0.40"]);
    }
}
