//! The `MeshConsole` addon (`values.meshConsole.enabled`, off in every profile): this mesh's own
//! console (service graph, dashboards, traces, config status), which on the local platform
//! stands in for Grafana and Kiali. On Kubernetes it runs beside them as `istio-console` on
//! 20001, reading Prometheus, Pilot's debug API and a Zipkin API at the addresses 1.4's
//! addons had (`http://prometheus:9090`, `http://istio-pilot:8080`, `http://zipkin:9411`;
//! Jaeger's Zipkin port only takes spans in, so the traces page says it has none to show).

use crate::addon::{addon_deployment, addon_pod};
use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;

const COMPONENT: &str = "MeshConsole";
const NAME: &str = "istio-console";
const PORT: i32 = 20001;

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let all = chart_labels("console", &[("app", NAME)]);
    let mut console = k8s::container("console", install.image("console"));
    let address = |key: &str, default: &str| install.str_value(&format!("meshConsole.{key}"), default);
    console.args = Some(vec![
        format!("--port={PORT}"),
        format!("--prometheus={}", address("prometheusAddr", "http://prometheus:9090")),
        format!("--pilot={}", address("pilotAddr", "http://istio-pilot:8080")),
        format!("--zipkin={}", address("zipkinAddr", "http://zipkin:9411")),
    ]);
    console.ports = Some(vec![k8s::port(PORT)]);
    console.readiness_probe = Some(k8s::http_probe("/", PORT, Some(5), Some(10)));
    console.resources =
        Some(k8s::resources(&serde_json::json!({"requests": {"cpu": "10m"}}), "values.meshConsole.resources")?);
    let pod = addon_pod(None, vec![console]);
    let deployment = addon_deployment(NAME, &namespace, all.clone(), labels(&[("app", NAME)]), &[], pod, Some(1));
    let service = k8s::service(
        k8s::meta(NAME, &namespace, all),
        labels(&[("app", NAME)]),
        vec![k8s::service_port("http-console", PORT, None)],
    );
    Ok([deployment, k8s::to_value(&service)]
        .into_iter()
        .map(|object| Manifest { component: COMPONENT, object })
        .collect())
}
