//! Pilot's model of the mesh: services with their ports and endpoints (from ServiceEntries —
//! the ones users write and the synthetic ones Galley builds from Kubernetes), and the Istio
//! traffic config that applies to them. A `PushContext` is an immutable snapshot of both; the
//! xDS generators read it and never see it change underneath them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use istio_api::pb::istio::networking::v1alpha3 as net;

/// Istio's port protocols, from a port's `protocol` or name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tcp,
    Tls,
    Mongo,
    Redis,
    Mysql,
    Udp,
    /// Not declared: outbound traffic is sniffed, which 1.4 did by default.
    Unsupported,
}

impl Protocol {
    pub fn parse(text: &str) -> Protocol {
        match text.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "GRPC" => Protocol::Grpc,
            "GRPC-WEB" => Protocol::GrpcWeb,
            "HTTPS" => Protocol::Https,
            "TCP" => Protocol::Tcp,
            "TLS" => Protocol::Tls,
            "MONGO" => Protocol::Mongo,
            "REDIS" => Protocol::Redis,
            "MYSQL" => Protocol::Mysql,
            "UDP" => Protocol::Udp,
            _ => Protocol::Unsupported,
        }
    }

    /// Routed as HTTP (with HCM and RDS). Undeclared ports are sniffed and routed as HTTP.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb | Protocol::Unsupported)
    }

    /// The protocol an inbound listener serves the port with. 1.4 did not sniff inbound
    /// traffic by default (`PILOT_ENABLE_PROTOCOL_SNIFFING_FOR_INBOUND=false`), so an
    /// undeclared port is proxied as TCP: TLS an application terminates itself passes through.
    pub fn inbound(self) -> Protocol {
        if self == Protocol::Unsupported {
            Protocol::Tcp
        } else {
            self
        }
    }

    /// Upstream connections speak HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub number: u32,
    pub protocol: Protocol,
}

/// How a service's endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoints are listed (EDS).
    Static,
    /// Endpoints are DNS names resolved by the proxy (STRICT_DNS).
    Dns,
    /// Connect to the original destination (ORIGINAL_DST).
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: String,
    /// Port number by service port name; missing names use the service port number.
    pub ports: HashMap<String, u32>,
    pub labels: HashMap<String, String>,
    pub locality: String,
    pub weight: u32,
}

impl Endpoint {
    pub fn port_for(&self, port: &ServicePort) -> u32 {
        self.ports.get(&port.name).copied().unwrap_or(port.number)
    }
}

/// A service as the proxies see it: one host name.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub hostname: String,
    pub namespace: String,
    /// The virtual IP (ClusterIP or ServiceEntry address), if any.
    pub address: Option<String>,
    pub ports: Vec<ServicePort>,
    pub resolution: Resolution,
    pub mesh_external: bool,
    pub endpoints: Vec<Endpoint>,
    pub service_accounts: Vec<String>,
    /// `exportTo`: empty or `*` for every namespace, `.` for its own.
    pub export_to: Vec<String>,
}

impl Service {
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.number == number)
    }

    /// Builds one service per host of a ServiceEntry.
    pub fn from_service_entry(entry: &net::ServiceEntry, namespace: &str) -> Vec<Service> {
        use net::service_entry::{Location, Resolution as SeResolution};
        let ports: Vec<ServicePort> = entry
            .ports
            .iter()
            .map(|port| ServicePort {
                name: port.name.clone(),
                number: port.number,
                protocol: Protocol::parse(&port.protocol),
            })
            .collect();
        let resolution = match SeResolution::try_from(entry.resolution).unwrap_or(SeResolution::None) {
            SeResolution::Static => Resolution::Static,
            SeResolution::Dns => Resolution::Dns,
            SeResolution::None => Resolution::Passthrough,
        };
        let endpoints: Vec<Endpoint> = entry
            .endpoints
            .iter()
            .map(|endpoint| Endpoint {
                address: endpoint.address.clone(),
                ports: endpoint.ports.clone(),
                labels: endpoint.labels.clone(),
                locality: endpoint.locality.clone(),
                weight: endpoint.weight,
            })
            .collect();
        let address = entry.addresses.iter().find(|address| !address.contains('/')).cloned();
        entry
            .hosts
            .iter()
            .map(|host| Service {
                hostname: host.clone(),
                namespace: namespace.to_string(),
                address: address.clone(),
                ports: ports.clone(),
                resolution,
                mesh_external: entry.location == Location::MeshExternal as i32,
                endpoints: if resolution == Resolution::Dns && endpoints.is_empty() {
                    vec![Endpoint {
                        address: host.clone(),
                        ports: HashMap::new(),
                        labels: HashMap::new(),
                        locality: String::new(),
                        weight: 0,
                    }]
                } else {
                    endpoints.clone()
                },
                service_accounts: entry.subject_alt_names.clone(),
                export_to: entry.export_to.clone(),
            })
            .collect()
    }
}

/// An Istio config object with its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub namespace: String,
    pub spec: T,
}

impl<T> Named<T> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The root namespace of a mesh config that names none: its selector-less Sidecar is the
/// mesh-wide default, and its DestinationRules and EnvoyFilters apply to every namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Whether an `exportTo` list lets `namespace` see an object from `owner_namespace`.
pub fn exported_to(export_to: &[String], owner_namespace: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|target| target == "*" || target == namespace || (target == "." && owner_namespace == namespace))
}

/// Mesh-wide settings Pilot uses when generating config.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSettings {
    pub domain_suffix: String,
    pub connect_timeout: prost_types::Duration,
    /// `outboundTrafficPolicy.mode`: ALLOW_ANY (true) or REGISTRY_ONLY.
    pub allow_any: bool,
    /// `proxyListenPort`: where sidecars capture outbound traffic (`virtualOutbound`).
    pub proxy_listen_port: u32,
    /// `trustDomain`: the SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// `trustDomainAliases`: trust domains that authorization policies treat as this one.
    pub trust_domain_aliases: Vec<String>,
    /// `rootNamespace`: where mesh-wide Sidecars, DestinationRules and EnvoyFilters live.
    pub root_namespace: String,
    /// `accessLogFile`: where proxies write access logs (`/dev/stdout`); empty for none.
    pub access_log_file: String,
    /// `accessLogFormat`: the text format; empty for Istio's.
    pub access_log_format: String,
    /// `enableTracing`: connection managers trace requests (with the bootstrap's tracer).
    pub enable_tracing: bool,
    /// The percentage of requests traced (`PILOT_TRACE_SAMPLING`, 1.0 by default as in 1.4).
    pub trace_sampling: f64,
    /// `enableAutoMtls`: clients pick Istio mutual TLS by themselves for destinations with
    /// sidecars where no DestinationRule sets TLS.
    pub auto_mtls: bool,
    /// `sdsUdsPath`: the node agent's socket (`unix:/var/run/sds/uds_path`) that proxies in
    /// SDS mode fetch their certificates from; empty when there is no node agent.
    pub sds_uds_path: String,
    /// Mixer: where proxies send checks and reports (`HOST:PORT`), and how.
    pub mixer: MixerSettings,
    /// `ingressControllerMode` and `ingressClass`: the Kubernetes Ingresses Pilot serves when
    /// it reads the cluster itself (through Galley, Galley converts them).
    pub ingress: istio_config::kube_ingress::IngressSettings,
    /// `localityLbSetting`: when present (1.4's default install has it), load assignments are
    /// prioritised or weighted by locality for each proxy (`xds::locality`).
    pub locality_lb_setting: Option<net::LocalityLoadBalancerSetting>,
}

/// The mesh config's Mixer settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MixerSettings {
    /// `mixerCheckServer` (`istio-policy.istio-system.svc.cluster.local:9091`); empty: none.
    pub check_server: String,
    /// `mixerReportServer`; empty: none.
    pub report_server: String,
    /// `disablePolicyChecks`.
    pub disable_policy_checks: bool,
    /// `policyCheckFailOpen`: let requests through when Mixer cannot be asked.
    pub policy_check_fail_open: bool,
    /// `disableMixerHttpReports`.
    pub disable_http_reports: bool,
    /// `enableClientSidePolicyCheck`: client sidecars check too.
    pub client_side_policy_check: bool,
    /// `reportBatchMaxEntries` / `reportBatchMaxTime` (0: the proxy's defaults).
    pub report_batch_max_entries: u32,
    pub report_batch_max_time: Option<prost_types::Duration>,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            domain_suffix: "cluster.local".to_string(),
            connect_timeout: prost_types::Duration { seconds: 10, nanos: 0 },
            allow_any: true,
            proxy_listen_port: u32::from(istio_runtime::ports::PROXY_OUTBOUND_CAPTURE),
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_string(),
            access_log_file: String::new(),
            access_log_format: String::new(),
            enable_tracing: true,
            trace_sampling: 1.0,
            auto_mtls: false,
            sds_uds_path: String::new(),
            mixer: MixerSettings::default(),
            ingress: istio_config::kube_ingress::IngressSettings::from_mesh_config(
                &serde_json::Value::Null,
                "cluster.local",
            ),
            locality_lb_setting: None,
        }
    }
}

/// Encoded xDS resources shared by every proxy that would get the same ones, for the lifetime
/// of one push context (so it never needs invalidating).
#[derive(Default)]
pub struct GeneratedCache {
    entries: std::sync::Mutex<HashMap<String, Arc<SharedResources>>>,
}

/// Resources generated once and shared by every proxy that gets them.
#[derive(Debug, PartialEq)]
pub struct SharedResources {
    pub resources: Vec<GeneratedResource>,
    /// A hash of every resource's name and content, in order: equal sets have equal
    /// fingerprints, so a stream compares a whole set at once.
    pub fingerprint: u64,
}

impl SharedResources {
    pub fn new(resources: Vec<GeneratedResource>) -> SharedResources {
        let fingerprint = fingerprint(&resources);
        SharedResources { resources, fingerprint }
    }
}

/// A hash of `resources`' names and contents, in order.
pub fn fingerprint<'a>(resources: impl IntoIterator<Item = &'a GeneratedResource>) -> u64 {
    resources.into_iter().fold(0xcbf2_9ce4_8422_2325, |acc, resource| {
        combine_fingerprints(acc, istio_config::hash::fnv1a64(resource.name.bytes()) ^ resource.hash)
    })
}

/// `acc` followed by `next`, as one hash (order matters).
pub fn combine_fingerprints(acc: u64, next: u64) -> u64 {
    (acc ^ next).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29)
}

/// One generated resource: its name, its encoding, and a hash of that encoding (computed once,
/// so a stream can tell cheaply whether a proxy already has this exact resource).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedResource {
    pub name: String,
    /// Shared: every proxy that gets this resource holds the same encoding.
    pub resource: Arc<envoy_types::pb::google::protobuf::Any>,
    /// The same, encoded once as an entry of a state-of-the-world response's `resources`;
    /// every response that carries the resource sends these bytes.
    pub wire: bytes::Bytes,
    pub hash: u64,
}

impl GeneratedResource {
    pub fn new(name: String, resource: envoy_types::pb::google::protobuf::Any) -> Self {
        let hash = istio_config::hash::fnv1a64(resource.type_url.bytes().chain(resource.value.iter().copied()));
        let wire = crate::xds::wire::resource_entry(&resource);
        GeneratedResource { name, resource: Arc::new(resource), wire, hash }
    }
}

impl std::fmt::Debug for GeneratedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().map(|entries| entries.len()).unwrap_or(0);
        write!(f, "GeneratedCache({entries} entries)")
    }
}

impl GeneratedCache {
    /// The resources under `key`, generating them with `make` the first time.
    pub fn get_or_generate(&self, key: String, make: impl FnOnce() -> Vec<GeneratedResource>) -> Arc<SharedResources> {
        if let Some(found) = istio_runtime::sync::lock(&self.entries).get(&key) {
            return found.clone();
        }
        // Generate outside the lock; two proxies racing may both generate, and either result is right.
        let generated = Arc::new(SharedResources::new(make()));
        istio_runtime::sync::lock(&self.entries).entry(key).or_insert(generated).clone()
    }
}

/// What a context changed, when only endpoints did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointUpdate {
    /// The version of the context this one changed.
    pub since: String,
    /// Every address the changed services had or have as an endpoint.
    pub addresses: std::collections::HashSet<String>,
}

impl EndpointUpdate {
    /// Whether a proxy at `ips` that was pushed the `since` context needs only EDS now.
    pub(crate) fn covers(&self, pushed_version: &str, ips: &[String]) -> bool {
        self.since == pushed_version && !ips.iter().any(|ip| self.addresses.contains(ip))
    }
}

/// Everything the generators read, at one moment.
#[derive(Debug, Default)]
pub struct PushContext {
    /// Resources already generated from this context.
    pub cache: GeneratedCache,
    /// What streams in a shared state are sent from this context, decided once.
    pub(crate) sotw_memo: crate::xds::sotw_memo::SotwMemo,
    /// Conflicts and endpoint counts found while generating from this context.
    pub(crate) status: crate::push_status::PushStatus,
    /// Whether any VirtualService matches on `sourceLabels` (then routes depend on the proxy's
    /// labels, not only on its namespace). Set when the context is built.
    pub routes_depend_on_labels: bool,
    /// Set when this context differs from the one before it only in the endpoints of services
    /// whose clusters take them over EDS: then only EDS changed, except for the proxies at those
    /// endpoints (their own inbound config follows their service instances).
    pub(crate) endpoint_update: Option<EndpointUpdate>,
    /// Changes with every push; sent as the xDS `version_info`.
    pub version: String,
    /// When this context was built (the start of `pilot_proxy_convergence_time`).
    pub created: Option<std::time::Instant>,
    pub mesh: MeshSettings,
    /// Services by host name.
    pub services: BTreeMap<String, Arc<Service>>,
    pub virtual_services: Vec<Named<net::VirtualService>>,
    pub destination_rules: Vec<Named<net::DestinationRule>>,
    pub gateways: Vec<Named<net::Gateway>>,
    pub sidecars: Vec<Named<net::Sidecar>>,
    /// EnvoyFilters, oldest first.
    pub envoy_filters: Vec<Named<net::EnvoyFilter>>,
    /// The config patches of those that have them, ready to apply.
    pub(crate) envoy_filter_patches: Vec<Arc<crate::xds::config_patch::prepared::PreparedEnvoyFilter>>,
    /// Authentication `Policy` objects, oldest first.
    pub authn_policies: Vec<Named<istio_api::pb::istio::authentication::v1alpha1::Policy>>,
    /// `security.istio.io/v1beta1` AuthorizationPolicies.
    pub authorization_policies: Vec<Named<istio_api::pb::istio::security::v1beta1::AuthorizationPolicy>>,
    /// v1alpha1 authorization: roles, bindings (oldest first) and the ClusterRbacConfig
    /// `default` (or the deprecated RbacConfig `default` when there is none).
    pub service_roles: Vec<Named<istio_api::pb::istio::rbac::v1alpha1::ServiceRole>>,
    pub service_role_bindings: Vec<Named<istio_api::pb::istio::rbac::v1alpha1::ServiceRoleBinding>>,
    pub rbac_config: Option<Named<istio_api::pb::istio::rbac::v1alpha1::RbacConfig>>,
    /// Mixer client config: `QuotaSpec`s and the bindings that charge a service's requests to them.
    pub quota_specs: Vec<Named<istio_api::pb::istio::mixer::v1::config::client::QuotaSpec>>,
    pub quota_spec_bindings: Vec<Named<istio_api::pb::istio::mixer::v1::config::client::QuotaSpecBinding>>,
    /// The keys of the policies' `jwksUri`s (and discovered issuers), fetched by Pilot.
    pub jwks: crate::jwks::JwksKeys,
    /// The `MeshPolicy` named `default`, the only one that applies.
    pub mesh_policy: Option<Named<istio_api::pb::istio::authentication::v1alpha1::Policy>>,
    /// Whether any service, VirtualService or DestinationRule is exported to fewer than all
    /// namespaces (then what a proxy sees depends on its namespace).
    pub has_private_exports: bool,
    /// Whether DestinationRules for one host live in several namespaces (then which one a proxy
    /// uses depends on its namespace).
    pub destination_rules_vary: bool,
    /// Pods known to the Kubernetes registry, by IP: a proxy that announces no labels gets its
    /// pod's.
    pub pods: BTreeMap<String, Arc<PodInfo>>,
    /// The host names of the services with an endpoint at each address, made when first asked.
    pub(crate) services_by_endpoint: std::sync::OnceLock<HashMap<String, Vec<String>>>,
}

/// What the registry knows about a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub labels: HashMap<String, String>,
}

impl PushContext {
    /// Whether a stream that was last pushed `pushed_version`, for a proxy at `ips`, needs only
    /// EDS from this context; the stream has been pushed this context afterwards.
    pub(crate) fn only_endpoints_since(&self, pushed_version: &mut String, ips: &[String]) -> bool {
        let only_endpoints = self.endpoint_update.as_ref().is_some_and(|update| update.covers(pushed_version, ips));
        pushed_version.clone_from(&self.version);
        only_endpoints
    }

    /// The services with an endpoint at one of `ips` (a workload's own services), by host name.
    pub fn services_at<'p>(&'p self, ips: &[String]) -> impl Iterator<Item = &'p Arc<Service>> + use<'p> {
        let index = self.services_by_endpoint.get_or_init(|| {
            let mut index: HashMap<String, Vec<String>> = HashMap::new();
            for service in self.services.values() {
                for endpoint in &service.endpoints {
                    let hosts = index.entry(endpoint.address.clone()).or_default();
                    if hosts.last() != Some(&service.hostname) {
                        hosts.push(service.hostname.clone());
                    }
                }
            }
            index
        });
        let mut hosts: Vec<&String> = ips.iter().filter_map(|ip| index.get(ip)).flatten().collect();
        hosts.sort();
        hosts.dedup();
        hosts.into_iter().filter_map(|host| self.services.get(host))
    }

    /// Every Jwt of every authentication policy (origins and peers), the MeshPolicy's too.
    pub fn jwts(&self) -> impl Iterator<Item = &istio_api::pb::istio::authentication::v1alpha1::Jwt> {
        use istio_api::pb::istio::authentication::v1alpha1::peer_authentication_method::Params;
        self.authn_policies.iter().chain(self.mesh_policy.iter()).flat_map(|policy| {
            let origins = policy.spec.origins.iter().filter_map(|origin| origin.jwt.as_ref());
            let peers = policy.spec.peers.iter().filter_map(|peer| match &peer.params {
                Some(Params::Jwt(jwt)) => Some(jwt),
                _ => None,
            });
            origins.chain(peers)
        })
    }

    /// The DestinationRule for a host: an exact host match first, then the most specific
    /// wildcard (`*.example.com` before `*`).
    pub fn destination_rule(&self, hostname: &str) -> Option<&Named<net::DestinationRule>> {
        if let Some(rule) =
            self.destination_rules.iter().find(|rule| self.qualify(&rule.spec.host, &rule.namespace) == hostname)
        {
            return Some(rule);
        }
        self.destination_rules
            .iter()
            .filter(|rule| rule.spec.host.starts_with('*') && hostname.ends_with(&rule.spec.host[1..]))
            .max_by_key(|rule| rule.spec.host.len())
    }

    /// The DestinationRule a proxy in `proxy_namespace` uses for a host, in 1.4's order: a rule in
    /// the proxy's own namespace, else one the service's namespace exports to it, else one the
    /// root namespace exports, else any other exported one. Within each, an exact host beats the
    /// most specific wildcard.
    pub fn destination_rule_for(&self, hostname: &str, proxy_namespace: &str) -> Option<&Named<net::DestinationRule>> {
        let specificity = |rule: &Named<net::DestinationRule>| -> Option<usize> {
            let host = self.qualify(&rule.spec.host, &rule.namespace);
            if host == hostname {
                Some(usize::MAX)
            } else if host.starts_with('*') && hostname.ends_with(&host[1..]) {
                Some(host.len())
            } else {
                None
            }
        };
        let exported =
            |rule: &Named<net::DestinationRule>| exported_to(&rule.spec.export_to, &rule.namespace, proxy_namespace);
        let service_namespace = self.service(hostname).map(|s| s.namespace.as_str());
        // Lower is preferred; `None` means the proxy may not use the rule.
        let tier = |rule: &Named<net::DestinationRule>| -> Option<u8> {
            if !proxy_namespace.is_empty() && rule.namespace == proxy_namespace {
                Some(0)
            } else if !exported(rule) {
                None
            } else if Some(rule.namespace.as_str()) == service_namespace {
                Some(1)
            } else if rule.namespace == self.mesh.root_namespace {
                Some(2)
            } else {
                Some(3)
            }
        };
        self.destination_rules
            .iter()
            .filter_map(|rule| Some((tier(rule)?, std::cmp::Reverse(specificity(rule)?), rule)))
            .min_by_key(|(tier, specificity, _)| (*tier, *specificity))
            .map(|(_, _, rule)| rule)
    }

    /// Resolves a short host name written in `namespace` to its FQDN (`reviews` →
    /// `reviews.default.svc.cluster.local`), as Istio 1.4 did for config hosts.
    pub fn qualify(&self, host: &str, namespace: &str) -> String {
        if host.contains('.') || host.starts_with('*') || namespace.is_empty() {
            host.to_string()
        } else {
            format!("{host}.{namespace}.svc.{}", self.mesh.domain_suffix)
        }
    }

    pub fn service(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.services.get(hostname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_entries_become_services() {
        let entry = net::ServiceEntry {
            hosts: vec!["reviews.default.svc.cluster.local".into(), "reviews.alt".into()],
            addresses: vec!["10.96.0.12".into()],
            ports: vec![net::Port { number: 9080, protocol: "HTTP".into(), name: "http".into() }],
            location: net::service_entry::Location::MeshInternal as i32,
            resolution: net::service_entry::Resolution::Static as i32,
            endpoints: vec![net::service_entry::Endpoint {
                address: "10.1.0.7".into(),
                ports: HashMap::from([("http".to_string(), 19080)]),
                labels: HashMap::from([("version".to_string(), "v1".to_string())]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let services = Service::from_service_entry(&entry, "default");
        assert_eq!(services.len(), 2);
        let service = &services[0];
        assert_eq!(service.address.as_deref(), Some("10.96.0.12"));
        assert_eq!(service.resolution, Resolution::Static);
        assert!(!service.mesh_external);
        assert_eq!(service.endpoints[0].port_for(&service.ports[0]), 19080);
        let dns = net::ServiceEntry {
            hosts: vec!["www.google.com".into()],
            resolution: net::service_entry::Resolution::Dns as i32,
            ..Default::default()
        };
        assert_eq!(Service::from_service_entry(&dns, "default")[0].endpoints[0].address, "www.google.com");
    }

    #[test]
    fn destination_rules_match_exact_then_most_specific_wildcard() {
        let rule = |host: &str, namespace: &str| Named {
            name: host.replace('*', "star"),
            namespace: namespace.to_string(),
            spec: net::DestinationRule { host: host.to_string(), ..Default::default() },
        };
        let context = PushContext {
            destination_rules: vec![
                rule("*", "istio-system"),
                rule("*.local", "istio-system"),
                rule("reviews", "default"),
            ],
            ..Default::default()
        };
        assert_eq!(
            context.destination_rule("reviews.default.svc.cluster.local").map(|r| r.spec.host.as_str()),
            Some("reviews")
        );
        assert_eq!(
            context.destination_rule("ratings.default.svc.cluster.local").map(|r| r.spec.host.as_str()),
            Some("*.local")
        );
        assert_eq!(context.destination_rule("www.google.com").map(|r| r.spec.host.as_str()), Some("*"));
        assert_eq!(Protocol::parse("grpc-web"), Protocol::GrpcWeb);
        assert!(Protocol::Unsupported.is_http());
        assert_eq!(Protocol::Unsupported.inbound(), Protocol::Tcp, "inbound sniffing is off, as in 1.4");
        assert_eq!(Protocol::Http.inbound(), Protocol::Http);
    }

    #[test]
    fn a_proxy_uses_its_own_namespace_rule_then_the_services_then_the_roots() {
        let rule = |name: &str, namespace: &str, host: &str, export_to: &[&str]| Named {
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec: net::DestinationRule {
                host: host.to_string(),
                export_to: export_to.iter().map(|e| e.to_string()).collect(),
                ..Default::default()
            },
        };
        let mut context = PushContext {
            destination_rules: vec![
                rule("mesh-default", "istio-system", "*.local", &[]),
                rule("owner", "default", "reviews.default.svc.cluster.local", &[]),
                rule("private", "default", "ratings.default.svc.cluster.local", &["."]),
                rule("client-side", "prod", "reviews.default.svc.cluster.local", &["."]),
            ],
            ..Default::default()
        };
        context.services.insert(
            "reviews.default.svc.cluster.local".into(),
            Arc::new(
                Service::from_service_entry(
                    &net::ServiceEntry {
                        hosts: vec!["reviews.default.svc.cluster.local".into()],
                        ..Default::default()
                    },
                    "default",
                )
                .remove(0),
            ),
        );
        let chosen = |host: &str, ns: &str| context.destination_rule_for(host, ns).map(|r| r.name.clone());
        assert_eq!(chosen("reviews.default.svc.cluster.local", "prod").as_deref(), Some("client-side"));
        assert_eq!(chosen("reviews.default.svc.cluster.local", "dev").as_deref(), Some("owner"));
        assert_eq!(chosen("ratings.default.svc.cluster.local", "default").as_deref(), Some("private"));
        assert_eq!(chosen("ratings.default.svc.cluster.local", "dev").as_deref(), Some("mesh-default"));
    }
}
