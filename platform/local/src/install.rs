//! What an installation is: the resolved profile, the control-plane components it runs (each
//! a host process on its own bridge address, under its 1.4 service name), their config files
//! (mesh config, injector config and values) and certificates, and the gateway manifests
//! applied as pods.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use istio_pki::ca::{self, CertificateAuthority, LeafRequest};
use istio_pki::files::CertDir;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::layout::Layout;
use crate::services::HostName;

/// A control-plane component run as a host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Its log name.
    pub name: &'static str,
    /// Its binary.
    pub binary: &'static str,
    /// Its Service name in `istio-system`.
    pub service: &'static str,
    pub address: Ipv4Addr,
    /// A port that accepts connections once it is up.
    pub ready_port: u16,
    /// Whether it resolves names as a pod in `istio-system` would (cluster DNS and its search
    /// path): Mixer's adapters name Services such as `redis-release-master`.
    pub cluster_dns: bool,
}

pub const PILOT: Component = Component {
    name: "pilot",
    binary: "pilot",
    service: "istio-pilot",
    address: Ipv4Addr::new(10, 44, 0, 10),
    ready_port: 15010,
    cluster_dns: false,
};
pub const GALLEY: Component = Component {
    name: "galley",
    binary: "galley",
    service: "istio-galley",
    address: Ipv4Addr::new(10, 44, 0, 11),
    ready_port: 9901,
    cluster_dns: false,
};
pub const INJECTOR: Component = Component {
    name: "sidecar-injector",
    binary: "sidecar-injector",
    service: "istio-sidecar-injector",
    address: Ipv4Addr::new(10, 44, 0, 12),
    ready_port: 9443,
    cluster_dns: false,
};
pub const CITADEL: Component = Component {
    name: "citadel",
    binary: "citadel",
    service: "istio-citadel",
    address: Ipv4Addr::new(10, 44, 0, 13),
    ready_port: istio_runtime::ports::MONITORING,
    cluster_dns: false,
};
/// Mixer as 1.4 deployed it twice: `istio-policy` answers checks, `istio-telemetry` reports.
pub const POLICY: Component = Component {
    name: "istio-policy",
    binary: "mixs",
    service: "istio-policy",
    address: Ipv4Addr::new(10, 44, 0, 14),
    ready_port: istio_runtime::ports::MIXER,
    cluster_dns: true,
};
pub const TELEMETRY: Component = Component {
    name: "istio-telemetry",
    binary: "mixs",
    service: "istio-telemetry",
    address: Ipv4Addr::new(10, 44, 0, 15),
    ready_port: istio_runtime::ports::MIXER,
    cluster_dns: true,
};
/// 1.4's `prometheus` addon: Debian's Prometheus, on its own bridge address under 1.4's
/// Service name (config and targets: `addons.rs`).
pub const PROMETHEUS: Component = Component {
    name: "prometheus",
    binary: "prometheus",
    service: "prometheus",
    address: Ipv4Addr::new(10, 44, 0, 16),
    ready_port: PROMETHEUS_PORT,
    cluster_dns: false,
};
pub const PROMETHEUS_PORT: u16 = 9090;
/// 1.4's `istio-tracing` addon (`values.tracing.enabled`): the trace collector under the
/// `zipkin` Service the proxies send spans to, with Zipkin's query API on the same port.
pub const TRACING: Component = Component {
    name: "istio-tracing",
    binary: "istio-tracing",
    service: "zipkin",
    address: Ipv4Addr::new(10, 44, 0, 17),
    ready_port: ZIPKIN_PORT,
    cluster_dns: false,
};
pub const ZIPKIN_PORT: u16 = 9411;
/// 1.4's `grafana` and `kiali` addons (`values.grafana.enabled`, `values.kiali.enabled`): the
/// mesh console, under Kiali's Service name and port.
pub const CONSOLE: Component = Component {
    name: "mesh-console",
    binary: "istio-console",
    service: "kiali",
    address: Ipv4Addr::new(10, 44, 0, 18),
    ready_port: CONSOLE_PORT,
    cluster_dns: false,
};
pub const CONSOLE_PORT: u16 = 20001;
/// The collector's OTLP ports (gRPC, HTTP).
pub const OTLP_PORTS: (u16, u16) = (4317, 4318);

/// Every address the bridge carries for the control plane.
pub const CONTROL_ADDRESSES: [Ipv4Addr; 6] =
    [PILOT.address, GALLEY.address, INJECTOR.address, CITADEL.address, POLICY.address, TELEMETRY.address];

/// Mixer's default config (attribute manifests, kubernetesenv), applied with Mixer.
pub const MIXER_CONFIG: &str = include_str!("../../../install/mixer/config.yaml");
/// Mixer's telemetry config (the metric instances and the prometheus handler), applied with
/// istio-telemetry.
pub const MIXER_TELEMETRY_CONFIG: &str = include_str!("../../../install/mixer/telemetry.yaml");
/// The stdio access log (`values.mixer.adapters.stdio.enabled`, on in the demo profile).
pub const MIXER_STDIO_CONFIG: &str = include_str!("../../../install/mixer/telemetry-stdio.yaml");
/// 1.4's in-proxy telemetry (`values.telemetry.v2.enabled`): the metadata-exchange and stats
/// EnvoyFilters.
pub const TELEMETRY_V2_FILTERS: &str = include_str!("../../../install/telemetry/telemetry-v2.yaml");
/// Where istio-telemetry's prometheus adapter serves the mesh's metrics.
pub const MIXER_PROMETHEUS_PORT: u16 = 42422;

pub const SYSTEM_NAMESPACE: &str = "istio-system";

/// The node agent's binary and log name.
pub const NODE_AGENT: &str = "node-agent";
/// Where 1.4's node agent listens on each node.
pub const NODE_AGENT_SOCKET: &str = "/var/run/sds/uds_path";

/// The Secret a plug-in CA comes from (`values.security.selfSigned=false`), mounted into
/// Citadel as a volume of the same name.
pub const CITADEL_CA_SECRET: &str = "cacerts";

/// The profile component of the ingress gateway.
pub const INGRESS_GATEWAY: &str = "gateways.components.ingressGateway";

/// The gateway manifests, by the profile component that enables each.
pub const GATEWAYS: [(&str, &str); 2] = [
    (INGRESS_GATEWAY, include_str!("../../../install/gateways/ingressgateway.yaml")),
    ("gateways.components.egressGateway", include_str!("../../../install/gateways/egressgateway.yaml")),
];

/// Where the proxy image has Envoy (1.4's `binaryPath`).
pub const ENVOY_PATH: &str = "/usr/local/bin/envoy";

/// An installation: the profile's name and its resolved spec. Saved as `install.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub profile: String,
    pub document: Value,
}

impl Plan {
    pub fn new(sets: &[String]) -> anyhow::Result<Self> {
        let (profile, document) = crate::profiles::resolve(sets)?;
        Ok(Self { profile, document })
    }

    /// A plan from `IstioControlPlane` overlay files (`-f`, by name for errors) and `--set`s,
    /// resolved as `istioctl manifest generate|apply` resolve them for a cluster.
    pub fn with_overlays(sets: &[String], overlays: &[(String, String)]) -> anyhow::Result<Self> {
        let install = istio_manifest::Install::resolve(sets, overlays)?;
        Ok(Self { profile: install.profile, document: install.document })
    }

    pub fn load(layout: &Layout) -> anyhow::Result<Self> {
        let path = layout.install_file();
        let text =
            std::fs::read(&path).with_context(|| format!("reading {} (is the mesh installed?)", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{}: not an installation", path.display()))
    }

    fn enabled(&self, path: &str) -> bool {
        crate::profiles::enabled(&self.document, path)
    }

    fn values(&self) -> &Value {
        &self.document["spec"]["values"]
    }

    /// The components to run, in start order.
    pub fn components(&self) -> Vec<Component> {
        let mut components = Vec::new();
        // Citadel first, as 1.4 installed it: the others' certificates come from it.
        if self.enabled("security") {
            components.push(CITADEL);
        }
        if self.enabled("configManagement") {
            components.push(GALLEY);
        }
        components.push(PILOT);
        if self.enabled("autoInjection") {
            components.push(INJECTOR);
        }
        if self.enabled("policy") {
            components.push(POLICY);
        }
        if self.enabled("telemetry") {
            components.push(TELEMETRY);
        }
        // 1.4's `prometheus` addon (`values.prometheus.enabled`, on in the demo).
        if self.values()["prometheus"]["enabled"].as_bool() == Some(true) {
            components.push(PROMETHEUS);
        }
        // 1.4's `istio-tracing` addon (`values.tracing.enabled`, on in the demo).
        if self.values()["tracing"]["enabled"].as_bool() == Some(true) {
            components.push(TRACING);
        }
        // The mesh console stands in for both 1.4's `grafana` and `kiali` addons.
        if ["grafana", "kiali"].iter().any(|addon| self.values()[addon]["enabled"].as_bool() == Some(true)) {
            components.push(CONSOLE);
        }
        components
    }

    /// Whether a component's program can be run: the mesh's own binaries always; an addon only
    /// when its program is installed (Debian's `prometheus`).
    pub fn program(&self, component: Component, binaries: &Path) -> Option<PathBuf> {
        if component == PROMETHEUS {
            return crate::prereq::find_program(component.binary);
        }
        Some(binaries.join(component.binary))
    }

    /// Mixer's objects: its default config, and a Service with Endpoints for each Mixer the
    /// installation runs (host processes, so Pilot gives sidecars their address as it would a
    /// pod's), and a rule keeping the calls to Mixer plaintext, which a mesh-wide mutual-TLS
    /// rule (`*.local`, installed or applied later) would otherwise cover: 1.4's Mixer had a
    /// sidecar to terminate them, this one has none.
    pub fn mixer_manifests(&self) -> Vec<String> {
        let mixers: Vec<Component> =
            self.components().into_iter().filter(|component| component.binary == POLICY.binary).collect();
        if mixers.is_empty() {
            return Vec::new();
        }
        let mut manifests = vec![MIXER_CONFIG.to_string()];
        if mixers.iter().any(|mixer| mixer.service == TELEMETRY.service) {
            manifests.push(MIXER_TELEMETRY_CONFIG.to_string());
            if self.values()["mixer"]["adapters"]["stdio"]["enabled"].as_bool() == Some(true) {
                manifests.push(MIXER_STDIO_CONFIG.to_string());
            }
        }
        for mixer in mixers {
            let (service, address) = (mixer.service, mixer.address);
            // istio-telemetry's Service also has the prometheus adapter's port, as 1.4's did.
            let prometheus = if mixer.service == TELEMETRY.service {
                format!("\n  - {{name: prometheus, port: {MIXER_PROMETHEUS_PORT}, protocol: TCP}}")
            } else {
                String::new()
            };
            manifests.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {service}\n  namespace: {SYSTEM_NAMESPACE}\n  labels: {{app: mixer, istio: mixer}}\nspec:\n  ports:\n  - {{name: grpc-mixer, port: 9091, protocol: TCP}}\n  - {{name: http-monitoring, port: 15014, protocol: TCP}}{prometheus}\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {service}\n  namespace: {SYSTEM_NAMESPACE}\nsubsets:\n- addresses: [{{ip: {address}}}]\n  ports:\n  - {{name: grpc-mixer, port: 9091, protocol: TCP}}\n  - {{name: http-monitoring, port: 15014, protocol: TCP}}{prometheus}\n"
            ));
            manifests.push(format!(
                "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: {service}\n  namespace: {SYSTEM_NAMESPACE}\nspec:\n  host: {service}.{SYSTEM_NAMESPACE}.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n"
            ));
        }
        manifests
    }

    /// With `values.telemetry.v2.enabled`, 1.4's in-proxy telemetry: its EnvoyFilters (the mesh
    /// config then turns Mixer's HTTP reports off).
    pub fn telemetry_manifests(&self) -> Vec<String> {
        if self.telemetry_v2() {
            vec![TELEMETRY_V2_FILTERS.to_string()]
        } else {
            Vec::new()
        }
    }

    /// `values.telemetry.enabled` (on unless set off) and `values.telemetry.v2.enabled`.
    fn telemetry_v2(&self) -> bool {
        let telemetry = &self.values()["telemetry"];
        telemetry["enabled"].as_bool() != Some(false) && telemetry["v2"]["enabled"].as_bool() == Some(true)
    }

    /// Names pods resolve to the control plane.
    pub fn control_hosts(&self) -> Vec<HostName> {
        self.components()
            .iter()
            .map(|component| HostName {
                service: component.service.to_string(),
                namespace: SYSTEM_NAMESPACE.to_string(),
                address: component.address,
            })
            .collect()
    }

    /// The mesh config (the `mesh` key of 1.4's `istio` ConfigMap).
    pub fn mesh_config(&self) -> Value {
        let global = &self.values()["global"];
        let mut mesh = json!({
            "accessLogFile": global["proxy"]["accessLogFile"].as_str().unwrap_or_default(),
            "enableTracing": true,
            "outboundTrafficPolicy": {"mode": global["outboundTrafficPolicy"]["mode"].as_str().unwrap_or("ALLOW_ANY")},
            "defaultConfig": {
                "discoveryAddress": format!("{}.{SYSTEM_NAMESPACE}:15010", PILOT.service),
                "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}},
            },
        });
        if self.envoy_binary().is_some() {
            mesh["defaultConfig"]["binaryPath"] = json!(ENVOY_PATH);
        }
        if global["mtls"]["auto"].as_bool() == Some(true) {
            mesh["enableAutoMtls"] = json!(true);
        }
        mesh["trustDomain"] = json!(self.trust_domain());
        if let Some(setting) = istio_manifest::locality_lb_setting(global) {
            mesh["localityLbSetting"] = setting;
        }
        let (ingress_mode, ingress_class) = istio_manifest::k8s_ingress::mesh_settings(self.values());
        // `OFF` is the default and left out: YAML 1.1 readers would take the word for a boolean.
        if ingress_mode != "OFF" {
            mesh["ingressControllerMode"] = json!(ingress_mode);
        }
        mesh["ingressClass"] = json!(ingress_class);
        if self.enabled("configManagement") {
            mesh["configSources"] = json!([{"address": format!("{}:9901", GALLEY.address)}]);
        }
        if let Some(socket) = self.node_agent_socket() {
            mesh["sdsUdsPath"] = json!(format!("unix:{}", socket.display()));
        }
        // Mixer, as 1.4's chart wrote it: checks and reports, and whether policy is on.
        if self.enabled("policy") {
            mesh["mixerCheckServer"] = json!(format!("{}.{SYSTEM_NAMESPACE}.svc.cluster.local:9091", POLICY.service));
        }
        if self.enabled("telemetry") {
            mesh["mixerReportServer"] =
                json!(format!("{}.{SYSTEM_NAMESPACE}.svc.cluster.local:9091", TELEMETRY.service));
        }
        // 1.4's installer: in-proxy telemetry replaces Mixer's HTTP reports.
        if self.telemetry_v2() {
            mesh["disableMixerHttpReports"] = json!(true);
        }
        mesh["disablePolicyChecks"] = json!(global["disablePolicyChecks"].as_bool().unwrap_or(true));
        mesh["policyCheckFailOpen"] = json!(global["policyCheckFailOpen"].as_bool().unwrap_or(false));
        mesh
    }

    /// `values.global.trustDomain` (1.4's default `cluster.local`): the mesh config's
    /// `trustDomain` and Citadel's `--trust-domain`, so workload identities are
    /// `spiffe://TRUST-DOMAIN/ns/NS/sa/SA`.
    pub fn trust_domain(&self) -> String {
        let domain = self.values()["global"]["trustDomain"].as_str().unwrap_or_default();
        if domain.is_empty() {
            "cluster.local".to_string()
        } else {
            domain.to_string()
        }
    }

    /// With `values.global.sds.enabled` (the `sds` profile), the node agent's socket on this
    /// host (`values.global.sds.udsPath`, 1.4's `unix:/var/run/sds/uds_path`); `None` without.
    pub fn node_agent_socket(&self) -> Option<PathBuf> {
        let sds = &self.values()["global"]["sds"];
        if sds["enabled"].as_bool() != Some(true) || !self.enabled("security") {
            return None;
        }
        let path = sds["udsPath"].as_str().filter(|path| !path.is_empty()).unwrap_or(NODE_AGENT_SOCKET);
        Some(PathBuf::from(path.strip_prefix("unix:").unwrap_or(path)))
    }

    /// How to start the node agent: 1.4's DaemonSet's settings, against Citadel's address.
    pub fn node_agent_command(&self, layout: &Layout, binaries: &Path) -> Option<(PathBuf, Vec<String>)> {
        let socket = self.node_agent_socket()?;
        let args = vec![
            "--workloadUDSPath".to_string(),
            socket.display().to_string(),
            "--caEndpoint".into(),
            format!("{}:8060", CITADEL.address),
            "--caTlsServerName".into(),
            CITADEL.service.into(),
            "--configPath".into(),
            layout.store().display().to_string(),
            "--citadelNamespace".into(),
            SYSTEM_NAMESPACE.into(),
            "--trustDomain".into(),
            self.trust_domain(),
        ];
        Some((binaries.join(NODE_AGENT), args))
    }

    /// The Envoy the proxies run instead of the built-in data plane
    /// (`values.global.proxy.envoyBinary`, a host path): it appears in the proxy containers at
    /// `/usr/local/bin/envoy`, as in the proxyv2 image, and the agents get `--binaryPath`.
    pub fn envoy_binary(&self) -> Option<PathBuf> {
        self.values()["global"]["proxy"]["envoyBinary"].as_str().filter(|path| !path.is_empty()).map(PathBuf::from)
    }

    /// The gateway manifests this installation applies, rendered with its values (see
    /// [`crate::gateways`]).
    pub fn gateway_manifests(&self) -> anyhow::Result<Vec<String>> {
        let envoy = self.envoy_binary().map(|_| ENVOY_PATH);
        let values = crate::gateways::GatewayValues { envoy_path: envoy, gateways: Some(&self.values()["gateways"]) };
        let mut manifests = GATEWAYS
            .iter()
            .filter(|(path, _)| self.enabled(path))
            .map(|(path, text)| crate::gateways::render(text, path, &values))
            .collect::<anyhow::Result<Vec<String>>>()?;
        // `values.global.k8sIngress.enabled`: the Gateway converted Ingresses are bound to.
        if self.enabled(INGRESS_GATEWAY) {
            if let Some(gateway) = istio_manifest::k8s_ingress::preconfigured_gateway(self.values(), SYSTEM_NAMESPACE) {
                manifests.push(serde_yaml::to_string(&gateway)?);
            }
        }
        Ok(manifests)
    }

    /// `values.global.mtls.enabled`: mutual TLS required mesh-wide.
    pub fn mtls_enabled(&self) -> bool {
        self.values()["global"]["mtls"]["enabled"].as_bool().unwrap_or(false)
    }

    /// The mesh-wide authentication objects 1.4's security chart installed with Citadel: the
    /// MeshPolicy `default`, PERMISSIVE; or with `values.global.mtls.enabled=true`, STRICT with
    /// the `default` rule making every client in the mesh use mutual TLS (and the `api-server`
    /// rule keeping the Kubernetes API plaintext).
    pub fn security_manifests(&self) -> Vec<String> {
        if !self.enabled("security") {
            return Vec::new();
        }
        if !self.mtls_enabled() {
            return vec![
                "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata:\n  name: default\n  labels:\n    app: security\nspec:\n  peers:\n  - mtls:\n      mode: PERMISSIVE\n".to_string(),
            ];
        }
        vec![
            "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata:\n  name: default\n  labels:\n    app: security\nspec:\n  peers:\n  - mtls: {}\n".to_string(),
            format!("apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: default\n  namespace: {SYSTEM_NAMESPACE}\n  labels:\n    app: security\nspec:\n  host: \"*.local\"\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n"),
            format!("apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: api-server\n  namespace: {SYSTEM_NAMESPACE}\n  labels:\n    app: security\nspec:\n  host: kubernetes.default.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n"),
        ]
    }

    /// The injector's Helm values: the profile's values, which the injector merges over the
    /// chart's defaults (keys it does not read are harmless).
    fn injector_values(&self) -> Value {
        match self.values() {
            Value::Object(_) => self.values().clone(),
            _ => json!({}),
        }
    }

    /// Whether Citadel makes its own root (`values.security.selfSigned`, 1.4's default) or
    /// signs with a plug-in CA from the Secret `istio-system/cacerts`.
    pub fn self_signed_ca(&self) -> bool {
        self.values()["security"]["selfSigned"].as_bool().unwrap_or(true)
    }

    /// Citadel's CA flags, as 1.4's Deployment set them: `--self-signed-ca`, or the four files
    /// of the `cacerts` Secret volume ([`CITADEL_CA_SECRET`], kept by the daemon).
    fn citadel_ca_flags(&self, layout: &Layout) -> Vec<String> {
        if self.self_signed_ca() {
            return vec!["--self-signed-ca".into()];
        }
        let dir = layout.control_volume(CITADEL.name, CITADEL_CA_SECRET);
        [
            ("--signing-cert", "ca-cert.pem"),
            ("--signing-key", "ca-key.pem"),
            ("--root-cert", "root-cert.pem"),
            ("--cert-chain", "cert-chain.pem"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_string(), dir.join(file).display().to_string()])
        .collect()
    }

    /// How to start a component: the program and its flags, named as in 1.4.
    pub fn command(
        &self,
        component: Component,
        layout: &Layout,
        binaries: &Path,
    ) -> (PathBuf, Vec<String>, Vec<(String, String)>) {
        let path = |p: PathBuf| p.display().to_string();
        let certs = layout.certs();
        let address = component.address;
        let (args, env): (Vec<String>, Vec<(String, String)>) = match component.name {
            "galley" => (
                vec![
                    "server".into(),
                    "--configPath".into(),
                    path(layout.store()),
                    "--meshConfigFile".into(),
                    path(layout.mesh_config()),
                    "--server-address".into(),
                    format!("tcp://{address}:9901"),
                    "--bind-address".into(),
                    address.to_string(),
                    "--tlsCertFile".into(),
                    path(certs.join("galley/cert-chain.pem")),
                    "--tlsKeyFile".into(),
                    path(certs.join("galley/key.pem")),
                ],
                Vec::new(),
            ),
            "pilot" => {
                let mut args = vec![
                    "discovery".to_string(),
                    "--meshConfig".into(),
                    path(layout.mesh_config()),
                    "--grpcAddr".into(),
                    format!("{address}:15010"),
                    "--httpAddr".into(),
                    format!("{address}:8080"),
                    "--monitoringAddr".into(),
                    format!("{address}:15014"),
                ];
                if self.enabled("configManagement") {
                    args.extend(["--registries".into(), "MCP".into()]);
                } else {
                    args.extend(["--configDir".into(), path(layout.store())]);
                }
                let sampling = self.values()["pilot"]["traceSampling"].as_f64().unwrap_or(1.0);
                let mut env = vec![("PILOT_TRACE_SAMPLING".to_string(), sampling.to_string())];
                // 1.4's `pilot.env`: extra environment for the discovery container.
                if let Some(extra) = self.values()["pilot"]["env"].as_object() {
                    for (name, value) in extra {
                        let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                        env.push((name.clone(), value));
                    }
                }
                (args, env)
            }
            "citadel" => (
                [
                    self.citadel_ca_flags(layout),
                    vec![
                        "--configPath".into(),
                        path(layout.store()),
                        "--citadel-storage-namespace".into(),
                        SYSTEM_NAMESPACE.into(),
                        // Citadel's own namespace (gateways, the control plane) is always served.
                        "--listened-namespaces".into(),
                        SYSTEM_NAMESPACE.into(),
                        "--enable-namespaces-by-default".into(),
                        self.values()["security"]["enableNamespacesByDefault"].as_bool().unwrap_or(true).to_string(),
                        "--workload-cert-ttl".into(),
                        self.values()["security"]["workloadCertTtl"].as_str().unwrap_or("2160h").to_string(),
                        "--custom-dns-names".into(),
                        format!("istio-pilot-service-account.{SYSTEM_NAMESPACE}:istio-pilot.{SYSTEM_NAMESPACE}"),
                        "--service-account-key-file".into(),
                        path(layout.service_account_public_key()),
                        "--bind-address".into(),
                        address.to_string(),
                        "--trust-domain".into(),
                        self.trust_domain(),
                    ],
                ]
                .concat(),
                Vec::new(),
            ),
            "prometheus" => {
                // The config, the data directory, the bridge address, 1.4's retention.
                let program = self.program(component, binaries).unwrap_or_else(|| PathBuf::from(component.binary));
                let args = vec![
                    format!("--config.file={}", layout.prometheus_config().display()),
                    format!("--storage.tsdb.path={}", layout.prometheus().join("data").display()),
                    "--storage.tsdb.retention.time=6h".to_string(),
                    format!("--web.listen-address={address}:{PROMETHEUS_PORT}"),
                ];
                return (program, args, Vec::new());
            }
            "istio-tracing" => (
                vec![
                    "--address".into(),
                    address.to_string(),
                    "--zipkinPort".into(),
                    ZIPKIN_PORT.to_string(),
                    "--otlpGrpcPort".into(),
                    OTLP_PORTS.0.to_string(),
                    "--otlpHttpPort".into(),
                    OTLP_PORTS.1.to_string(),
                ],
                Vec::new(),
            ),
            "mesh-console" => {
                let mut args = vec![
                    "--address".to_string(),
                    address.to_string(),
                    "--port".into(),
                    CONSOLE_PORT.to_string(),
                    "--pilot".into(),
                    format!("http://{}:8080", PILOT.address),
                ];
                let components = self.components();
                if components.contains(&PROMETHEUS) {
                    args.extend(["--prometheus".into(), format!("http://{}:{PROMETHEUS_PORT}", PROMETHEUS.address)]);
                }
                if components.contains(&TRACING) {
                    args.extend(["--zipkin".into(), format!("http://{}:{ZIPKIN_PORT}", TRACING.address)]);
                }
                (args, Vec::new())
            }
            "istio-policy" | "istio-telemetry" => {
                let store_url = if self.enabled("configManagement") {
                    format!("mcp://{}:9901", GALLEY.address)
                } else {
                    format!("fs://{}", layout.store().display())
                };
                (
                    vec![
                        "server".into(),
                        "--configStoreURL".into(),
                        store_url,
                        "--configDefaultNamespace".into(),
                        SYSTEM_NAMESPACE.into(),
                        "--address".into(),
                        address.to_string(),
                        "--port".into(),
                        istio_runtime::ports::MIXER.to_string(),
                        "--monitoringPort".into(),
                        istio_runtime::ports::MONITORING.to_string(),
                        // kubernetesenv reads the platform's pods.
                        "--podStore".into(),
                        path(layout.store()),
                        // 1.4's chart: only the handler/instance/rule kinds.
                        "--useAdapterCRDs=false".into(),
                        "--useTemplateCRDs=false".into(),
                    ],
                    Vec::new(),
                )
            }
            _ => (
                vec![
                    "--injectConfig".into(),
                    path(layout.config().join("inject-config")),
                    "--valuesFile".into(),
                    path(layout.config().join("inject-values")),
                    "--meshConfig".into(),
                    path(layout.mesh_config()),
                    "--tlsCertFile".into(),
                    path(certs.join("sidecar-injector/cert-chain.pem")),
                    "--tlsKeyFile".into(),
                    path(certs.join("sidecar-injector/key.pem")),
                    "--bind-address".into(),
                    address.to_string(),
                ],
                Vec::new(),
            ),
        };
        (binaries.join(component.binary), args, env)
    }
}

/// Writes the installation's files: the plan, the mesh config, the injector's config and
/// values, a CA with the webhooks' serving certificates, and the key pods' service-account
/// tokens are signed with.
pub fn write_files(layout: &Layout, plan: &Plan) -> anyhow::Result<()> {
    for dir in
        [layout.root().to_path_buf(), layout.store(), layout.config(), layout.certs(), layout.logs(), layout.pids()]
    {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(layout.install_file(), serde_json::to_vec_pretty(plan)?)?;
    std::fs::write(layout.mesh_config(), serde_yaml::to_string(&plan.mesh_config())?)?;
    std::fs::write(
        layout.config().join("inject-config"),
        "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\n",
    )?;
    std::fs::write(layout.config().join("inject-values"), serde_json::to_vec_pretty(&plan.injector_values())?)?;
    write_certificates(layout)?;
    crate::tokens::write_signing_key(layout)
}

/// A store of objects created before the installation, moved aside while a new one is set up.
#[derive(Debug)]
pub struct StagedStore {
    dir: PathBuf,
}

/// Moves aside the store of a root that holds objects but no installation (the cluster before
/// Istio), for [`StagedStore::restore`] to put back once the root is set up.
pub fn stage_store(layout: &Layout) -> anyhow::Result<Option<StagedStore>> {
    if layout.install_file().exists() || !layout.store().is_dir() {
        return Ok(None);
    }
    let name = layout.root().file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = layout.root().with_file_name(format!(".{name}.store-{}", std::process::id()));
    std::fs::rename(layout.store(), &dir)
        .with_context(|| format!("moving {} aside to {}", layout.store().display(), dir.display()))?;
    Ok(Some(StagedStore { dir }))
}

impl StagedStore {
    /// Puts the objects back as the new installation's store.
    pub fn restore(self, layout: &Layout) -> anyhow::Result<()> {
        std::fs::create_dir_all(layout.root()).with_context(|| format!("creating {}", layout.root().display()))?;
        std::fs::rename(&self.dir, layout.store())
            .with_context(|| format!("restoring {} as {}", self.dir.display(), layout.store().display()))
    }
}

/// The CA every webhook call trusts.
pub fn ca_pem(layout: &Layout) -> anyhow::Result<Vec<u8>> {
    let path = layout.certs().join("ca.pem");
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn write_certificates(layout: &Layout) -> anyhow::Result<()> {
    let ca = CertificateAuthority::self_signed("istio-rs local platform CA")?;
    std::fs::write(layout.certs().join("ca.pem"), ca.root_pem())?;
    for component in [GALLEY, INJECTOR] {
        let names = [
            format!("{}.{SYSTEM_NAMESPACE}.svc", component.service),
            format!("{}.{SYSTEM_NAMESPACE}", component.service),
            component.address.to_string(),
        ];
        let issued = ca.issue(&LeafRequest { ttl: ca::DEFAULT_ROOT_TTL, ..LeafRequest::for_names(names) })?;
        let dir = CertDir::new(layout.certs().join(component.name));
        dir.write_serving(issued.cert_chain_pem.as_bytes(), issued.key_pem.as_bytes())
            .with_context(|| format!("writing {}", dir.dir().display()))?;
    }
    Ok(())
}

/// The webhook of a component, for admission calls.
pub fn webhook(layout: &Layout, component: Component) -> anyhow::Result<crate::admission::Webhook> {
    Ok(crate::admission::Webhook {
        address: std::net::SocketAddr::new(component.address.into(), 9443),
        server_name: format!("{}.{SYSTEM_NAMESPACE}.svc", component.service),
        ca_pem: ca_pem(layout)?,
    })
}

#[cfg(test)]
#[path = "install/tests.rs"]
mod tests;
