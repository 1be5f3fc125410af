//! The injection as an RFC 6902 JSONPatch against the pod the API server sent, in the shape
//! Istio 1.4's webhook produced: containers, volumes and pull secrets appended (`/-`), the
//! first item of an absent list added as a one-element list, the DNS config set, rewritten
//! probes replaced, and
//! annotations and labels (`security.istio.io/tlsMode`) added one by one.

use serde_json::{json, Value};

use crate::inject::Injection;

/// The JSONPatch operations that turn `pod` into the injected pod.
pub fn create_patch(pod: &Value, injection: &Injection) -> Vec<Value> {
    let spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut patch = Vec::new();
    append_items(&mut patch, &spec, "initContainers", &injection.sidecar.init_containers);
    append_items(&mut patch, &spec, "containers", &injection.sidecar.containers);
    append_items(&mut patch, &spec, "volumes", &injection.sidecar.volumes);
    append_items(&mut patch, &spec, "imagePullSecrets", &injection.sidecar.image_pull_secrets);
    if let Some(dns_config) = &injection.sidecar.dns_config {
        patch.push(json!({"op": "add", "path": "/spec/dnsConfig", "value": dns_config}));
    }
    for (index, field, probe) in &injection.probe_rewrites {
        patch.push(json!({"op": "replace", "path": format!("/spec/containers/{index}/{field}"), "value": probe}));
    }
    set_map_entries(&mut patch, pod, "annotations", &injection.annotations);
    set_map_entries(&mut patch, pod, "labels", &injection.labels);
    patch
}

/// Sets `entries` in the pod's `metadata.FIELD` map: the whole map when there is none, else
/// each entry added (or replaced).
fn set_map_entries(
    patch: &mut Vec<Value>,
    pod: &Value,
    field: &str,
    entries: &std::collections::BTreeMap<String, String>,
) {
    if entries.is_empty() {
        return;
    }
    match pod.pointer(&format!("/metadata/{field}")).and_then(Value::as_object) {
        None => patch.push(json!({"op": "add", "path": format!("/metadata/{field}"), "value": entries})),
        Some(existing) => {
            for (key, value) in entries {
                let op = if existing.contains_key(key) { "replace" } else { "add" };
                patch.push(
                    json!({"op": op, "path": format!("/metadata/{field}/{}", escape_pointer(key)), "value": value}),
                );
            }
        }
    }
}

fn append_items(patch: &mut Vec<Value>, spec: &Value, field: &str, items: &[Value]) {
    let mut present = spec.get(field).and_then(Value::as_array).is_some_and(|list| !list.is_empty());
    for item in items {
        if present {
            patch.push(json!({"op": "add", "path": format!("/spec/{field}/-"), "value": item}));
        } else {
            patch.push(json!({"op": "add", "path": format!("/spec/{field}"), "value": [item]}));
            present = true;
        }
    }
}

/// Escapes a key for a JSON pointer (`~` → `~0`, `/` → `~1`).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_values, InjectorConfig};
    use crate::inject::{apply, Injector};
    use crate::template::Workload;

    #[test]
    fn the_patch_gives_the_same_pod_as_applying_the_injection() {
        let mut values = default_values();
        values["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"] = json!(true);
        let injector = Injector::new(InjectorConfig::default(), values, &json!({})).expect("injector");
        for pod in [
            json!({"metadata": {"name": "a", "labels": {"app": "a"}},
                   "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}],
                            "livenessProbe": {"httpGet": {"path": "/l", "port": 80}}}]}}),
            json!({"metadata": {"name": "b", "annotations": {"x/y": "1", "sidecar.istio.io/interceptionMode": "REDIRECT"}},
                   "spec": {"initContainers": [{"name": "setup"}], "volumes": [{"name": "data"}],
                            "containers": [{"name": "b"}]}}),
        ] {
            let workload = Workload {
                meta: &pod["metadata"],
                spec: &pod["spec"],
                name: "w".into(),
                namespace: "default".into(),
                api_version: "v1".into(),
                kind: "Pod".into(),
            };
            let injection = injector.injection(&workload).expect("injection");
            let mut expected = pod.clone();
            apply(&mut expected, &injection);
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(create_patch(&pod, &injection))).expect("patch");
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch).expect("applies");
            assert_eq!(patched, expected);
            assert_eq!(patched["metadata"]["labels"]["security.istio.io/tlsMode"], "istio", "1.4's label");
        }
    }

    #[test]
    fn pointer_keys_are_escaped() {
        assert_eq!(escape_pointer("sidecar.istio.io/status"), "sidecar.istio.io~1status");
        assert_eq!(escape_pointer("a~b"), "a~0b");
    }
}
