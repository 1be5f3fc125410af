//! Nodes and scheduling on the local platform. Every pod runs on this one host, but the store
//! holds Node objects as a cluster does: `local` always, and any a user applies (with
//! `topology.kubernetes.io/region`/`zone` or the older `failure-domain.beta.kubernetes.io/*`
//! labels, which is how pods get a locality). A new pod is bound to a node as the Kubernetes
//! scheduler would: one its `nodeSelector` and required node affinity accept, not cordoned
//! (`spec.unschedulable`), with the fewest pods; a pod no node accepts stays Pending with
//! the scheduler's `PodScheduled: False` condition, until a node that fits appears.

use std::collections::BTreeMap;

use istio_config::object::{Object, TypeKey};
use istio_config::store::Store;
use serde_json::{json, Value};

use crate::net;
use crate::objects::{self, labels, string_map};

/// The node every installation has.
pub const DEFAULT_NODE: &str = "local";

pub fn nodes() -> TypeKey {
    objects::kind("", "Node")
}

/// Creates the `local` Node unless it exists.
pub(crate) async fn ensure_default_node(store: &dyn Store) -> anyhow::Result<()> {
    let key = objects::key("", "Node", "", DEFAULT_NODE);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let node = objects::from_json(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": DEFAULT_NODE, "labels": {
            "kubernetes.io/hostname": DEFAULT_NODE,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
        }},
        "status": {"addresses": [{"type": "InternalIP", "address": net::HOST_ADDRESS.to_string()}]},
    }))?;
    store.apply(node).await?;
    Ok(())
}

/// The node a pod runs on (`spec.nodeName`), if it was bound.
pub(crate) fn node_of(pod: &Object) -> Option<&str> {
    pod.spec().get("nodeName").and_then(Value::as_str).filter(|name| !name.is_empty())
}

/// Why no node takes a pod, in the scheduler's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unschedulable(pub String);

/// The node to bind `pod` to, among `nodes`, given the `pods` already bound.
pub(crate) fn schedule(pod: &Object, nodes: &[Object], pods: &[Object]) -> Result<String, Unschedulable> {
    let selector = string_map(pod.spec().get("nodeSelector"));
    let terms = pod
        .spec()
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for bound in pods {
        if let Some(node) = node_of(bound) {
            *load.entry(node).or_default() += 1;
        }
    }
    let (mut cordoned, mut unmatched) = (0, 0);
    let mut fitting: Vec<&Object> = Vec::new();
    for node in nodes {
        if node.spec().get("unschedulable").and_then(Value::as_bool) == Some(true) {
            cordoned += 1;
            continue;
        }
        let node_labels = labels(node);
        let selected = selector.iter().all(|(key, value)| node_labels.get(key) == Some(value));
        // Terms are ORed; a term's expressions are ANDed.
        let affine = terms.is_empty() || terms.iter().any(|term| term_matches(term, &node_labels));
        if selected && affine {
            fitting.push(node);
        } else {
            unmatched += 1;
        }
    }
    match fitting.into_iter().min_by_key(|node| (load.get(node.name()).copied().unwrap_or(0), node.name().to_string()))
    {
        Some(node) => Ok(node.name().to_string()),
        None => {
            let mut reasons = Vec::new();
            if unmatched > 0 {
                reasons.push(format!("{unmatched} node(s) didn't match node selector"));
            }
            if cordoned > 0 {
                reasons.push(format!("{cordoned} node(s) were unschedulable"));
            }
            Err(Unschedulable(format!("0/{} nodes are available: {}.", nodes.len(), reasons.join(", "))))
        }
    }
}

fn term_matches(term: &Value, labels: &BTreeMap<String, String>) -> bool {
    let expressions = term.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
    expressions.iter().all(|expression| {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let value = labels.get(key).map(String::as_str);
        match expression.get("operator").and_then(Value::as_str).unwrap_or_default() {
            "In" => value.is_some_and(|value| values.contains(&value)),
            "NotIn" => value.is_none_or(|value| !values.contains(&value)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" | "Lt" => {
                let (Some(have), Some(bound)) =
                    (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok()))
                else {
                    return false;
                };
                if expression["operator"] == "Gt" {
                    have > bound
                } else {
                    have < bound
                }
            }
            _ => false,
        }
    })
}

/// The status of a pod no node takes.
pub(crate) fn pending_status(reason: &Unschedulable) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason.0}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Object {
        serde_json::from_value(value).expect("object")
    }

    fn node(name: &str, zone: &str) -> Object {
        object(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/region": "region1", "topology.kubernetes.io/zone": zone}}}))
    }

    fn pod(name: &str, spec: Value) -> Object {
        object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}),
        )
    }

    #[test]
    fn selectors_and_affinity_pick_the_node_and_load_breaks_ties() {
        let nodes = [node("n1", "zone1"), node("n2", "zone2"), node("n3", "zone2")];
        let by_selector = pod("a", json!({"nodeSelector": {"topology.kubernetes.io/zone": "zone1"}}));
        assert_eq!(schedule(&by_selector, &nodes, &[]), Ok("n1".to_string()));
        let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone2"]}]}]}}}});
        let bound = [pod("b", json!({"nodeName": "n2"}))];
        assert_eq!(schedule(&pod("c", affinity), &nodes, &bound), Ok("n3".to_string()), "the emptier of two");
        assert_eq!(schedule(&pod("d", json!({})), &nodes, &bound), Ok("n1".to_string()));
    }

    #[test]
    fn a_pod_no_node_takes_says_why() {
        let mut cordoned = node("n2", "zone2");
        cordoned.body.insert("spec".into(), json!({"unschedulable": true}));
        let nodes = [node("n1", "zone1"), cordoned];
        let wanting = pod("a", json!({"nodeSelector": {"topology.kubernetes.io/zone": "zone9"}}));
        let Err(reason) = schedule(&wanting, &nodes, &[]) else { panic!("no node fits") };
        assert_eq!(
            reason.0,
            "0/2 nodes are available: 1 node(s) didn't match node selector, 1 node(s) were unschedulable."
        );
        assert_eq!(pending_status(&reason)["conditions"][0]["reason"], "Unschedulable");
    }

    #[test]
    fn match_expressions_follow_kubernetes_operators() {
        let labels: BTreeMap<String, String> =
            [("zone".to_string(), "z1".to_string()), ("rank".to_string(), "5".to_string())].into_iter().collect();
        let term = |op: &str, key: &str, values: &[&str]| json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]});
        assert!(term_matches(&term("In", "zone", &["z1", "z2"]), &labels));
        assert!(!term_matches(&term("NotIn", "zone", &["z1"]), &labels));
        assert!(term_matches(&term("NotIn", "missing", &["x"]), &labels));
        assert!(term_matches(&term("Exists", "zone", &[]), &labels));
        assert!(term_matches(&term("DoesNotExist", "missing", &[]), &labels));
        assert!(term_matches(&term("Gt", "rank", &["4"]), &labels));
        assert!(!term_matches(&term("Lt", "rank", &["4"]), &labels));
    }
}
