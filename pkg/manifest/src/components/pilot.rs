//! The `Pilot` component: the `istio-pilot` Deployment, Service, account and role, with 1.4's
//! autoscaler and disruption budget. 1.4 ran an `istio-proxy` beside `discovery` to terminate
//! mutual TLS on 15011; here Pilot serves 15011 itself when the control plane is secured
//! (`values.global.controlPlaneSecurityEnabled`), so there is no second container.

use k8s_openapi::api::core::v1::Probe;
use serde_json::json;

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, Settings, Workload};

const COMPONENT: &str = "Pilot";
const NAME: &str = "istio-pilot";
const ACCOUNT: &str = "istio-pilot-service-account";

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let secured = install.bool_value("global.controlPlaneSecurityEnabled", false);
    let own = [("app", "pilot"), ("istio", "pilot")];
    let settings = Settings { feature: "trafficManagement", component: "pilot", values: "pilot" };

    let registries = if install.enabled("configManagement") { "MCP" } else { "Kubernetes" };
    let mut args = k8s::strings(&[
        "discovery",
        "--meshConfig",
        "/etc/istio/config/mesh",
        "--monitoringAddr=:15014",
        "--domain",
        "cluster.local",
        "--registries",
        registries,
        "--certDir",
        "/etc/certs",
    ]);
    if secured {
        args.extend(k8s::strings(&["--secureGrpcAddr", ":15011"]));
    }
    let sampling = install.value("pilot.traceSampling").as_f64().unwrap_or(1.0);
    let mut env = vec![
        k8s::env_field("POD_NAME", "metadata.name"),
        k8s::env_field("POD_NAMESPACE", "metadata.namespace"),
        k8s::env("PILOT_PUSH_THROTTLE", "100"),
        k8s::env("PILOT_TRACE_SAMPLING", &sampling.to_string()),
        k8s::env("PILOT_ENABLE_PROTOCOL_SNIFFING_FOR_OUTBOUND", "true"),
        k8s::env("PILOT_ENABLE_PROTOCOL_SNIFFING_FOR_INBOUND", "false"),
    ];
    // 1.4's `pilot.env`: more environment for the discovery container.
    if let Some(extra) = install.value("pilot.env").as_object() {
        for (name, value) in extra {
            env.push(k8s::env(name, &value.as_str().map_or_else(|| value.to_string(), str::to_string)));
        }
    }
    let mut ports = vec![k8s::port(8080), k8s::port(15010), k8s::port(15014)];
    if secured {
        ports.push(k8s::port(15011));
    }
    let mut discovery = k8s::container("discovery", install.image("pilot"));
    discovery.args = Some(args);
    discovery.env = Some(env);
    discovery.ports = Some(ports);
    discovery.readiness_probe =
        Some(Probe { timeout_seconds: Some(5), ..k8s::http_probe("/ready", 8080, Some(5), Some(5)) });
    discovery.resources = Some(settings.resources(install, json!({"requests": {"cpu": "500m", "memory": "2048Mi"}}))?);
    discovery.volume_mounts = Some(vec![
        k8s::mount("config-volume", "/etc/istio/config", false),
        k8s::mount("istio-certs", "/etc/certs", true),
    ]);
    let mut pod = control_pod(Some(ACCOUNT), vec![discovery]);
    pod.volumes = Some(vec![
        k8s::config_map_volume("config-volume", "istio", &[]),
        k8s::secret_volume("istio-certs", &format!("istio.{ACCOUNT}"), true),
    ]);

    let labels_all = chart_labels("pilot", &own);
    let mut manifests = Workload {
        component: COMPONENT,
        settings,
        name: NAME,
        namespace: namespace.clone(),
        labels: labels_all.clone(),
        selector: labels(&[("istio", "pilot")]),
        pod_labels: labels_all.clone(),
        pod,
        autoscaled_by_default: true,
        main_container: "discovery",
        budget: Some((labels_all.clone(), labels(&[("app", "pilot"), ("release", "istio"), ("istio", "pilot")]))),
        hpa_labels: chart_labels("pilot", &[("app", "pilot")]),
    }
    .manifests(install)?;

    let mut service_ports = vec![k8s::service_port("grpc-xds", 15010, None)];
    if secured {
        service_ports.push(k8s::service_port("https-xds", 15011, None));
    }
    service_ports.push(k8s::service_port("http-legacy-discovery", 8080, None));
    service_ports.push(k8s::service_port("http-monitoring", 15014, None));
    let service =
        k8s::service(k8s::meta(NAME, &namespace, labels_all.clone()), labels(&[("istio", "pilot")]), service_ports);
    let role = format!("istio-pilot-{namespace}");
    let account_labels = chart_labels("pilot", &[("app", "pilot")]);
    let mut objects = vec![k8s::to_value(&service)];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        &namespace,
        account_labels,
        &role,
        &role,
        vec![
            k8s::rule(&["config.istio.io"], &["*"], &["*"]),
            k8s::rule(&["rbac.istio.io"], &["*"], &["get", "watch", "list"]),
            k8s::rule(&["security.istio.io"], &["*"], &["get", "watch", "list"]),
            k8s::rule(&["networking.istio.io"], &["*"], &["*"]),
            k8s::rule(&["authentication.istio.io"], &["*"], &["*"]),
            k8s::rule(&["apiextensions.k8s.io"], &["customresourcedefinitions"], &["*"]),
            k8s::rule(&["extensions", "networking.k8s.io"], &["ingresses", "ingresses/status"], &["*"]),
            k8s::rule(&[""], &["configmaps"], &["create", "get", "list", "watch", "update"]),
            k8s::rule(&[""], &["endpoints", "pods", "services", "namespaces", "nodes"], &["get", "list", "watch"]),
            k8s::rule(&[""], &["secrets"], &["create", "get", "watch", "list", "update", "delete"]),
        ],
    ));
    manifests.extend(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }));
    Ok(manifests)
}
