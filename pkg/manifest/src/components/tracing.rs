//! The `Tracing` addon as 1.4's chart installed it with the `jaeger` provider: `istio-tracing`
//! (Jaeger all-in-one 1.14, badger storage, query under `/jaeger`) and its five Services:
//! `jaeger-query`, `jaeger-collector`, `jaeger-agent` (headless, UDP), `zipkin` (9411, where
//! the proxies send spans) and `tracing` (80, the UI).

use k8s_openapi::api::core::v1::{ContainerPort, EmptyDirVolumeSource, Volume};

use crate::addon::{addon_deployment, addon_image, addon_pod};
use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels, Labels};
use crate::manifest::Manifest;

const COMPONENT: &str = "Tracing";

fn udp_port(number: i32) -> ContainerPort {
    ContainerPort { container_port: number, protocol: Some("UDP".to_string()), ..ContainerPort::default() }
}

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let all = chart_labels("tracing", &[("app", "jaeger")]);
    let image = addon_image(install, "tracing.jaeger", "docker.io/jaegertracing", "all-in-one", "1.14");
    let mut jaeger = k8s::container("jaeger", image);
    let mut ports: Vec<ContainerPort> = [9411, 16686, 14250, 14267, 14268, 14269].into_iter().map(k8s::port).collect();
    ports.extend([5775, 6831, 6832].into_iter().map(udp_port));
    jaeger.ports = Some(ports);
    let memory_traces = install.value("tracing.jaeger.memory.max_traces").as_i64().unwrap_or(50000).to_string();
    jaeger.env = Some(vec![
        k8s::env_field("POD_NAMESPACE", "metadata.namespace"),
        k8s::env("BADGER_EPHEMERAL", "false"),
        k8s::env("SPAN_STORAGE_TYPE", "badger"),
        k8s::env("BADGER_DIRECTORY_VALUE", "/badger/data"),
        k8s::env("BADGER_DIRECTORY_KEY", "/badger/key"),
        k8s::env("COLLECTOR_ZIPKIN_HTTP_PORT", "9411"),
        k8s::env("MEMORY_MAX_TRACES", &memory_traces),
        k8s::env("QUERY_BASE_PATH", "/jaeger"),
    ]);
    jaeger.liveness_probe = Some(k8s::http_probe("/", 14269, None, None));
    jaeger.readiness_probe = Some(k8s::http_probe("/", 14269, None, None));
    jaeger.volume_mounts = Some(vec![k8s::mount("data", "/badger", false)]);
    jaeger.resources =
        Some(k8s::resources(&serde_json::json!({"requests": {"cpu": "10m"}}), "values.tracing.resources")?);
    let mut pod = addon_pod(None, vec![jaeger]);
    pod.volumes = Some(vec![Volume {
        name: "data".to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }]);
    let deployment = addon_deployment(
        "istio-tracing",
        &namespace,
        all.clone(),
        labels(&[("app", "jaeger")]),
        &[("prometheus.io/scrape", "true"), ("prometheus.io/port", "14269")],
        pod,
        None,
    );
    let selector = labels(&[("app", "jaeger")]);
    let service_labels = |infra: Option<&str>| -> Labels {
        let mut own = vec![("app", "jaeger")];
        if let Some(infra) = infra {
            own.push(("jaeger-infra", infra));
        }
        chart_labels("tracing", &own)
    };
    let udp = |name: &str, port: i32| k8s_openapi::api::core::v1::ServicePort {
        protocol: Some("UDP".to_string()),
        ..k8s::service_port(name, port, Some(port))
    };
    let query = k8s::service(
        k8s::meta("jaeger-query", &namespace, service_labels(Some("jaeger-service"))),
        selector.clone(),
        vec![k8s::service_port("query-http", 16686, Some(16686))],
    );
    let collector = k8s::service(
        k8s::meta("jaeger-collector", &namespace, service_labels(Some("collector-service"))),
        selector.clone(),
        vec![
            k8s::service_port("jaeger-collector-tchannel", 14267, Some(14267)),
            k8s::service_port("jaeger-collector-http", 14268, Some(14268)),
            k8s::service_port("jaeger-collector-grpc", 14250, Some(14250)),
        ],
    );
    let mut agent = k8s::service(
        k8s::meta("jaeger-agent", &namespace, service_labels(Some("agent-service"))),
        selector.clone(),
        vec![udp("agent-zipkin-thrift", 5775), udp("agent-compact", 6831), udp("agent-binary", 6832)],
    );
    if let Some(spec) = agent.spec.as_mut() {
        spec.cluster_ip = Some("None".to_string());
    }
    let zipkin = k8s::service(
        k8s::meta("zipkin", &namespace, service_labels(None)),
        selector.clone(),
        vec![k8s::service_port("http", 9411, Some(9411))],
    );
    let tracing = k8s::service(
        k8s::meta("tracing", &namespace, service_labels(None)),
        selector,
        vec![k8s::service_port("http-query", 80, Some(16686))],
    );
    let objects = vec![
        deployment,
        k8s::to_value(&query),
        k8s::to_value(&collector),
        k8s::to_value(&agent),
        k8s::to_value(&zipkin),
        k8s::to_value(&tracing),
    ];
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}
