//! `istioctl x kube-uninject`: takes the sidecar back out of workloads, as 1.4's did. Every pod
//! template loses its `*sidecar.istio.io*` annotations and is marked
//! `sidecar.istio.io/inject: "false"`; one that has an `istio-proxy` container also loses it,
//! the `istio-init` (or, with CNI, `istio-validation`) and `enable-core-dump` init containers,
//! the `istio-envoy` and `istio-certs` volumes, the DNS search domains that name `global`, and
//! (beyond 1.4's, which left it) the `security.istio.io/tlsMode` label, so that clients using
//! automatic mutual TLS stop sending it mTLS. Other kinds pass through unchanged.

use serde_json::{Map, Value};

use crate::inject::{pod_template_pointer, rewrite_documents, KubeInjectError};

const PROXY_CONTAINER: &str = "istio-proxy";
const INJECTED_INIT_CONTAINERS: [&str; 3] = ["istio-init", "istio-validation", "enable-core-dump"];
const INJECTED_VOLUMES: [&str; 2] = ["istio-envoy", "istio-certs"];
const SIDECAR_ANNOTATION_MARK: &str = "sidecar.istio.io";
const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Removes the first item of a named list whose `name` is `name`.
fn remove_named(list: Option<&mut Value>, name: &str) {
    if let Some(items) = list.and_then(Value::as_array_mut) {
        if let Some(index) = items.iter().position(|item| item.get("name").and_then(Value::as_str) == Some(name)) {
            items.remove(index);
        }
    }
}

/// Uninjects one object (a List's items each); returns whether it had a pod template.
pub fn uninject_object(object: &mut Value) -> bool {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind == "List" {
        let mut any = false;
        for item in object.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
            any |= uninject_object(item);
        }
        return any;
    }
    let Some(pointer) = pod_template_pointer(&kind) else { return false };
    let Some(Value::Object(template)) = object.pointer_mut(pointer) else { return false };

    let metadata = template.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Value::Object(annotations) = annotations {
            annotations.retain(|key, _| !key.contains(SIDECAR_ANNOTATION_MARK));
            annotations.insert(INJECT_ANNOTATION.to_string(), Value::String("false".to_string()));
        }
    }

    let injected = template.get("spec").and_then(|spec| spec.get("containers")).and_then(Value::as_array).is_some_and(
        |containers| containers.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER)),
    );
    if !injected {
        return true;
    }
    if let Some(Value::Object(labels)) = template.get_mut("metadata").and_then(|m| m.get_mut("labels")) {
        labels.remove(TLS_MODE_LABEL);
    }
    let Some(spec) = template.get_mut("spec") else { return true };
    for name in INJECTED_INIT_CONTAINERS {
        remove_named(spec.get_mut("initContainers"), name);
    }
    remove_named(spec.get_mut("containers"), PROXY_CONTAINER);
    for name in INJECTED_VOLUMES {
        remove_named(spec.get_mut("volumes"), name);
    }
    if let Some(searches) = spec.pointer_mut("/dnsConfig/searches").and_then(Value::as_array_mut) {
        searches.retain(|search| !search.as_str().is_some_and(|s| s.contains("global")));
    }
    // Lists the injection made that are now empty go, as they were absent before it.
    if let Value::Object(spec) = spec {
        for key in ["initContainers", "volumes"] {
            if spec.get(key).and_then(Value::as_array).is_some_and(Vec::is_empty) {
                spec.remove(key);
            }
        }
    }
    true
}

/// `istioctl x kube-uninject` on a YAML stream: each document uninjected and written back,
/// followed by `---`, as 1.4 wrote them; `origin` names the input in errors.
pub fn kube_uninject_yaml(text: &str, origin: &str) -> Result<String, KubeInjectError> {
    let documents = rewrite_documents(text, origin, |object| {
        uninject_object(object);
        Ok(())
    })?;
    Ok(documents.iter().map(|document| format!("{document}---\n")).collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::config::default_values;
    use crate::{Injector, InjectorConfig};

    fn injector(values: Value) -> Injector {
        Injector::new(InjectorConfig::default(), values, &json!({})).expect("injector")
    }

    fn pod_spec() -> Value {
        json!({"containers": [{"name": "hello", "image": "hello-go:1.0", "ports": [{"containerPort": 80, "name": "http"}]}]})
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "hello"}}, "spec": pod_spec()})
    }

    /// The workloads of 1.4.6's uninject table, one per kind.
    fn workloads() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "labels": {"app": "hello"}}, "spec": pod_spec()}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello"}, "spec": {"replicas": 7, "template": template()}}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "hello"}, "spec": {"template": template()}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "hello"}, "spec": {"template": template()}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "hello"}, "spec": {"serviceName": "hello", "template": template()}}),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "hello"}, "spec": {"template": template()}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"}, "spec": {"template": template()}}),
            json!({"apiVersion": "batch/v2alpha1", "kind": "CronJob", "metadata": {"name": "hello"},
                "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": template()}}}}),
            json!({"apiVersion": "batch/v2alpha1", "kind": "CronJob", "metadata": {"name": "hello", "labels": {"app": "hello"}},
                "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "hello"}}, "spec": {"template": template()}}}}),
            json!({"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig", "metadata": {"name": "hello"},
                "spec": {"replicas": 1, "template": template()}}),
            json!({"apiVersion": "v1", "kind": "List", "items": [
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello-v1"}, "spec": {"template": template()}}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello-v2"}, "spec": {"template": template()}}),
            ]}),
        ]
    }

    /// What uninjecting gives back: the workload, marked not to be injected.
    fn marked(mut workload: Value) -> Value {
        if workload["kind"] == "List" {
            for item in workload["items"].as_array_mut().unwrap() {
                *item = marked(item.clone());
            }
            return workload;
        }
        let pointer = pod_template_pointer(workload["kind"].as_str().unwrap()).unwrap();
        let template = workload.pointer_mut(pointer).unwrap();
        template["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "false"});
        workload
    }

    #[test]
    fn every_kind_comes_back_as_it_was_before_injection() {
        for workload in workloads() {
            let mut object = workload.clone();
            assert!(injector(default_values()).inject_object(&mut object).expect("inject"), "{workload}");
            assert_ne!(object, workload);
            assert!(uninject_object(&mut object));
            assert_eq!(object, marked(workload.clone()), "{}", workload["kind"]);
        }
    }

    #[test]
    fn the_core_dump_container_and_sidecar_annotations_go_too() {
        let mut values = default_values();
        values["global"]["proxy"]["enableCoreDump"] = json!(true);
        let workload = workloads().remove(1);
        let mut object = workload.clone();
        object["spec"]["template"]["metadata"]["annotations"] = json!({"traffic.sidecar.istio.io/includeInboundPorts": "80", "readiness.status.sidecar.istio.io/periodSeconds": "5"});
        injector(values).inject_object(&mut object).expect("inject");
        let init: Vec<&str> = object["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(init.contains(&"enable-core-dump"), "{init:?}");
        uninject_object(&mut object);
        assert_eq!(object, marked(workload));
    }

    #[test]
    fn uninjected_workloads_and_other_kinds() {
        // A workload without a sidecar keeps its spec and is only marked.
        let mut plain = workloads().remove(1);
        uninject_object(&mut plain);
        assert_eq!(plain, marked(workloads().remove(1)));
        // What has no pod template passes unchanged.
        let mut service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"}, "spec": {"ports": [{"port": 80}]}});
        let before = service.clone();
        assert!(!uninject_object(&mut service));
        assert_eq!(service, before);
    }

    #[test]
    fn streams_keep_every_document_and_global_search_domains_go() {
        let mut object = workloads().remove(0);
        injector(default_values()).inject_object(&mut object).expect("inject");
        object["spec"]["dnsConfig"] = json!({"searches": ["global", "ns.global", "svc.cluster.local"]});
        let text = format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: hello}}\n",
            serde_yaml::to_string(&object).unwrap()
        );
        let out = kube_uninject_yaml(&text, "in.yaml").expect("uninject");
        let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["spec"]["dnsConfig"]["searches"], json!(["svc.cluster.local"]));
        assert_eq!(documents[1]["kind"], "Service");
        assert!(out.ends_with("---\n"));
        let error = kube_uninject_yaml("a: [", "broken.yaml").unwrap_err().to_string();
        assert!(error.starts_with("broken.yaml: document 1: invalid YAML"), "{error}");
    }
}
