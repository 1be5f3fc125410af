//! Locality load balancing (1.4's operations guide), walked through as later versions' tasks
//! do it: four nodes in three regions, the helloworld sample in each, and a client in
//! region1/zone1. With outlier detection, the client stays in its own zone until that zone's
//! endpoint fails, then fails over zone by zone: to the other zone of its region, then to the
//! region `failover` names (region2), and only then to the last one. With `distribute`, its
//! requests split 70/20/10 over the localities the mesh config weighs.

use std::collections::BTreeMap;

use super::*;

/// The localities, as (node, region, zone, the zone label's name).
const LOCALITIES: [(&str, &str, &str); 4] = [
    ("region1", "zone1", BETA_ZONE),
    ("region1", "zone2", GA_ZONE),
    ("region2", "zone3", GA_ZONE),
    ("region3", "zone4", GA_ZONE),
];
const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const GA_ZONE: &str = "topology.kubernetes.io/zone";
const CLIENT: &str = "client-region1-zone1";
const CLUSTER: &str = "outbound|5000||helloworld.default.svc.cluster.local";

fn nodes_yaml() -> String {
    LOCALITIES
        .iter()
        .map(|(region, zone, zone_label)| {
            let region_label = zone_label.replace("/zone", "/region");
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{region}-{zone}\n  labels:\n    \
                 {region_label}: {region}\n    {zone_label}: {zone}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// helloworld as the sample defines its Service, and one Deployment per locality whose
/// version names the locality.
fn helloworld_yaml() -> String {
    let mut documents = vec!["apiVersion: v1
kind: Service
metadata:
  name: helloworld
  labels:
    app: helloworld
spec:
  ports:
  - port: 5000
    name: http
  selector:
    app: helloworld
"
    .to_string()];
    for (region, zone, zone_label) in LOCALITIES {
        documents.push(format!(
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: helloworld-{region}-{zone}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: helloworld
      version: {region}.{zone}
  template:
    metadata:
      labels:
        app: helloworld
        version: {region}.{zone}
    spec:
      nodeSelector:
        {zone_label}: {zone}
      containers:
      - name: helloworld
        image: docker.io/istio/examples-helloworld-v1
        env:
        - name: SERVICE_VERSION
          value: {region}.{zone}
        ports:
        - containerPort: 5000
"
        ));
    }
    // The client: the sleep sample on region1/zone1's node, with a Service, so that Pilot
    // knows its locality from the registry as 1.4 did.
    documents.push(format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {CLIENT}
spec:
  ports:
  - port: 80
    name: http
  selector:
    app: {CLIENT}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {CLIENT}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {CLIENT}
  template:
    metadata:
      labels:
        app: {CLIENT}
    spec:
      nodeSelector:
        {BETA_ZONE}: zone1
      containers:
      - name: sleep
        image: governmentpaas/curl-ssl
        command: [\"/bin/sleep\", \"3650d\"]
"
    ));
    documents.join("---\n")
}

/// Outlier detection, which failover needs, ejecting an endpoint on its first gateway error;
/// a new connection per request, so that a drained endpoint shows at once.
const DESTINATION_RULE: &str = "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: helloworld
spec:
  host: helloworld
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
      baseEjectionTime: 1m
      maxEjectionPercent: 100
";

/// Replaces the mesh config's `localityLbSetting` in the `istio` ConfigMap (`None` restores
/// the install's default, the setting with nothing in it).
pub(crate) fn set_locality_lb_setting(mesh: &LocalMesh, setting: Option<serde_json::Value>) {
    let (code, json, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "json"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let mut config_map: serde_json::Value = serde_json::from_str(&json).expect("ConfigMap JSON");
    let text = config_map["data"]["mesh"].as_str().expect("the mesh key").to_string();
    let mut mesh_config: serde_json::Value = serde_yaml::from_str(&text).expect("mesh config YAML");
    let wanted = setting.unwrap_or_else(|| serde_json::json!({}));
    if mesh_config["localityLbSetting"] == wanted {
        return;
    }
    mesh_config["localityLbSetting"] = wanted;
    config_map["data"]["mesh"] = serde_json::Value::String(serde_yaml::to_string(&mesh_config).expect("YAML"));
    mesh.apply_yaml(&config_map.to_string());
}

/// The client proxy's `/clusters` lines for helloworld's endpoints (health, locality, priority).
fn client_view(mesh: &LocalMesh) -> String {
    let clusters = mesh.proxy_admin(CLIENT, "default", "clusters");
    clusters.lines().filter(|line| line.starts_with(CLUSTER)).collect::<Vec<_>>().join("\n")
}

/// Where the client's next `/hello` went: the version (locality) that answered, or the failure.
fn hello(mesh: &LocalMesh) -> String {
    let (code, out, err) =
        mesh.try_exec(CLIENT, "sleep", &["curl", "-s", "--max-time", "5", "http://helloworld:5000/hello"]);
    if code != 0 {
        return format!("curl failed ({code}): {err}");
    }
    out.strip_prefix("Hello version: ")
        .and_then(|rest| rest.split(',').next())
        .map_or_else(|| format!("not a greeting: {out}"), str::to_string)
}

/// Waits until `streak` answers in a row come from `locality`.
fn settles_on(mesh: &LocalMesh, locality: &str, streak: usize) {
    until(&format!("{streak} answers in a row from {locality}"), Duration::from_secs(60), || {
        for _ in 0..streak {
            let answer = hello(mesh);
            if answer != locality {
                return Err(format!("answered by {answer}"));
            }
        }
        Ok(())
    });
}

/// Stops the helloworld sidecar of `locality` from accepting connections (Envoy's
/// `drain_listeners`, as the later task does it); the pod stays ready, so only the client's
/// outlier detection can tell.
fn drain(mesh: &LocalMesh, region: &str, zone: &str) {
    mesh.exec(
        &format!("helloworld-{region}-{zone}"),
        "istio-proxy",
        &["pilot-agent", "request", "POST", "drain_listeners"],
    );
}

/// The priorities the client's proxy holds for helloworld's endpoints, by locality, from
/// `istioctl proxy-config endpoint -o json`.
fn client_priorities(mesh: &LocalMesh) -> Result<BTreeMap<String, u64>, String> {
    let pod = mesh.pod_name("app", CLIENT).ok_or("no client pod")?;
    let (code, out, err) =
        mesh.istioctl(&["proxy-config", "endpoint", &format!("{pod}.default"), "--cluster", CLUSTER, "-o", "json"]);
    if code != 0 {
        return Err(format!("proxy-config endpoint: {err}"));
    }
    let hosts: serde_json::Value = serde_json::from_str(&out).map_err(|error| format!("{error}: {out}"))?;
    let mut priorities = BTreeMap::new();
    for entry in hosts.as_array().into_iter().flatten() {
        let locality = &entry["host"]["locality"];
        let name = format!("{}.{}", locality["region"].as_str().unwrap_or(""), locality["zone"].as_str().unwrap_or(""));
        priorities.insert(name, entry["host"]["priority"].as_u64().unwrap_or(0));
    }
    Ok(priorities)
}

pub(crate) fn locality_load_balancing(mesh: &LocalMesh) {
    mesh.apply_yaml(&nodes_yaml());
    mesh.apply_yaml(&helloworld_yaml());
    mesh.wait_ready("helloworld", "default", 4);
    mesh.wait_ready(CLIENT, "default", 1);
    // Each pod landed on its locality's node.
    for pod in mesh.pods().iter().filter(|pod| pod["metadata"]["labels"]["app"] == "helloworld") {
        let version = pod["metadata"]["labels"]["version"].as_str().unwrap_or_default().replace('.', "-");
        assert_eq!(pod["spec"]["nodeName"], format!("node-{version}"), "{}", pod["metadata"]["name"]);
    }

    // Failover: region1 fails over to region2 before region3.
    set_locality_lb_setting(mesh, Some(serde_json::json!({"failover": [{"from": "region1", "to": "region2"}]})));
    mesh.apply_yaml(DESTINATION_RULE);
    let expected: BTreeMap<String, u64> =
        [("region1.zone1", 0), ("region1.zone2", 1), ("region2.zone3", 2), ("region3.zone4", 3)]
            .into_iter()
            .map(|(locality, priority)| (locality.to_string(), priority))
            .collect();
    until("the client's proxy holds the failover priorities", Duration::from_secs(60), || {
        expect(client_priorities(mesh)?, expected.clone())
    });
    settles_on(mesh, "region1.zone1", 10);
    drain(mesh, "region1", "zone1");
    settles_on(mesh, "region1.zone2", 10);
    drain(mesh, "region1", "zone2");
    settles_on(mesh, "region2.zone3", 10);
    drain(mesh, "region2", "zone3");
    settles_on(mesh, "region3.zone4", 10);
    let ejected = mesh.proxy_stat(CLIENT, &format!("cluster.{CLUSTER}.outlier_detection.ejections_active"));
    assert_eq!(ejected, 3, "the three drained endpoints are ejected");

    // Weighted distribution, over fresh helloworld pods.
    mesh.delete("destinationrules", "helloworld");
    for pod in mesh.pods().iter().filter(|pod| pod["metadata"]["labels"]["app"] == "helloworld") {
        mesh.delete("pods", pod["metadata"]["name"].as_str().unwrap_or_default());
    }
    mesh.wait_ready("helloworld", "default", 4);
    set_locality_lb_setting(
        mesh,
        Some(serde_json::json!({"distribute": [{"from": "region1/zone1/*",
            "to": {"region1/zone1/*": 70, "region1/zone2/*": 20, "region3/zone4/*": 10}}]})),
    );
    // Locality weights take effect with outlier detection in the rule, as in 1.4.
    mesh.apply_yaml(DESTINATION_RULE);
    // Until the weights hold: region2's endpoint left out, and region1/zone1's taking most (a
    // request that reached a new pod before its app listened gets it ejected for a while).
    let started = std::time::Instant::now();
    until("the weights to take effect", Duration::from_secs(150), || {
        let answers: Vec<String> = (0..20).map(|_| hello(mesh)).collect();
        let own_zone = answers.iter().filter(|answer| *answer == "region1.zone1").count();
        if own_zone < 8 || answers.iter().any(|answer| answer == "region2.zone3" || !answer.starts_with("region")) {
            let mut message = format!("answers: {answers:?}");
            if started.elapsed() > Duration::from_secs(120) {
                // For the failure's message: what region1/zone1's endpoint answers directly,
                // and how the client's proxy sees the endpoints.
                let ip = mesh
                    .pods()
                    .iter()
                    .find(|pod| pod["metadata"]["labels"]["version"] == "region1.zone1")
                    .and_then(|pod| pod["status"]["podIP"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let url = format!("http://{ip}:5000/hello");
                let direct = mesh.try_exec(CLIENT, "sleep", &["curl", "-s", "--max-time", "5", &url]);
                message = format!("{message}\n{url}: {direct:?}\nthe client's proxy:\n{}", client_view(mesh));
            }
            return Err(message);
        }
        Ok(())
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..200 {
        *counts.entry(hello(mesh)).or_default() += 1;
    }
    let share = |locality: &str| counts.get(locality).copied().unwrap_or(0) as f64 / 2.0;
    assert!(
        (58.0..=82.0).contains(&share("region1.zone1")),
        "about 70 % to region1/zone1: {counts:?}\n{}",
        client_view(mesh)
    );
    assert!(
        (10.0..=30.0).contains(&share("region1.zone2")),
        "about 20 % to region1/zone2: {counts:?}\n{}",
        client_view(mesh)
    );
    assert!(
        (3.0..=18.0).contains(&share("region3.zone4")),
        "about 10 % to region3/zone4: {counts:?}\n{}",
        client_view(mesh)
    );
    assert_eq!(counts.values().sum::<usize>(), 200, "every request answered: {counts:?}");
    remove(mesh);
}

/// Takes the task's objects and setting away; `reset` calls it when a failed run left any.
pub(crate) fn remove(mesh: &LocalMesh) {
    set_locality_lb_setting(mesh, None);
    mesh.delete("destinationrules", "helloworld");
    for (region, zone, _) in LOCALITIES {
        mesh.delete("deployments", &format!("helloworld-{region}-{zone}"));
    }
    for (kind, name) in [("services", "helloworld"), ("deployments", CLIENT), ("services", CLIENT)] {
        mesh.delete(kind, name);
    }
    for (region, zone, _) in LOCALITIES {
        mesh.delete("nodes", &format!("node-{region}-{zone}"));
    }
}

/// Whether a run of the task left anything behind.
pub(crate) fn left_behind(mesh: &LocalMesh) -> bool {
    mesh.names("deployments").iter().any(|name| name.starts_with("helloworld-") || name == CLIENT)
        || !mesh.names("nodes").iter().all(|name| name == "local")
}
