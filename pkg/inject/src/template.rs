//! The sidecar itself: what Istio 1.4's `injection-template.yaml` renders, built in Rust from
//! the pod's metadata and spec, the Helm values and the mesh's ProxyConfig. It yields the
//! `istio-init` init container (the iptables capture), the `istio-proxy` container (the agent's
//! flags, environment, ports, readiness probe and security context), the volumes, and the
//! annotations recording the effective traffic settings. Per-pod annotations
//! (`sidecar.istio.io/*`, `traffic.sidecar.istio.io/*`, `status.sidecar.istio.io/port`, …) are
//! validated first; a bad one fails the injection with its name and value.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use istio_runtime::ports;

use crate::config::{InterceptionMode, ProxyDefaults};
use crate::policy::string_map;
use crate::validate::{validate_annotations, validate_values, value_text, InvalidSetting};

pub const PROXY_CONTAINER: &str = "istio-proxy";
pub const INIT_CONTAINER: &str = "istio-init";
/// The init container that enables core dumps (`global.proxy.enableCoreDump`).
pub const CORE_DUMP_CONTAINER: &str = "enable-core-dump";
pub const ENVOY_VOLUME: &str = "istio-envoy";
pub const CERTS_VOLUME: &str = "istio-certs";

/// The workload being injected: its pod template and the object that owns it.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// Pod (template) metadata: labels and annotations.
    pub meta: &'a Value,
    /// Pod spec.
    pub spec: &'a Value,
    /// Name of the owning workload (a Deployment's name, or the pod's own).
    pub name: String,
    pub namespace: String,
    /// apiVersion and kind of the owning workload.
    pub api_version: String,
    pub kind: String,
}

/// What injection adds to a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    pub init_containers: Vec<Value>,
    pub containers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub image_pull_secrets: Vec<Value>,
    /// The pod's DNS search domains (`global.podDNSSearchNamespaces`), when set.
    pub dns_config: Option<Value>,
    /// The effective interception settings, recorded on the pod.
    pub redirect_annotations: BTreeMap<String, String>,
    /// Rewrite the app containers' HTTP probes to the status port.
    pub rewrite_app_probes: bool,
    pub status_port: u16,
}

/// Why a pod cannot be given a sidecar; each names the annotation or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    #[error("global.proxy.statusPort: {0:?} is not a port")]
    StatusPort(String),
    #[error("annotation {name}: not a JSON object of objects: {source}")]
    UserJson { name: &'static str, source: serde_json::Error },
    #[error("annotation {name}: {key:?} is not an object")]
    UserJsonEntry { name: &'static str, key: String },
    #[error("values global.podDNSSearchNamespaces: {0:?} uses a template expression other than .DeploymentMeta.Name, .DeploymentMeta.Namespace and valueOrDefault")]
    DnsSearch(String),
}

/// The uid and gid the proxy runs as, which the capture rules exempt.
pub const PROXY_UID: u32 = 1337;

/// The settings that shape a pod's sidecar: its annotations over the Helm values, resolved once.
struct Settings<'a> {
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    global: &'a Value,
    interception: InterceptionMode,
    status_port: u16,
    include_ip_ranges: String,
    exclude_ip_ranges: String,
    /// The inbound ports the capture takes (`-b`): the annotation, else all of them.
    include_inbound_ports: String,
    /// The inbound ports recorded on the pod: the annotation, else every container's ports.
    recorded_inbound_ports: String,
    exclude_inbound_ports: String,
    exclude_outbound_ports: String,
    kubevirt_interfaces: Option<String>,
    app_ports: String,
    pull_policy: String,
    sds: bool,
    trust_domain: Option<String>,
    /// The CNI plugin captures traffic instead of an init container.
    cni: bool,
    /// With CNI, an init container checks the capture (`istio_cni.repair.enabled`).
    cni_repair: bool,
}

impl<'a> Settings<'a> {
    fn resolve(workload: &Workload<'_>, values: &'a Value, proxy: &ProxyDefaults) -> Result<Settings<'a>, RenderError> {
        let annotations = string_map(workload.meta.get("annotations"));
        validate_annotations(&annotations)?;
        let global = &values["global"];
        validate_values(&global["proxy"])?;
        let annotation = |name: &str, default: String| annotations.get(name).cloned().unwrap_or(default);
        let interception = InterceptionMode::parse(&annotation(
            "sidecar.istio.io/interceptionMode",
            proxy.interception_mode.as_str().to_string(),
        ))
        .unwrap_or(proxy.interception_mode);
        let status_port_text = annotation("status.sidecar.istio.io/port", value_text(&global["proxy"]["statusPort"]));
        let status_port = status_port_text.parse().map_err(|_| RenderError::StatusPort(status_port_text.clone()))?;
        let proxy_value = |field: &str| value_text(&global["proxy"][field]);
        Ok(Settings {
            interception,
            status_port,
            include_ip_ranges: annotation(
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                proxy_value("includeIPRanges"),
            ),
            exclude_ip_ranges: annotation(
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                proxy_value("excludeIPRanges"),
            ),
            include_inbound_ports: annotation("traffic.sidecar.istio.io/includeInboundPorts", "*".to_string()),
            recorded_inbound_ports: annotation(
                "traffic.sidecar.istio.io/includeInboundPorts",
                container_ports(workload.spec, |_| true),
            ),
            exclude_inbound_ports: exclude_inbound_port(
                status_port,
                &annotation("traffic.sidecar.istio.io/excludeInboundPorts", proxy_value("excludeInboundPorts")),
            ),
            exclude_outbound_ports: annotation(
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                proxy_value("excludeOutboundPorts"),
            ),
            kubevirt_interfaces: annotations.get("traffic.sidecar.istio.io/kubevirtInterfaces").cloned(),
            app_ports: application_ports(workload.spec),
            pull_policy: non_empty(&global["imagePullPolicy"]).unwrap_or("Always").to_string(),
            sds: global["sds"]["enabled"].as_bool().unwrap_or(false),
            trust_domain: non_empty(&global["trustDomain"]).map(str::to_string),
            cni: values["istio_cni"]["enabled"].as_bool().unwrap_or(false),
            cni_repair: values["istio_cni"]["enabled"].as_bool().unwrap_or(false)
                && values["istio_cni"]["repair"]["enabled"].as_bool().unwrap_or(false),
            labels: string_map(workload.meta.get("labels")),
            annotations,
            global,
        })
    }

    /// The pod's annotation `name`, else `default`.
    fn annotation(&self, name: &str, default: String) -> String {
        self.annotations.get(name).cloned().unwrap_or(default)
    }
}

/// `istio-init`: the iptables capture, unless interception is off or the CNI plugin does it;
/// with CNI and its repair on, `istio-validation` instead, which only checks the capture.
fn init_container(settings: &Settings<'_>) -> Option<Value> {
    if settings.interception == InterceptionMode::None || (settings.cni && !settings.cni_repair) {
        return None;
    }
    let global = settings.global;
    let mut command = vec![
        if settings.cni_repair { "istio-iptables-go" } else { "istio-iptables" }.to_string(),
        "-p".into(),
        ports::PROXY_OUTBOUND_CAPTURE.to_string(),
        "-z".into(),
        ports::PROXY_INBOUND_CAPTURE.to_string(),
        "-u".into(),
        PROXY_UID.to_string(),
        "-m".into(),
        settings.interception.as_str().into(),
        "-i".into(),
        settings.include_ip_ranges.clone(),
        "-x".into(),
        settings.exclude_ip_ranges.clone(),
        "-b".into(),
        settings.include_inbound_ports.clone(),
        "-d".into(),
        settings.exclude_inbound_ports.clone(),
    ];
    if !settings.exclude_outbound_ports.is_empty() {
        command.extend(["-o".to_string(), settings.exclude_outbound_ports.clone()]);
    }
    if let Some(interfaces) = &settings.kubevirt_interfaces {
        command.extend(["-k".to_string(), interfaces.clone()]);
    }
    let privileged = global["proxy"]["privileged"].as_bool().unwrap_or(false);
    let (name, security) = if settings.cni_repair {
        command.extend(["--run-validation".to_string(), "--skip-rule-apply".to_string()]);
        let security = json!({
            "allowPrivilegeEscalation": privileged,
            "privileged": privileged,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": false,
            "runAsGroup": PROXY_UID,
            "runAsUser": PROXY_UID,
            "runAsNonRoot": true,
        });
        ("istio-validation", security)
    } else {
        let security = json!({
            "allowPrivilegeEscalation": privileged,
            "privileged": privileged,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        });
        (INIT_CONTAINER, security)
    };
    Some(json!({
        "name": name,
        "image": image(global, &global["proxy_init"]["image"]),
        "command": command,
        "imagePullPolicy": settings.pull_policy,
        "resources": resources_or_empty(&global["proxy"]["init"]["resources"]),
        "securityContext": security,
    }))
}

/// `enable-core-dump`, with `global.proxy.enableCoreDump`: a privileged init container that
/// lets the proxy write core files to `/var/lib/istio`.
fn core_dump_container(settings: &Settings<'_>) -> Option<Value> {
    let global = settings.global;
    if global["proxy"]["enableCoreDump"].as_bool() != Some(true) || settings.interception == InterceptionMode::None {
        return None;
    }
    Some(json!({
        "name": CORE_DUMP_CONTAINER,
        "args": ["-c", "sysctl -w kernel.core_pattern=/var/lib/istio/core.proxy && ulimit -c unlimited"],
        "command": ["/bin/sh"],
        "image": non_empty(&global["proxy"]["enableCoreDumpImage"]).unwrap_or("ubuntu:xenial"),
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "securityContext": {
            "allowPrivilegeEscalation": true,
            "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]},
            "privileged": true,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        },
    }))
}

/// The agent's command line, as 1.4's template wrote it.
fn proxy_args(workload: &Workload<'_>, settings: &Settings<'_>, proxy: &ProxyDefaults) -> Vec<String> {
    let global = settings.global;
    let service_cluster = match settings.labels.get("app").filter(|app| !app.is_empty()) {
        Some(app) => format!("{app}.$(POD_NAMESPACE)"),
        None => format!(
            "{}.{}",
            if workload.name.is_empty() { "istio-proxy" } else { &workload.name },
            if workload.namespace.is_empty() { "default" } else { &workload.namespace }
        ),
    };
    let cluster_domain = non_empty(&global["proxy"]["clusterDomain"]).unwrap_or("cluster.local");
    let mut args = vec![
        "proxy".to_string(),
        "sidecar".into(),
        "--domain".into(),
        format!("$(POD_NAMESPACE).svc.{cluster_domain}"),
        "--configPath".into(),
        proxy.config_path.clone(),
    ];
    if let Some(binary) = &proxy.binary_path {
        args.extend(["--binaryPath".to_string(), binary.clone()]);
    }
    args.extend([
        "--serviceCluster".to_string(),
        service_cluster,
        "--drainDuration".into(),
        istio_duration::format(proxy.drain_duration),
        "--parentShutdownDuration".into(),
        istio_duration::format(proxy.parent_shutdown_duration),
        "--discoveryAddress".into(),
        settings.annotation("sidecar.istio.io/discoveryAddress", proxy.discovery_address.clone()),
    ]);
    if non_empty(&global["proxy"]["tracer"]) == Some("zipkin") {
        args.extend(["--zipkinAddress".to_string(), proxy.zipkin_address.clone()]);
    }
    let log_level = settings.annotation("sidecar.istio.io/logLevel", value_text(&global["proxy"]["logLevel"]));
    if !log_level.is_empty() {
        args.push(format!("--proxyLogLevel={log_level}"));
    }
    let component_log_level =
        settings.annotation("sidecar.istio.io/componentLogLevel", value_text(&global["proxy"]["componentLogLevel"]));
    if !component_log_level.is_empty() {
        args.push(format!("--proxyComponentLogLevel={component_log_level}"));
    }
    args.extend([
        "--dnsRefreshRate".into(),
        non_empty(&global["proxy"]["dnsRefreshRate"]).unwrap_or("300s").to_string(),
        "--connectTimeout".into(),
        istio_duration::format(proxy.connect_timeout),
        "--proxyAdminPort".into(),
        proxy.proxy_admin_port.to_string(),
    ]);
    if proxy.concurrency > 0 {
        args.extend(["--concurrency".to_string(), proxy.concurrency.to_string()]);
    }
    args.extend([
        "--controlPlaneAuthPolicy".to_string(),
        settings.annotation("sidecar.istio.io/controlPlaneAuthPolicy", proxy.control_plane_auth_policy.clone()),
    ]);
    if settings.status_port != 0 {
        args.extend([
            "--statusPort".to_string(),
            settings.status_port.to_string(),
            "--applicationPorts".into(),
            settings.annotation("readiness.status.sidecar.istio.io/applicationPorts", settings.app_ports.clone()),
        ]);
    }
    if let Some(domain) = &settings.trust_domain {
        args.push(format!("--trust-domain={domain}"));
    }
    if proxy.concurrency == 0 {
        // As 1.4 did after rendering: one worker per CPU the proxy may use (its limit, else its request).
        let resources = proxy_resources(settings);
        let cpus = ["limits", "requests"]
            .into_iter()
            .filter_map(|kind| resources[kind]["cpu"].as_str().and_then(cpu_millis))
            .find(|millis| *millis > 0);
        if let Some(millis) = cpus {
            args.extend(["--concurrency".to_string(), millis.div_ceil(1000).to_string()]);
        }
    }
    args
}

/// A CPU quantity (`2`, `1.5`, `500m`) in thousandths of a CPU.
fn cpu_millis(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let (number, scale) = match quantity.strip_suffix('m') {
        Some(millis) => (millis, 1.0),
        None => (quantity, 1000.0),
    };
    let value: f64 = number.parse().ok().filter(|value: &f64| value.is_finite() && *value >= 0.0)?;
    Some((value * scale).ceil() as u64)
}

/// The agent's environment: the pod's identity and the node metadata it sends Pilot.
fn proxy_env(workload: &Workload<'_>, settings: &Settings<'_>) -> Vec<Value> {
    let global = settings.global;
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        json!({"name": "ISTIO_META_POD_PORTS", "value": pod_ports_json(workload.spec)}),
        json!({"name": "ISTIO_META_CLUSTER_ID",
               "value": non_empty(&global["multicluster"]["clusterName"]).unwrap_or("Kubernetes")}),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("ISTIO_META_POD_NAME", "metadata.name"),
        field_env("ISTIO_META_CONFIG_NAMESPACE", "metadata.namespace"),
        json!({"name": "SDS_ENABLED", "value": settings.sds.to_string()}),
        json!({"name": "ISTIO_META_INTERCEPTION_MODE", "value": settings.interception.as_str()}),
        value_env(
            "ISTIO_META_INCLUDE_INBOUND_PORTS",
            &settings.annotation("traffic.sidecar.istio.io/includeInboundPorts", settings.app_ports.clone()),
        ),
    ];
    if let Some(network) = non_empty(&global["network"]) {
        env.push(json!({"name": "ISTIO_META_NETWORK", "value": network}));
    }
    if !settings.annotations.is_empty() {
        env.push(json!({"name": "ISTIO_METAJSON_ANNOTATIONS", "value": format!("{}\n", json!(settings.annotations))}));
    }
    if !settings.labels.is_empty() {
        env.push(json!({"name": "ISTIO_METAJSON_LABELS", "value": format!("{}\n", json!(settings.labels))}));
    }
    if !workload.name.is_empty() {
        env.push(json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload.name}));
        if !workload.api_version.is_empty() {
            let namespace = if workload.namespace.is_empty() { "default" } else { &workload.namespace };
            env.push(json!({"name": "ISTIO_META_OWNER", "value": format!(
                "kubernetes://apis/{}/namespaces/{namespace}/{}s/{}",
                workload.api_version, workload.kind.to_lowercase(), workload.name
            )}));
        }
    }
    if let Some(mesh_id) = non_empty(&global["meshID"]).or(settings.trust_domain.as_deref()) {
        env.push(json!({"name": "ISTIO_META_MESH_ID", "value": mesh_id}));
    }
    env
}

/// The proxy's security context: uid 1337 (root with NET_ADMIN under TPROXY), group 1337, no
/// privilege escalation, every other capability dropped, a read-only root unless core dumps
/// are on.
fn proxy_security(settings: &Settings<'_>) -> Value {
    let global = settings.global;
    let privileged = global["proxy"]["privileged"].as_bool().unwrap_or(false);
    let tproxy = settings.interception == InterceptionMode::Tproxy;
    let mut capabilities = json!({"drop": ["ALL"]});
    if tproxy {
        capabilities["add"] = json!(["NET_ADMIN"]);
    }
    json!({
        "allowPrivilegeEscalation": privileged,
        "capabilities": capabilities,
        "privileged": privileged,
        "readOnlyRootFilesystem": global["proxy"]["enableCoreDump"].as_bool() != Some(true),
        "runAsGroup": PROXY_UID,
        "runAsNonRoot": !tproxy,
        "runAsUser": if tproxy { 0 } else { PROXY_UID },
    })
}

/// The proxy's resources: the annotations' CPU and memory requests, else the values'.
fn proxy_resources(settings: &Settings<'_>) -> Value {
    let annotations = &settings.annotations;
    match (annotations.get("sidecar.istio.io/proxyCPU"), annotations.get("sidecar.istio.io/proxyMemory")) {
        (None, None) => resources_or_empty(&settings.global["proxy"]["resources"]),
        (cpu, memory) => {
            let mut requests = serde_json::Map::new();
            if let Some(cpu) = cpu {
                requests.insert("cpu".into(), json!(cpu));
            }
            if let Some(memory) = memory {
                requests.insert("memory".into(), json!(memory));
            }
            json!({"requests": requests})
        }
    }
}

/// The proxy's volume mounts and the pod volumes behind them: its working directory, the
/// workload certificates (the `istio.SA` Secret, or SDS's socket and token), and the user's.
fn proxy_volumes(workload: &Workload<'_>, settings: &Settings<'_>) -> Result<(Vec<Value>, Vec<Value>), RenderError> {
    let mut volume_mounts = vec![json!({"mountPath": "/etc/istio/proxy", "name": ENVOY_VOLUME})];
    let mut volumes = vec![json!({"emptyDir": {"medium": "Memory"}, "name": ENVOY_VOLUME})];
    if settings.sds {
        volume_mounts.push(json!({"mountPath": "/var/run/sds", "name": "sds-uds-path", "readOnly": true}));
        volume_mounts.push(json!({"mountPath": "/var/run/secrets/tokens", "name": "istio-token"}));
        volumes.push(json!({"name": "sds-uds-path", "hostPath": {"path": "/var/run/sds"}}));
        volumes.push(json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200,
            "audience": non_empty(&settings.global["sds"]["token"]["aud"]).unwrap_or("istio-ca")}}]}}));
    } else {
        volume_mounts.push(json!({"mountPath": "/etc/certs/", "name": CERTS_VOLUME, "readOnly": true}));
        let account = workload.spec.get("serviceAccountName").and_then(Value::as_str).filter(|name| !name.is_empty());
        volumes.push(json!({"name": CERTS_VOLUME, "secret": {
            "optional": true, "secretName": format!("istio.{}", account.unwrap_or("default"))}}));
    }
    for (mount_name, mut mount) in user_json_map(&settings.annotations, "sidecar.istio.io/userVolumeMount")? {
        mount["name"] = json!(mount_name);
        volume_mounts.push(mount);
    }
    for (volume_name, mut volume) in user_json_map(&settings.annotations, "sidecar.istio.io/userVolume")? {
        volume["name"] = json!(volume_name);
        volumes.push(volume);
    }
    Ok((volume_mounts, volumes))
}

/// The proxy's readiness probe on the status port, with the annotations' timing.
fn readiness_probe(settings: &Settings<'_>) -> Value {
    let number = |name: &str, field: &str| -> Value {
        let text = settings.annotation(name, value_text(&settings.global["proxy"][field]));
        text.parse::<u32>().map_or(Value::String(text), |number| json!(number))
    };
    json!({
        "httpGet": {"path": "/healthz/ready", "port": settings.status_port},
        "initialDelaySeconds": number("readiness.status.sidecar.istio.io/initialDelaySeconds", "readinessInitialDelaySeconds"),
        "periodSeconds": number("readiness.status.sidecar.istio.io/periodSeconds", "readinessPeriodSeconds"),
        "failureThreshold": number("readiness.status.sidecar.istio.io/failureThreshold", "readinessFailureThreshold"),
    })
}

/// The annotations recording the effective interception settings on the pod.
fn redirect_annotations(settings: &Settings<'_>) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    // As 1.4's, a setting left empty is not recorded.
    let mut set = |name: &str, value: &str| {
        if !value.is_empty() {
            annotations.insert(name.to_string(), value.to_string());
        }
    };
    set("sidecar.istio.io/interceptionMode", settings.interception.as_str());
    set("traffic.sidecar.istio.io/includeOutboundIPRanges", &settings.include_ip_ranges);
    set("traffic.sidecar.istio.io/excludeOutboundIPRanges", &settings.exclude_ip_ranges);
    set("traffic.sidecar.istio.io/includeInboundPorts", &settings.recorded_inbound_ports);
    set("traffic.sidecar.istio.io/excludeInboundPorts", &settings.exclude_inbound_ports);
    set("traffic.sidecar.istio.io/excludeOutboundPorts", &settings.exclude_outbound_ports);
    if let Some(interfaces) = &settings.kubevirt_interfaces {
        set("traffic.sidecar.istio.io/kubevirtInterfaces", interfaces);
    }
    annotations
}

/// `global.imagePullSecrets`, as pod pull-secret references.
fn image_pull_secrets(global: &Value) -> Vec<Value> {
    global["imagePullSecrets"]
        .as_array()
        .map(|secrets| {
            secrets
                .iter()
                .map(|secret| match secret {
                    Value::String(name) => json!({"name": name}),
                    other => other.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the sidecar for `workload`.
pub fn render(workload: &Workload<'_>, values: &Value, proxy: &ProxyDefaults) -> Result<Sidecar, RenderError> {
    let settings = Settings::resolve(workload, values, proxy)?;
    let global = settings.global;
    let (volume_mounts, volumes) = proxy_volumes(workload, &settings)?;
    let mut container = json!({
        "name": PROXY_CONTAINER,
        "image": settings.annotations.get("sidecar.istio.io/proxyImage").cloned()
            .unwrap_or_else(|| image(global, &global["proxy"]["image"])),
        "ports": [{"containerPort": ports::PROXY_PROMETHEUS, "protocol": "TCP", "name": "http-envoy-prom"}],
        "args": proxy_args(workload, &settings, proxy),
        "env": proxy_env(workload, &settings),
        "imagePullPolicy": settings.pull_policy,
        "securityContext": proxy_security(&settings),
        "resources": proxy_resources(&settings),
        "volumeMounts": volume_mounts,
    });
    if settings.status_port != 0 {
        container["readinessProbe"] = readiness_probe(&settings);
    }
    let rewrite_app_probes = match settings.annotations.get("sidecar.istio.io/rewriteAppHTTPProbers") {
        Some(value) => value.eq_ignore_ascii_case("true"),
        None => values["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"].as_bool().unwrap_or(false),
    } && settings.status_port != 0;
    Ok(Sidecar {
        init_containers: init_container(&settings).into_iter().chain(core_dump_container(&settings)).collect(),
        containers: vec![container],
        volumes,
        image_pull_secrets: image_pull_secrets(global),
        dns_config: dns_config(workload, global)?,
        redirect_annotations: redirect_annotations(&settings),
        rewrite_app_probes,
        status_port: settings.status_port,
    })
}

/// `global.podDNSSearchNamespaces` as the pod's `dnsConfig`, each entry rendered for the workload.
fn dns_config(workload: &Workload<'_>, global: &Value) -> Result<Option<Value>, RenderError> {
    let Some(entries) = global["podDNSSearchNamespaces"].as_array().filter(|entries| !entries.is_empty()) else {
        return Ok(None);
    };
    let searches =
        entries.iter().map(|entry| render_search(&value_text(entry), workload)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(json!({"searches": searches})))
}

/// Renders the template expressions 1.4's documentation uses in DNS search entries:
/// `{{ .DeploymentMeta.Namespace }}`, `{{ .DeploymentMeta.Name }}` and
/// `{{ valueOrDefault EXPR "default" }}`.
fn render_search(entry: &str, workload: &Workload<'_>) -> Result<String, RenderError> {
    let unsupported = || RenderError::DnsSearch(entry.to_string());
    let field = |name: &str| match name {
        ".DeploymentMeta.Namespace" => Some(workload.namespace.clone()),
        ".DeploymentMeta.Name" => Some(workload.name.clone()),
        _ => None,
    };
    let mut rendered = String::new();
    let mut rest = entry;
    while let Some(start) = rest.find("{{") {
        rendered.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or_else(unsupported)? + start;
        let expression = rest[start + 2..end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let words: Vec<&str> = expression.split_whitespace().collect();
        let value = match words.as_slice() {
            [name] => field(name).ok_or_else(unsupported)?,
            ["valueOrDefault", name, default] => {
                let default = default.strip_prefix('"').and_then(|d| d.strip_suffix('"')).ok_or_else(unsupported)?;
                Some(field(name).ok_or_else(unsupported)?).filter(|value| !value.is_empty()).unwrap_or(default.into())
            }
            _ => return Err(unsupported()),
        };
        rendered.push_str(&value);
        rest = &rest[end + 2..];
    }
    rendered.push_str(rest);
    Ok(rendered)
}

fn image(global: &Value, image: &Value) -> String {
    let image = image.as_str().unwrap_or("proxyv2");
    if image.contains('/') {
        image.to_string()
    } else {
        format!(
            "{}/{image}:{}",
            global["hub"].as_str().unwrap_or("docker.io/istio"),
            global["tag"].as_str().unwrap_or("1.4.10")
        )
    }
}

fn non_empty(value: &Value) -> Option<&str> {
    value.as_str().filter(|text| !text.is_empty())
}

fn resources_or_empty(resources: &Value) -> Value {
    if resources.as_object().is_some_and(|map| !map.is_empty()) {
        resources.clone()
    } else {
        json!({})
    }
}

/// A variable with a literal value; an empty one is written without it, as Kubernetes does.
fn value_env(name: &str, value: &str) -> Value {
    if value.is_empty() {
        json!({"name": name})
    } else {
        json!({"name": name, "value": value})
    }
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// The application containers' ports, comma separated (1.4's `applicationPorts`).
pub fn application_ports(spec: &Value) -> String {
    container_ports(spec, |container| container.get("name").and_then(Value::as_str) != Some(PROXY_CONTAINER))
}

/// The ports of the containers `include` accepts, comma separated.
fn container_ports(spec: &Value, include: impl Fn(&Value) -> bool) -> String {
    spec.get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|container| include(container))
        .flat_map(|container| container.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|port| port.get("containerPort").and_then(Value::as_u64))
        .map(|port| port.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every container port as JSON, the value of `ISTIO_META_POD_PORTS`.
fn pod_ports_json(spec: &Value) -> String {
    let ports: Vec<String> = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|container| container.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|port| container_port_json(&port))
        .collect();
    // 1.4's template wrote one port per line, each after the first led by its comma.
    if ports.is_empty() {
        "[\n]".to_string()
    } else {
        format!("[\n    {}\n]", ports.join("\n    ,"))
    }
}

/// A ContainerPort as JSON in Kubernetes' field order (name, hostPort, containerPort,
/// protocol, hostIP), as 1.4 wrote it into `ISTIO_META_POD_PORTS`.
fn container_port_json(port: &Value) -> String {
    let fields: Vec<String> = ["name", "hostPort", "containerPort", "protocol", "hostIP"]
        .into_iter()
        .filter_map(|field| {
            let value = port.get(field).filter(|value| !value.is_null())?;
            let empty = value.as_str() == Some("") || value.as_u64() == Some(0);
            (!empty).then(|| format!("{}:{value}", json!(field)))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The excluded inbound ports with the status port added (1.4's `excludeInboundPort`).
pub fn exclude_inbound_port(status_port: u16, excluded: &str) -> String {
    let mut ports: Vec<&str> = excluded.split(',').map(str::trim).filter(|port| !port.is_empty()).collect();
    if status_port == 0 {
        return excluded.to_string();
    }
    let status = status_port.to_string();
    if ports.contains(&status.as_str()) {
        return excluded.to_string();
    }
    ports.push(&status);
    ports.join(",")
}

/// A JSON map annotation (`userVolume`, `userVolumeMount`): name → object.
fn user_json_map(
    annotations: &BTreeMap<String, String>,
    name: &'static str,
) -> Result<Vec<(String, Value)>, RenderError> {
    let Some(text) = annotations.get(name) else {
        return Ok(Vec::new());
    };
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|source| RenderError::UserJson { name, source })?;
    map.into_iter()
        .map(
            |(key, value)| {
                if value.is_object() {
                    Ok((key, value))
                } else {
                    Err(RenderError::UserJsonEntry { name, key })
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_values;

    fn workload<'a>(meta: &'a Value, spec: &'a Value) -> Workload<'a> {
        Workload {
            meta,
            spec,
            name: "details-v1".into(),
            namespace: "default".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
        }
    }

    fn args(sidecar: &Sidecar) -> Vec<String> {
        serde_json::from_value(sidecar.containers[0]["args"].clone()).expect("args")
    }

    #[test]
    fn renders_1_4_init_and_proxy_containers() {
        let meta = json!({"labels": {"app": "details", "version": "v1"}});
        let spec = json!({"serviceAccountName": "bookinfo-details",
            "containers": [{"name": "details", "ports": [{"containerPort": 9080}]}]});
        let proxy = ProxyDefaults::from_mesh(&json!({})).expect("defaults");
        let sidecar = render(&workload(&meta, &spec), &default_values(), &proxy).expect("render");
        let init = &sidecar.init_containers[0];
        assert_eq!(init["name"], "istio-init");
        assert_eq!(init["image"], "docker.io/istio/proxyv2:1.4.10");
        let command: Vec<String> = serde_json::from_value(init["command"].clone()).expect("command");
        assert_eq!(command.join(" "), "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x  -b * -d 15020");
        let args = args(&sidecar).join(" ");
        assert!(args.starts_with("proxy sidecar --domain $(POD_NAMESPACE).svc.cluster.local"), "{args}");
        assert!(args
            .contains("--serviceCluster details.$(POD_NAMESPACE) --drainDuration 45s --parentShutdownDuration 1m0s"));
        assert!(args.contains("--discoveryAddress istio-pilot.istio-system:15010"), "{args}");
        assert!(args.contains("--statusPort 15020 --applicationPorts 9080 --trust-domain=cluster.local"), "{args}");
        assert!(!args.contains("--binaryPath"), "{args}");
        let env = &sidecar.containers[0]["env"];
        let owner = env.as_array().expect("env").iter().find(|e| e["name"] == "ISTIO_META_OWNER").expect("owner");
        assert_eq!(owner["value"], "kubernetes://apis/apps/v1/namespaces/default/deployments/details-v1");
        assert_eq!(sidecar.volumes[1]["secret"]["secretName"], "istio.bookinfo-details");
        assert_eq!(sidecar.containers[0]["securityContext"]["runAsUser"], 1337);
        assert_eq!(sidecar.containers[0]["readinessProbe"]["httpGet"]["port"], 15020);
    }

    #[test]
    fn annotations_override_and_are_validated() {
        let meta = json!({"annotations": {
            "status.sidecar.istio.io/port": "0",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "3306",
            "traffic.sidecar.istio.io/excludeInboundPorts": "9090",
            "sidecar.istio.io/interceptionMode": "TPROXY"}});
        let spec = json!({"containers": [{"name": "app"}]});
        let proxy =
            ProxyDefaults::from_mesh(&json!({"defaultConfig": {"binaryPath": "/usr/local/bin/envoy"}})).expect("d");
        let sidecar = render(&workload(&meta, &spec), &default_values(), &proxy).expect("render");
        let command: Vec<String> = serde_json::from_value(sidecar.init_containers[0]["command"].clone()).expect("cmd");
        assert_eq!(command[8], "TPROXY");
        assert_eq!(&command[15..], ["-d", "9090", "-o", "3306"]);
        assert!(sidecar.containers[0].get("readinessProbe").is_none());
        assert!(args(&sidecar).join(" ").contains("--binaryPath /usr/local/bin/envoy"));
        assert_eq!(sidecar.containers[0]["securityContext"]["capabilities"]["add"][0], "NET_ADMIN");

        let bad = json!({"annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "80,http"}});
        let error = render(&workload(&bad, &spec), &default_values(), &proxy).expect_err("invalid").to_string();
        assert!(
            error.contains("traffic.sidecar.istio.io/excludeInboundPorts") && error.contains("\"http\""),
            "{error}"
        );
        let none = json!({"annotations": {"sidecar.istio.io/interceptionMode": "NONE"}});
        assert!(render(&workload(&none, &spec), &default_values(), &proxy).expect("none").init_containers.is_empty());
    }

    #[test]
    fn excluded_inbound_ports_gain_the_status_port_once() {
        assert_eq!(exclude_inbound_port(15020, ""), "15020");
        assert_eq!(exclude_inbound_port(15020, "80, 81"), "80,81,15020");
        assert_eq!(exclude_inbound_port(15020, "15020"), "15020");
        assert_eq!(exclude_inbound_port(0, "80"), "80");
    }
}
