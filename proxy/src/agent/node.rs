//! Who this proxy is to Pilot: the node id `TYPE~IP~POD.NS~DOMAIN` and the node metadata,
//! built from flags and the environment the way 1.4's pilot-agent did (`POD_NAME`,
//! `POD_NAMESPACE`, `INSTANCE_IP`, `ISTIO_META_*` as strings, `ISTIO_METAJSON_*` as JSON).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use serde_json::{Map, Value};

use super::args::AgentArgs;

/// The two kinds of proxy 1.4 had: a sidecar beside a workload, or a gateway (`router`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    Router,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sidecar => "sidecar",
            Role::Router => "router",
        }
    }
}

/// The proxy's identity as Envoy's `node` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    pub role: Role,
    pub ip: String,
    pub pod_name: String,
    pub namespace: String,
    /// `node.id`: `sidecar~10.1.2.3~productpage-v1-abc.default~default.svc.cluster.local`.
    pub id: String,
    /// `node.cluster`: `--serviceCluster`.
    pub cluster: String,
    /// `node.metadata`.
    pub metadata: Map<String, Value>,
}

/// Environment variables whose names carry node metadata.
const META_PREFIX: &str = "ISTIO_META_";
const META_JSON_PREFIX: &str = "ISTIO_METAJSON_";

/// An environment the node identity cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the proxy's IP {0:?} (--ip or INSTANCE_IP) is not an IP address")]
    Ip(String),
    #[error("environment variable {name} is not valid JSON: {source}")]
    MetadataJson { name: String, source: serde_json::Error },
}

impl NodeIdentity {
    /// Builds the identity from flags and an environment (`std::env::vars()` in the binary).
    pub fn build(role: Role, args: &AgentArgs, env: &[(String, String)]) -> Result<NodeIdentity, NodeError> {
        let lookup = |name: &str| env.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
        let non_empty = |value: Option<String>| value.filter(|text| !text.is_empty());
        let namespace = non_empty(lookup("POD_NAMESPACE")).unwrap_or_else(|| "default".to_string());
        let pod_name = non_empty(lookup("POD_NAME")).unwrap_or_else(hostname);
        let ip = if !args.ip.is_empty() {
            args.ip.clone()
        } else if let Some(ip) = non_empty(lookup("INSTANCE_IP")) {
            ip
        } else {
            default_ip().to_string()
        };
        ip.parse::<IpAddr>().map_err(|_| NodeError::Ip(ip.clone()))?;
        let workload = if args.id.is_empty() { format!("{pod_name}.{namespace}") } else { args.id.clone() };
        let domain =
            if args.domain.is_empty() { format!("{namespace}.svc.cluster.local") } else { args.domain.clone() };

        let mut metadata = Map::new();
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(META_JSON_PREFIX) {
                let parsed: Value = serde_json::from_str(value)
                    .map_err(|source| NodeError::MetadataJson { name: name.clone(), source })?;
                metadata.insert(key.to_string(), parsed);
            } else if let Some(key) = name.strip_prefix(META_PREFIX) {
                metadata.insert(key.to_string(), Value::String(value.clone()));
            }
        }
        let mut default = |key: &str, value: String| {
            metadata.entry(key.to_string()).or_insert(Value::String(value));
        };
        default("INSTANCE_IPS", ip.clone());
        default("NAMESPACE", namespace.clone());
        default("POD_NAME", pod_name.clone());
        // 1.4's pilot-agent: the pod's name and the keys a proxy shares with its peers.
        default("NAME", pod_name.clone());
        default("ISTIO_VERSION", istio_runtime::VERSION.to_string());
        if lookup("SDS_ENABLED").as_deref() == Some("true") {
            default("SDS", "true".to_string());
        }
        Ok(NodeIdentity {
            role,
            id: format!("{}~{ip}~{workload}~{domain}", role.as_str()),
            ip,
            pod_name,
            namespace,
            cluster: args.service_cluster.clone(),
            metadata,
        })
    }

    /// Whether Pilot will configure this proxy for certificates over SDS.
    pub fn sds(&self) -> bool {
        self.metadata.get("SDS").and_then(Value::as_str) == Some("true")
    }

    /// `node.locality` from the pod's `istio-locality` label (`region.zone` or
    /// `region/zone/subzone`), as 1.4's bootstrap did; Pilot prefers what its registry says.
    pub fn locality(&self) -> Option<Value> {
        let label = self.metadata.get("LABELS")?.get("istio-locality")?.as_str()?;
        let text = if label.contains('/') { label.to_string() } else { label.replace('.', "/") };
        let locality = istio_xds::locality::parse(&text)?;
        Some(serde_json::json!({"region": locality.region, "zone": locality.zone, "sub_zone": locality.sub_zone}))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The address this host would use to reach the outside: what a pod's IP is. Connecting a UDP
/// socket sends nothing; without a default route the proxy falls back to loopback.
fn default_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| socket.connect((Ipv4Addr::new(10, 255, 255, 255), 9)).map(|()| socket))
        .and_then(|socket| socket.local_addr())
        .map(|address| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::args::parse;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn sidecar_node_from_the_injected_environment() {
        let args = parse(&["proxy", "--serviceCluster", "productpage.default"]).expect("flags");
        let node = NodeIdentity::build(
            Role::Sidecar,
            &args,
            &env(&[
                ("POD_NAME", "productpage-v1-6b746f74dc-9stvs"),
                ("POD_NAMESPACE", "default"),
                ("INSTANCE_IP", "10.44.0.7"),
                ("ISTIO_META_CONFIG_NAMESPACE", "default"),
                ("ISTIO_METAJSON_LABELS", r#"{"app":"productpage","version":"v1"}"#),
                ("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
                ("SDS_ENABLED", "false"),
                ("HOME", "/"),
            ]),
        )
        .expect("node");
        assert_eq!(node.id, "sidecar~10.44.0.7~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local");
        assert_eq!(node.cluster, "productpage.default");
        assert_eq!(node.metadata["LABELS"], serde_json::json!({"app": "productpage", "version": "v1"}));
        assert_eq!(node.locality(), None);
        assert_eq!(node.metadata["INTERCEPTION_MODE"], "REDIRECT");
        assert_eq!(node.metadata["INSTANCE_IPS"], "10.44.0.7");
        assert_eq!(node.metadata["NAMESPACE"], "default");
        assert!(!node.metadata.contains_key("HOME"));
        assert!(!node.sds());
    }

    #[test]
    fn router_with_flag_overrides() {
        let args =
            parse(&["proxy", "--id", "gw.istio-system", "--ip", "10.0.0.9", "--domain", "x.local"]).expect("flags");
        let node = NodeIdentity::build(Role::Router, &args, &env(&[("SDS_ENABLED", "true")])).expect("node");
        assert_eq!(node.id, "router~10.0.0.9~gw.istio-system~x.local");
        assert!(node.sds());
    }

    #[test]
    fn bad_metadata_json_and_bad_ip_are_named() {
        let args = parse(&["proxy"]).expect("flags");
        let error = NodeIdentity::build(Role::Sidecar, &args, &env(&[("ISTIO_METAJSON_LABELS", "{app:")]))
            .expect_err("bad json")
            .to_string();
        assert!(error.contains("ISTIO_METAJSON_LABELS"), "{error}");
        let error =
            NodeIdentity::build(Role::Sidecar, &args, &env(&[("INSTANCE_IP", "ten")])).expect_err("bad ip").to_string();
        assert!(error.contains("\"ten\""), "{error}");
    }
}
