//! The gateway charts as an installation renders them: the manifests under `install/gateways/`
//! with the values that change them, applied to the parsed objects (never by editing text).
//!
//! - `values.global.proxy.envoyBinary`: the agents run Envoy (`--binaryPath`), as sidecars do;
//! - `values.gateways.<gateway>.sds.enabled` (1.4's "Secure Gateways (SDS)" switch): the pod gets
//!   1.4's `ingress-sds` container, the node agent serving the namespace's Secrets on
//!   `/var/run/ingress_gateway/sds` (an `emptyDir` both containers mount), the proxy announces
//!   `ISTIO_META_USER_SDS=true` so Pilot sends `credentialName` certificates over SDS, and a Role
//!   lets the gateway's account read the Secrets.
//! - `values.gateways.<gateway>.secretVolumes` (a list of `name`, `secretName`, `mountPath`):
//!   the Secrets mounted into the gateway besides its workload certificates, replacing the
//!   chart's (as the egress TLS-origination task mounts nginx's client certificates).

use anyhow::Context;
use serde_json::{json, Value};

/// The image of the gateway's SDS container (1.4's `node-agent-k8s`).
pub(crate) const SDS_IMAGE: &str = "docker.io/istio/node-agent-k8s:1.4.10";
/// The volume both containers share for the socket, and where they mount it.
const SDS_VOLUME: &str = "ingressgatewaysdsudspath";
const SDS_MOUNT: &str = "/var/run/ingress_gateway";

/// What an installation changes in a gateway chart.
#[derive(Debug, Clone, Default)]
pub(crate) struct GatewayValues<'a> {
    /// The Envoy path inside the proxy container, when the agents run Envoy.
    pub(crate) envoy_path: Option<&'a str>,
    /// `values.gateways`, by gateway name (`istio-ingressgateway`, …).
    pub(crate) gateways: Option<&'a Value>,
}

impl GatewayValues<'_> {
    fn sds_enabled(&self, gateway: &str) -> bool {
        self.gateways.and_then(|values| values[gateway]["sds"]["enabled"].as_bool()).unwrap_or(false)
    }

    /// The `secretVolumes` listed for the gateway: (volume, Secret, mount path) each.
    fn secret_volumes(&self, gateway: &str) -> anyhow::Result<Option<Vec<(String, String, String)>>> {
        let Some(listed) = self.gateways.map(|values| &values[gateway]["secretVolumes"]).filter(|v| !v.is_null())
        else {
            return Ok(None);
        };
        let at = format!("values.gateways.{gateway}.secretVolumes");
        let entries = listed.as_array().with_context(|| format!("{at}: not a list"))?;
        let mut volumes = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let field = |name: &str| {
                entry[name].as_str().filter(|text| !text.is_empty()).map(str::to_string).with_context(|| {
                    format!("{at}[{index}]: needs {name} (each entry has name, secretName and mountPath)")
                })
            };
            volumes.push((field("name")?, field("secretName")?, field("mountPath")?));
        }
        Ok(Some(volumes))
    }
}

/// The chart's objects (`text`, a multi-document manifest) with `values` applied, as one
/// manifest again.
pub(crate) fn render(text: &str, origin: &str, values: &GatewayValues<'_>) -> anyhow::Result<String> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let object: Value = serde::Deserialize::deserialize(document)
            .map_err(|error| anyhow::anyhow!("{origin}: not a YAML manifest: {error}"))?;
        if object.is_null() {
            continue;
        }
        documents.push(object);
    }
    let mut extra = Vec::new();
    for object in &mut documents {
        if object["kind"] != "Deployment" {
            continue;
        }
        let gateway = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("istio-system").to_string();
        let pod = &mut object["spec"]["template"]["spec"];
        if let Some(envoy) = values.envoy_path {
            for container in proxy_containers(pod) {
                add_binary_path(container, envoy);
            }
        }
        if let Some(listed) = values.secret_volumes(&gateway).with_context(|| origin.to_string())? {
            replace_secret_volumes(pod, &listed);
        }
        if values.sds_enabled(&gateway) {
            add_sds_agent(pod);
            let account = pod["serviceAccountName"].as_str().unwrap_or("default").to_string();
            extra.extend(secret_reader_role(&gateway, &namespace, &account));
        }
    }
    documents.extend(extra);
    let rendered: Result<Vec<String>, _> = documents.iter().map(serde_yaml::to_string).collect();
    Ok(rendered.map_err(|error| anyhow::anyhow!("{origin}: {error}"))?.join("---\n"))
}

/// The workload-certificate volume every gateway keeps.
const WORKLOAD_CERTS_VOLUME: &str = "istio-certs";

/// The pod's Secret volumes (but its workload certificates) and their mounts replaced by
/// `listed`, mounted read-only into the proxy, each Secret optional, as 1.4's chart does.
fn replace_secret_volumes(pod: &mut Value, listed: &[(String, String, String)]) {
    let replaced: Vec<String> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|volume| volume.get("secret").is_some() && volume["name"] != WORKLOAD_CERTS_VOLUME)
        .filter_map(|volume| volume["name"].as_str().map(str::to_string))
        .collect();
    let dropped = |item: &Value| item["name"].as_str().is_some_and(|name| replaced.iter().any(|r| r == name));
    if let Some(volumes) = pod["volumes"].as_array_mut() {
        volumes.retain(|volume| !dropped(volume));
    }
    for (name, secret, _) in listed {
        push(pod, "volumes", json!({"name": name, "secret": {"secretName": secret, "optional": true}}));
    }
    for container in proxy_containers(pod) {
        if let Some(mounts) = container["volumeMounts"].as_array_mut() {
            mounts.retain(|mount| !dropped(mount));
        }
        for (name, _, mount) in listed {
            push(container, "volumeMounts", json!({"name": name, "mountPath": mount, "readOnly": true}));
        }
    }
}

fn proxy_containers(pod: &mut Value) -> impl Iterator<Item = &mut Value> {
    pod["containers"].as_array_mut().into_iter().flatten().filter(|container| container["name"] == "istio-proxy")
}

/// `--binaryPath PATH` right after `proxy router`, as the sidecars' agents get it.
fn add_binary_path(container: &mut Value, envoy: &str) {
    let Some(args) = container["args"].as_array_mut() else { return };
    let at = args.iter().position(|arg| arg == "router").map_or(args.len(), |position| position + 1);
    args.splice(at..at, [json!("--binaryPath"), json!(envoy)]);
}

fn push(container: &mut Value, field: &str, item: Value) {
    match container[field].as_array_mut() {
        Some(items) => items.push(item),
        None => container[field] = json!([item]),
    }
}

/// 1.4's `ingress-sds` container, the socket volume and the proxy's `USER_SDS`.
fn add_sds_agent(pod: &mut Value) {
    let mount = json!({"name": SDS_VOLUME, "mountPath": SDS_MOUNT});
    for container in proxy_containers(pod) {
        push(container, "env", json!({"name": "ISTIO_META_USER_SDS", "value": "true"}));
        push(container, "volumeMounts", mount.clone());
    }
    let agent = json!({
        "name": "ingress-sds",
        "image": SDS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "ENABLE_WORKLOAD_SDS", "value": "false"},
            {"name": "ENABLE_INGRESS_GATEWAY_SDS", "value": "true"},
            {"name": "INGRESS_GATEWAY_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        ],
        "volumeMounts": [mount],
    });
    if let Some(containers) = pod["containers"].as_array_mut() {
        containers.insert(0, agent);
    }
    push(pod, "volumes", json!({"name": SDS_VOLUME, "emptyDir": {}}));
}

/// The Role and RoleBinding that let the gateway's account read its namespace's Secrets (1.4's
/// `<gateway>-sds`).
fn secret_reader_role(gateway: &str, namespace: &str, account: &str) -> [Value; 2] {
    let name = format!("{gateway}-sds");
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const INGRESS: &str = include_str!("../../../install/gateways/ingressgateway.yaml");

    fn objects(text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
            .collect()
    }

    fn pod_of(objects: &[Value]) -> Value {
        objects.iter().find(|o| o["kind"] == "Deployment").expect("deployment")["spec"]["template"]["spec"].clone()
    }

    #[test]
    fn without_values_the_chart_is_unchanged() {
        let rendered = render(INGRESS, "ingress", &GatewayValues::default()).expect("render");
        let before: Vec<Value> = objects(INGRESS).into_iter().filter(|o| !o.is_null()).collect();
        assert_eq!(objects(&rendered), before);
    }

    #[test]
    fn envoy_and_sds_values_change_the_deployment() {
        let gateways = json!({"istio-ingressgateway": {"sds": {"enabled": true}}});
        let values = GatewayValues { envoy_path: Some("/usr/local/bin/envoy"), gateways: Some(&gateways) };
        let rendered = objects(&render(INGRESS, "ingress", &values).expect("render"));
        let pod = pod_of(&rendered);
        let names: Vec<&str> =
            pod["containers"].as_array().expect("containers").iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["ingress-sds", "istio-proxy"]);
        let proxy = &pod["containers"][1];
        let args: Vec<&str> = proxy["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
        assert_eq!(args[..4], ["proxy", "router", "--binaryPath", "/usr/local/bin/envoy"]);
        assert!(proxy["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "ISTIO_META_USER_SDS", "value": "true"})));
        let mount = json!({"name": SDS_VOLUME, "mountPath": SDS_MOUNT});
        assert!(proxy["volumeMounts"].as_array().expect("mounts").contains(&mount));
        assert_eq!(pod["containers"][0]["volumeMounts"][0], mount);
        assert!(pod["volumes"].as_array().expect("volumes").contains(&json!({"name": SDS_VOLUME, "emptyDir": {}})));
        let kinds: Vec<&str> = rendered.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert!(kinds.ends_with(&["Role", "RoleBinding"]), "{kinds:?}");
        assert_eq!(rendered.last().expect("binding")["subjects"][0]["name"], "istio-ingressgateway-service-account");

        // Another gateway's switch leaves this one alone.
        let other = json!({"istio-egressgateway": {"sds": {"enabled": true}}});
        let values = GatewayValues { envoy_path: None, gateways: Some(&other) };
        let pod = pod_of(&objects(&render(INGRESS, "ingress", &values).expect("render")));
        assert_eq!(pod["containers"].as_array().expect("containers").len(), 1);
    }

    #[test]
    fn secret_volumes_replace_the_charts_certificate_volumes() {
        let listed =
            |name: &str, secret: &str, path: &str| json!({"name": name, "secretName": secret, "mountPath": path});
        let gateways = json!({"istio-ingressgateway": {"secretVolumes": [
            listed("ingressgateway-certs", "istio-ingressgateway-certs", "/etc/istio/ingressgateway-certs"),
            listed("nginx-client-certs", "nginx-client-certs", "/etc/nginx-client-certs"),
        ]}});
        let values = GatewayValues { envoy_path: None, gateways: Some(&gateways) };
        let pod = pod_of(&objects(&render(INGRESS, "ingress", &values).expect("render")));
        let volumes: Vec<&str> =
            pod["volumes"].as_array().expect("volumes").iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(volumes, ["istio-envoy", "istio-certs", "ingressgateway-certs", "nginx-client-certs"]);
        let proxy = &pod["containers"][0];
        let mounts: Vec<(&str, &str)> = proxy["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter_map(|m| Some((m["name"].as_str()?, m["mountPath"].as_str()?)))
            .collect();
        assert!(mounts.contains(&("nginx-client-certs", "/etc/nginx-client-certs")), "{mounts:?}");
        assert!(!mounts.iter().any(|(name, _)| *name == "ingressgateway-ca-certs"), "{mounts:?}");
        assert_eq!(pod["volumes"][3]["secret"], json!({"secretName": "nginx-client-certs", "optional": true}));

        let broken = json!({"istio-ingressgateway": {"secretVolumes": [{"name": "x", "mountPath": "/x"}]}});
        let values = GatewayValues { envoy_path: None, gateways: Some(&broken) };
        let error = format!("{:#}", render(INGRESS, "ingress", &values).unwrap_err());
        assert!(error.contains("values.gateways.istio-ingressgateway.secretVolumes[0]: needs secretName"), "{error}");
    }
}
