//! Services on the local platform, the parts kube-proxy and cluster DNS play: ClusterIP
//! allocation (none for an `ExternalName` Service, a DNS alias), Endpoints from the ready pods a Service selects, each pod's `/etc/hosts`
//! (service names → ClusterIPs, control-plane names → their host addresses), and the DNAT
//! rules that make ClusterIPs reach pods, installed inside every pod's network namespace
//! after its init containers so a sidecar's capture sees the ClusterIP first, as on
//! Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use istio_config::object::Object;
use serde_json::{json, Value};

use crate::objects::{labels, selects, string_map};

/// The chain holding the ClusterIP rules in each pod's `nat` table.
pub(crate) const SERVICES_CHAIN: &str = "LOCAL-SERVICES";
/// The chain in each pod's `filter` table refusing ClusterIP ports without endpoints, as
/// kube-proxy does (a sidecar's capture redirects first, so it only sees uncaptured traffic).
pub(crate) const NO_ENDPOINTS_CHAIN: &str = "LOCAL-NO-ENDPOINTS";

/// The external name of an `ExternalName` Service.
pub(crate) fn external_name(service: &Object) -> Option<&str> {
    let spec = service.spec();
    (spec.get("type").and_then(Value::as_str) == Some("ExternalName"))
        .then(|| spec.get("externalName").and_then(Value::as_str))
        .flatten()
        .filter(|name| !name.is_empty())
}

/// The first free ClusterIP in 10.96.0.10 – 10.96.255.254.
pub(crate) fn allocate_cluster_ip(services: &[Object]) -> Option<Ipv4Addr> {
    let used: BTreeSet<Ipv4Addr> = services
        .iter()
        .filter_map(|service| service.spec().get("clusterIP").and_then(Value::as_str))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    (10..0xfffe_u32)
        .map(|offset| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + offset))
        .find(|ip| !used.contains(ip))
}

/// A pod that can serve: its address, labels, readiness and container ports.
#[derive(Debug, Clone)]
pub(crate) struct PodEndpoint {
    pub namespace: String,
    pub name: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    /// Container port name → number.
    pub named_ports: BTreeMap<String, u64>,
    /// The node the pod was scheduled on.
    pub node_name: Option<String>,
}

impl PodEndpoint {
    /// From a stored Pod; `None` until it has an address.
    pub(crate) fn from_pod(pod: &Object) -> Option<Self> {
        let status = pod.body.get("status")?;
        let ip = status.get("podIP").and_then(Value::as_str).filter(|ip| !ip.is_empty())?.to_string();
        let ready = status
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
        let named_ports = pod
            .spec()
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|container| container.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|port| Some((port.get("name")?.as_str()?.to_string(), port.get("containerPort")?.as_u64()?)))
            .collect();
        Some(Self {
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            ip,
            labels: labels(pod),
            ready,
            named_ports,
            node_name: pod.spec().get("nodeName").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// The Endpoints object for a Service with a selector, or `None` for one without (its
/// Endpoints are managed by hand, as on Kubernetes).
pub(crate) fn endpoints_for(service: &Object, pods: &[PodEndpoint]) -> Option<Value> {
    let selector = string_map(service.spec().get("selector"));
    if selector.is_empty() {
        return None;
    }
    let service_ports: Vec<Value> = service.spec().get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    // Pods grouped by the ports (name, number, protocol) they resolve to: (ready, not ready).
    type Ports = Vec<(String, u64, String)>;
    let mut subsets: BTreeMap<Ports, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods.iter().filter(|pod| pod.namespace == service.namespace() && selects(&selector, &pod.labels)) {
        let ports: Vec<(String, u64, String)> = service_ports
            .iter()
            .filter_map(|port| {
                let name = port.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
                let number = match port.get("targetPort") {
                    Some(Value::Number(number)) => number.as_u64()?,
                    Some(Value::String(text)) => text.parse().ok().or_else(|| pod.named_ports.get(text).copied())?,
                    _ => port.get("port")?.as_u64()?,
                };
                Some((name, number, protocol))
            })
            .collect();
        let mut address =
            json!({"ip": pod.ip, "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name}});
        if let Some(node) = &pod.node_name {
            address["nodeName"] = json!(node);
        }
        let entry = subsets.entry(ports).or_default();
        if pod.ready {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut subset = json!({"ports": ports.iter().map(|(name, port, protocol)| {
                let mut entry = json!({"port": port, "protocol": protocol});
                if !name.is_empty() { entry["name"] = json!(name); }
                entry
            }).collect::<Vec<_>>()});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    let mut endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": service.name(), "namespace": service.namespace()},
        "subsets": subsets,
    });
    if let Some(service_labels) = service.metadata.labels.as_ref().filter(|labels| !labels.is_empty()) {
        endpoints["metadata"]["labels"] = json!(service_labels);
    }
    Some(endpoints)
}

/// A name the control plane answers under, and where.
#[derive(Debug, Clone)]
pub struct HostName {
    pub service: String,
    pub namespace: String,
    pub address: Ipv4Addr,
}

/// The `/etc/hosts` of a pod in `namespace`.
pub(crate) fn hosts_file(
    namespace: &str,
    pod_name: &str,
    pod_ip: &str,
    services: &[Object],
    control: &[HostName],
) -> String {
    let mut text = String::from(
        "# Written by the istio-rs local platform.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let _ = writeln!(text, "{pod_ip}\t{pod_name}");
    let mut line = |address: &str, name: &str, ns: &str| {
        let mut names =
            vec![format!("{name}.{ns}.svc.cluster.local"), format!("{name}.{ns}.svc"), format!("{name}.{ns}")];
        if ns == namespace {
            names.push(name.to_string());
        }
        let _ = writeln!(text, "{address}\t{}", names.join(" "));
    };
    for entry in control {
        line(&entry.address.to_string(), &entry.service, &entry.namespace);
    }
    for service in services {
        if let Some(ip) =
            service.spec().get("clusterIP").and_then(Value::as_str).filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
        {
            line(ip, service.name(), service.namespace());
        }
    }
    text
}

/// The `iptables-restore` input that (re)writes the ClusterIP chains: each service port is
/// spread over its ready endpoints with equal probability, and refused when it has none.
pub(crate) fn dnat_rules(services: &[Object], endpoints: &[Object]) -> String {
    dnat_rules_in((SERVICES_CHAIN, NO_ENDPOINTS_CHAIN), services, endpoints)
}

/// The same rules in the chains `(nat, filter)`: a pod's own, or the host's.
pub(crate) fn dnat_rules_in(chains: (&str, &str), services: &[Object], endpoints: &[Object]) -> String {
    let (nat_chain, filter_chain) = chains;
    let mut nat = format!("*nat\n:{nat_chain} - [0:0]\n");
    let mut filter = format!("*filter\n:{filter_chain} - [0:0]\n");
    for service in services {
        let Some(cluster_ip) =
            service.spec().get("clusterIP").and_then(Value::as_str).filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let endpoints = endpoints.iter().find(|e| e.name() == service.name() && e.namespace() == service.namespace());
        for port in service.spec().get("ports").and_then(Value::as_array).into_iter().flatten() {
            let Some(number) = port.get("port").and_then(Value::as_u64) else { continue };
            if port.get("protocol").and_then(Value::as_str).is_some_and(|protocol| protocol != "TCP") {
                continue;
            }
            let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
            let mut targets = Vec::new();
            let subsets = endpoints.and_then(|e| e.body.get("subsets")).and_then(Value::as_array);
            for subset in subsets.into_iter().flatten() {
                let target_port = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|candidate| candidate.get("name").and_then(Value::as_str).unwrap_or_default() == name)
                    .and_then(|candidate| candidate.get("port").and_then(Value::as_u64));
                let Some(target_port) = target_port else { continue };
                for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(ip) = address.get("ip").and_then(Value::as_str) {
                        targets.push(format!("{ip}:{target_port}"));
                    }
                }
            }
            if targets.is_empty() {
                let _ = writeln!(
                    filter,
                    "-A {filter_chain} -d {cluster_ip}/32 -p tcp --dport {number} -j REJECT --reject-with icmp-port-unreachable"
                );
                continue;
            }
            let count = targets.len();
            for (index, target) in targets.iter().enumerate() {
                let remaining = count - index;
                let statistic = if remaining > 1 {
                    format!(" -m statistic --mode random --probability {:.5}", 1.0 / remaining as f64)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    nat,
                    "-A {nat_chain} -d {cluster_ip}/32 -p tcp --dport {number}{statistic} -j DNAT --to-destination {target}"
                );
            }
        }
    }
    nat.push_str("COMMIT\n");
    filter.push_str("COMMIT\n");
    nat + &filter
}

/// Installs the rules in a pod's network namespace, with the jumps to them from `OUTPUT`.
pub(crate) fn install_rules(netns: &str, rules: &str) -> anyhow::Result<()> {
    crate::net::iptables_restore_in(netns, rules)?;
    for (table, chain) in [("nat", SERVICES_CHAIN), ("filter", NO_ENDPOINTS_CHAIN)] {
        let has_jump = std::process::Command::new("ip")
            .args(["netns", "exec", netns, "iptables", "-t", table, "-C", "OUTPUT", "-j", chain])
            .output()
            .is_ok_and(|output| output.status.success());
        if !has_jump {
            crate::net::run("ip", &["netns", "exec", netns, "iptables", "-t", table, "-A", "OUTPUT", "-j", chain])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Object {
        serde_json::from_value(value).expect("object")
    }

    #[test]
    fn endpoints_hosts_and_rules_follow_the_services() {
        let service = object(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}},
            "spec": {"clusterIP": "10.96.0.12", "selector": {"app": "reviews"},
                     "ports": [{"name": "http", "port": 9080, "targetPort": "web"}]}}));
        let pod = |name: &str, ip: &str, ready: bool| PodEndpoint {
            namespace: "default".into(),
            name: name.into(),
            ip: ip.into(),
            labels: BTreeMap::from([("app".to_string(), "reviews".to_string())]),
            ready,
            named_ports: BTreeMap::from([("web".to_string(), 9081)]),
            node_name: (name == "a").then(|| "zone-a".to_string()),
        };
        let endpoints = endpoints_for(
            &service,
            &[pod("a", "10.44.1.1", true), pod("b", "10.44.1.2", true), pod("c", "10.44.1.3", false)],
        )
        .expect("endpoints");
        assert_eq!(endpoints["subsets"][0]["addresses"].as_array().expect("ready").len(), 2);
        assert_eq!(endpoints["subsets"][0]["addresses"][0]["nodeName"], "zone-a", "the pod's node, for its locality");
        assert!(endpoints["subsets"][0]["addresses"][1].get("nodeName").is_none());
        assert_eq!(endpoints["subsets"][0]["notReadyAddresses"][0]["ip"], "10.44.1.3");
        assert_eq!(endpoints["subsets"][0]["ports"][0], json!({"name": "http", "port": 9081, "protocol": "TCP"}));

        let rules = dnat_rules(std::slice::from_ref(&service), &[object(endpoints)]);
        assert!(rules.contains("-A LOCAL-SERVICES -d 10.96.0.12/32 -p tcp --dport 9080 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.44.1.1:9081"), "{rules}");
        assert!(rules.contains("--dport 9080 -j DNAT --to-destination 10.44.1.2:9081"), "{rules}");

        let control = [HostName {
            service: "istio-pilot".into(),
            namespace: "istio-system".into(),
            address: Ipv4Addr::new(10, 44, 0, 10),
        }];
        let hosts = hosts_file("default", "p", "10.44.1.9", &[service], &control);
        assert!(
            hosts.contains(
                "10.96.0.12\treviews.default.svc.cluster.local reviews.default.svc reviews.default reviews\n"
            ),
            "{hosts}"
        );
        assert!(hosts.contains("10.44.0.10\tistio-pilot.istio-system.svc.cluster.local istio-pilot.istio-system.svc istio-pilot.istio-system\n"));
        assert_eq!(allocate_cluster_ip(&[]), Some(Ipv4Addr::new(10, 96, 0, 10)));
    }
}
