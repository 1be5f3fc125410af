//! The `IngressGateway` and `EgressGateway` components: a proxy in router mode per gateway,
//! its Service (a LoadBalancer for ingress), account, 1.4's autoscaler and disruption budget,
//! and the certificate Secrets 1.4's gateways mounted (`values.gateways.NAME.secretVolumes`).

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, proxy_resources_default, Settings, Workload};

/// A gateway as 1.4's chart defined it.
pub(crate) struct Gateway {
    pub component: &'static str,
    pub name: &'static str,
    pub istio: &'static str,
    /// The `k8s` settings' component name.
    pub settings: &'static str,
    pub service_type: &'static str,
    /// (name, port, targetPort, nodePort)
    pub ports: &'static [(&'static str, i32, i32, Option<i32>)],
    pub cert_prefix: &'static str,
}

pub(crate) const GATEWAYS: [Gateway; 2] = [
    Gateway {
        component: "IngressGateway",
        name: "istio-ingressgateway",
        istio: "ingressgateway",
        settings: "ingressGateway",
        service_type: "LoadBalancer",
        ports: &[
            ("status-port", 15020, 15020, None),
            ("http2", 80, 80, Some(31380)),
            ("https", 443, 443, Some(31390)),
            ("tcp", 31400, 31400, Some(31400)),
            ("https-kiali", 15029, 15029, None),
            ("https-prometheus", 15030, 15030, None),
            ("https-grafana", 15031, 15031, None),
            ("https-tracing", 15032, 15032, None),
            ("tls", 15443, 15443, None),
        ],
        cert_prefix: "ingressgateway",
    },
    Gateway {
        component: "EgressGateway",
        name: "istio-egressgateway",
        istio: "egressgateway",
        settings: "egressGateway",
        service_type: "ClusterIP",
        ports: &[("http2", 80, 80, None), ("https", 443, 443, None), ("tls", 15443, 15443, None)],
        cert_prefix: "egressgateway",
    },
];

pub(crate) fn manifests(install: &Install, gateway: &Gateway) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let values = format!("gateways.{}", gateway.name);
    let settings = Settings { feature: "gateways", component: gateway.settings, values: &values };
    let account = format!("{}-service-account", gateway.name);
    let own = [("app", gateway.name), ("istio", gateway.istio)];
    let mut args = k8s::strings(&[
        "proxy",
        "router",
        "--domain",
        "$(POD_NAMESPACE).svc.cluster.local",
        "--log_output_level=default:info",
        "--drainDuration",
        "45s",
        "--parentShutdownDuration",
        "1m0s",
        "--connectTimeout",
        "10s",
        "--serviceCluster",
        gateway.name,
    ]);
    args.extend([
        "--zipkinAddress".to_string(),
        format!("zipkin.{namespace}:9411"),
        "--proxyAdminPort".to_string(),
        "15000".to_string(),
        "--statusPort".to_string(),
        "15020".to_string(),
        "--controlPlaneAuthPolicy".to_string(),
        "NONE".to_string(),
        "--discoveryAddress".to_string(),
        format!("istio-pilot.{namespace}:15010"),
    ]);
    let mut ports: Vec<_> = gateway.ports.iter().map(|(_, port, _, _)| k8s::port(*port)).collect();
    ports.push(k8s::named_port(15090, "http-envoy-prom"));
    let workload_labels = chart_labels("gateways", &own);
    let labels_json = serde_json::to_string(&workload_labels)
        .map_err(|error| InstallError::Render { object: gateway.name.to_string(), message: error.to_string() })?;
    let mut proxy = k8s::container("istio-proxy", install.image("proxyv2"));
    proxy.args = Some(args);
    proxy.ports = Some(ports);
    proxy.readiness_probe = Some(Probe {
        failure_threshold: Some(30),
        http_get: Some(HTTPGetAction {
            path: Some("/healthz/ready".to_string()),
            port: IntOrString::Int(15020),
            scheme: Some("HTTP".to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(1),
        period_seconds: Some(2),
        success_threshold: Some(1),
        timeout_seconds: Some(1),
        ..Probe::default()
    });
    proxy.resources = Some(settings.resources(install, proxy_resources_default())?);
    proxy.env = Some(vec![
        k8s::env_field("NODE_NAME", "spec.nodeName"),
        k8s::env_field("POD_NAME", "metadata.name"),
        k8s::env_field("POD_NAMESPACE", "metadata.namespace"),
        k8s::env_field("INSTANCE_IP", "status.podIP"),
        k8s::env_field("HOST_IP", "status.hostIP"),
        k8s::env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        k8s::env_field("ISTIO_META_POD_NAME", "metadata.name"),
        k8s::env_field("ISTIO_META_CONFIG_NAMESPACE", "metadata.namespace"),
        k8s::env("ISTIO_METAJSON_LABELS", &format!("{labels_json}\n")),
        k8s::env("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        k8s::env("SDS_ENABLED", "false"),
        k8s::env("ISTIO_META_WORKLOAD_NAME", gateway.name),
        k8s::env(
            "ISTIO_META_OWNER",
            &format!("kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{}", gateway.name),
        ),
        k8s::env("ISTIO_META_ROUTER_MODE", "sni-dnat"),
    ]);
    // 1.4's secret volumes: the gateway's certificates, or what `secretVolumes` lists.
    let listed = install.value(&format!("{values}.secretVolumes"));
    let secret_volumes: Vec<(String, String, String)> = match listed.as_array() {
        Some(entries) => entries
            .iter()
            .map(|entry| {
                let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
                (field("name"), field("secretName"), field("mountPath"))
            })
            .collect(),
        None => ["certs", "ca-certs"]
            .iter()
            .map(|kind| {
                let volume = format!("{}-{kind}", gateway.cert_prefix);
                (volume.clone(), format!("istio-{volume}"), format!("/etc/istio/{volume}"))
            })
            .collect(),
    };
    let mut mounts = vec![k8s::mount("istio-certs", "/etc/certs", true)];
    let mut volumes = vec![k8s::secret_volume("istio-certs", &format!("istio.{account}"), true)];
    for (name, secret, path) in &secret_volumes {
        if name.is_empty() || secret.is_empty() || path.is_empty() {
            return Err(InstallError::Value {
                path: format!("values.{values}.secretVolumes"),
                message: "each entry needs name, secretName and mountPath".to_string(),
            });
        }
        mounts.push(k8s::mount(name, path, true));
        volumes.push(k8s::secret_volume(name, secret, true));
    }
    proxy.volume_mounts = Some(mounts);
    let mut pod = control_pod(Some(&account), vec![proxy]);
    pod.volumes = Some(volumes);
    let selector = labels(&own);
    let mut manifests = Workload {
        component: gateway.component,
        settings,
        name: gateway.name,
        namespace: namespace.clone(),
        labels: workload_labels.clone(),
        selector: selector.clone(),
        pod_labels: workload_labels.clone(),
        pod,
        autoscaled_by_default: true,
        main_container: "istio-proxy",
        budget: Some((
            workload_labels.clone(),
            labels(&[("release", "istio"), ("app", gateway.name), ("istio", gateway.istio)]),
        )),
        hpa_labels: workload_labels.clone(),
    }
    .manifests(install)?;
    let service_ports: Vec<ServicePort> = gateway
        .ports
        .iter()
        .map(|(name, port, target, node_port)| ServicePort {
            node_port: node_port.filter(|_| gateway.service_type != "ClusterIP"),
            ..k8s::service_port(name, *port, Some(*target))
        })
        .collect();
    let mut service_selector = selector;
    service_selector.insert("release".to_string(), "istio".to_string());
    let mut service =
        k8s::service(k8s::meta(gateway.name, &namespace, workload_labels), service_selector, service_ports);
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some(gateway.service_type.to_string());
    }
    let objects = vec![
        k8s::to_value(&service),
        k8s::service_account(&account, &namespace, chart_labels("gateways", &[("app", gateway.name)])),
    ];
    manifests.extend(objects.into_iter().map(|object| Manifest { component: gateway.component, object }));
    Ok(manifests)
}
