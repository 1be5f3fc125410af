//! What one proxy may see (Istio 1.4's SidecarScope): services, VirtualServices and
//! DestinationRules are filtered by their `exportTo` (`*` everyone, `.` their own namespace), and
//! a sidecar's outbound view by the Sidecar resource that applies to it — its egress `hosts`
//! (`ns/host`, with `.` for the Sidecar's namespace, `*` for any and `~` for none) and its
//! `outboundTrafficPolicy`.
//!
//! Which Sidecar applies: one in the proxy's namespace whose `workloadSelector` matches its labels,
//! else the one in its namespace without a selector, else the one without a selector in the mesh
//! config's root namespace (`istio-system` unless `rootNamespace` says otherwise).
//!
//! Proxies with the same scope key see the same outbound config, so generated resources are
//! cached per key.

pub(crate) mod authn;
pub(crate) mod gateways;
pub(crate) mod traffic_policy;
pub(crate) mod virtual_services;

use istio_api::pb::istio::networking::v1alpha3 as net;

use crate::model::{exported_to, Named, PushContext, Service};
use crate::node::{Proxy, ProxyKind};

/// One egress listener's host selector: a namespace (`*` any) and a host (may be a wildcard).
#[derive(Debug, Clone, PartialEq)]
struct HostSelector {
    namespace: Option<String>,
    host: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Egress {
    port: Option<u32>,
    hosts: Vec<HostSelector>,
}

/// The view of one proxy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxyScope {
    /// Equal keys, equal outbound config.
    pub key: String,
    namespace: String,
    /// Egress rules of the applied Sidecar; `None` when no Sidecar applies (everything exported).
    egress: Option<Vec<Egress>>,
    /// The applied Sidecar's `outboundTrafficPolicy` (ALLOW_ANY?), overriding the mesh's.
    allow_any_override: Option<bool>,
    /// Where the proxy's certificates come from (`/etc/certs`, or SDS).
    pub certs: crate::xds::tls::CertSource,
}

fn parse_host(entry: &str, sidecar_namespace: &str) -> Option<HostSelector> {
    let (namespace, host) = entry.split_once('/').unwrap_or(("*", entry));
    let namespace = match namespace {
        "~" => return None,
        "*" => None,
        "." => Some(sidecar_namespace.to_string()),
        other => Some(other.to_string()),
    };
    Some(HostSelector { namespace, host: host.to_string() })
}

/// The Sidecar resource that applies to a proxy, if any.
pub(crate) fn applied_sidecar<'a>(push: &'a PushContext, proxy: &Proxy) -> Option<&'a Named<net::Sidecar>> {
    if proxy.kind != ProxyKind::Sidecar {
        return None;
    }
    fn selector(sidecar: &Named<net::Sidecar>) -> Option<&std::collections::HashMap<String, String>> {
        sidecar.spec.workload_selector.as_ref().map(|s| &s.labels)
    }
    push.sidecars
        .iter()
        .find(|s| {
            s.namespace == proxy.namespace
                && selector(s).is_some_and(|labels| !labels.is_empty() && proxy.matches(labels))
        })
        .or_else(|| {
            push.sidecars.iter().find(|s| s.namespace == proxy.namespace && selector(s).is_none_or(|l| l.is_empty()))
        })
        .or_else(|| {
            push.sidecars
                .iter()
                .find(|s| s.namespace == push.mesh.root_namespace && selector(s).is_none_or(|l| l.is_empty()))
        })
}

impl ProxyScope {
    /// The scope of a proxy in a push.
    pub(crate) fn of(push: &PushContext, proxy: &Proxy) -> ProxyScope {
        let sidecar = applied_sidecar(push, proxy);
        let namespace = proxy.namespace.clone();
        // A Sidecar without egress listeners leaves the outbound view alone.
        let egress = sidecar.filter(|sidecar| !sidecar.spec.egress.is_empty()).map(|sidecar| {
            sidecar
                .spec
                .egress
                .iter()
                .map(|egress| Egress {
                    port: egress.port.as_ref().map(|p| p.number).filter(|n| *n != 0),
                    // In the root namespace's default Sidecar, `.` is the workload's own namespace.
                    hosts: egress
                        .hosts
                        .iter()
                        .filter_map(|h| {
                            let own = if sidecar.namespace == push.mesh.root_namespace {
                                &namespace
                            } else {
                                &sidecar.namespace
                            };
                            parse_host(h, own)
                        })
                        .collect(),
                })
                .collect()
        });
        let allow_any_override = sidecar
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .map(|policy| policy.mode == net::outbound_traffic_policy::Mode::AllowAny as i32);
        // The key only needs the namespace when something is namespace-private.
        let mut key = match sidecar {
            Some(sidecar) => format!("sidecar:{}/{}|ns:{namespace}", sidecar.namespace, sidecar.name),
            None if push.has_private_exports || push.destination_rules_vary => format!("ns:{namespace}"),
            None => String::new(),
        };
        let certs = crate::xds::tls::CertSource::for_proxy(proxy, &push.mesh);
        key.push_str(&certs.key());
        ProxyScope { key, namespace, egress, allow_any_override, certs }
    }

    /// The proxy's namespace (empty for a scope that sees everything).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether outbound traffic to unknown destinations is let through.
    pub(crate) fn allow_any(&self, push: &PushContext) -> bool {
        self.allow_any_override.unwrap_or(push.mesh.allow_any)
    }

    fn egress_admits(&self, object_namespace: &str, hosts: &[&str], port: Option<u32>) -> bool {
        let Some(egress) = &self.egress else { return true };
        egress.iter().any(|rule| {
            (port.is_none() || rule.port.is_none() || rule.port == port)
                && rule.hosts.iter().any(|selector| {
                    selector.namespace.as_deref().is_none_or(|ns| ns == object_namespace)
                        && hosts.iter().any(|host| istio_config::validation::host_matches(&selector.host, host))
                })
        })
    }

    fn everything_visible(&self) -> bool {
        self.namespace.is_empty() && self.egress.is_none()
    }

    /// Whether the proxy sees a service at all.
    pub(crate) fn sees_service(&self, service: &Service) -> bool {
        self.everything_visible()
            || (exported_to(&service.export_to, &service.namespace, &self.namespace)
                && self.egress_admits(&service.namespace, &[&service.hostname], None))
    }

    /// Whether the proxy sees a service's port.
    pub(crate) fn sees_service_port(&self, service: &Service, port: u32) -> bool {
        self.everything_visible()
            || (exported_to(&service.export_to, &service.namespace, &self.namespace)
                && self.egress_admits(&service.namespace, &[&service.hostname], Some(port)))
    }

    /// Whether a mesh VirtualService applies to this proxy.
    pub(crate) fn sees_virtual_service(&self, vs: &Named<net::VirtualService>) -> bool {
        if self.everything_visible() {
            return true;
        }
        let hosts: Vec<&str> = vs.spec.hosts.iter().map(String::as_str).collect();
        exported_to(&vs.spec.export_to, &vs.namespace, &self.namespace)
            && self.egress_admits(&vs.namespace, &hosts, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_ROOT_NAMESPACE as ROOT_NAMESPACE;
    use std::collections::HashMap;

    fn sidecar(namespace: &str, name: &str, selector: Option<(&str, &str)>, hosts: &[&str]) -> Named<net::Sidecar> {
        Named {
            name: name.into(),
            namespace: namespace.into(),
            spec: net::Sidecar {
                workload_selector: selector
                    .map(|(k, v)| net::WorkloadSelector { labels: HashMap::from([(k.to_string(), v.to_string())]) }),
                egress: vec![net::IstioEgressListener {
                    hosts: hosts.iter().map(|h| h.to_string()).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    fn proxy(namespace: &str, app: &str) -> Proxy {
        Proxy {
            kind: ProxyKind::Sidecar,
            id: format!("sidecar~10.0.0.1~{app}-1.{namespace}~{namespace}.svc.cluster.local"),
            workload: format!("{app}-1.{namespace}"),
            namespace: namespace.into(),
            ips: vec!["10.0.0.1".into()],
            labels: HashMap::from([("app".to_string(), app.to_string())]),
            dns_domain: String::new(),
            istio_version: String::new(),
            metadata: Default::default(),
            null_vm_plugins: Default::default(),
            sni_dnat: false,
            sds: false,
            sds_token_path: String::new(),
            agent_sds: false,
            user_sds: false,
            mixer_filter: false,
            policy_check: Default::default(),
            locality: None,
        }
    }

    fn service(host: &str, namespace: &str, export_to: &[&str]) -> Service {
        Service {
            hostname: host.into(),
            namespace: namespace.into(),
            address: None,
            ports: Vec::new(),
            resolution: crate::model::Resolution::Static,
            mesh_external: false,
            endpoints: Vec::new(),
            service_accounts: Vec::new(),
            export_to: export_to.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_most_specific_sidecar_applies() {
        let push = PushContext {
            sidecars: vec![
                sidecar(ROOT_NAMESPACE, "default", None, &["./*"]),
                sidecar("prod", "all", None, &["*/*"]),
                sidecar("prod", "ratings", Some(("app", "ratings")), &["./*"]),
            ],
            ..Default::default()
        };
        assert_eq!(applied_sidecar(&push, &proxy("prod", "ratings")).map(|s| s.name.as_str()), Some("ratings"));
        assert_eq!(applied_sidecar(&push, &proxy("prod", "reviews")).map(|s| s.name.as_str()), Some("all"));
        assert_eq!(applied_sidecar(&push, &proxy("dev", "reviews")).map(|s| s.name.as_str()), Some("default"));
        // In the root namespace's default, `./*` is the workload's own namespace.
        let dev = ProxyScope::of(&push, &proxy("dev", "reviews"));
        assert!(dev.sees_service(&service("ratings.dev.svc.cluster.local", "dev", &[])));
        assert!(!dev.sees_service(&service("ratings.prod.svc.cluster.local", "prod", &[])));
    }

    #[test]
    fn egress_hosts_and_export_to_narrow_what_a_proxy_sees() {
        let push = PushContext {
            sidecars: vec![sidecar(
                "prod",
                "default",
                None,
                &["./*", "istio-system/*", "shared/api.shared.svc.cluster.local"],
            )],
            has_private_exports: true,
            ..Default::default()
        };
        let scope = ProxyScope::of(&push, &proxy("prod", "reviews"));
        assert!(scope.sees_service(&service("ratings.prod.svc.cluster.local", "prod", &[])));
        assert!(scope.sees_service(&service("istio-telemetry.istio-system.svc.cluster.local", "istio-system", &[])));
        assert!(scope.sees_service(&service("api.shared.svc.cluster.local", "shared", &[])));
        assert!(!scope.sees_service(&service("other.shared.svc.cluster.local", "shared", &[])));
        assert!(!scope.sees_service(&service("reviews.dev.svc.cluster.local", "dev", &[])));

        // Without a Sidecar, only exportTo narrows.
        let open = ProxyScope::of(&push, &proxy("dev", "reviews"));
        assert_eq!(open.key, "ns:dev");
        assert!(open.sees_service(&service("reviews.prod.svc.cluster.local", "prod", &["*"])));
        assert!(!open.sees_service(&service("secret.prod.svc.cluster.local", "prod", &["."])));
        assert!(open.sees_service(&service("secret.dev.svc.cluster.local", "dev", &["."])));
        assert!(!scope.sees_service(&service("hidden.prod.svc.cluster.local", "istio-system", &["."])));
    }

    #[test]
    fn none_means_none() {
        let push = PushContext { sidecars: vec![sidecar("prod", "isolated", None, &["~/*"])], ..Default::default() };
        let scope = ProxyScope::of(&push, &proxy("prod", "reviews"));
        assert!(!scope.sees_service(&service("ratings.prod.svc.cluster.local", "prod", &[])));
    }

    #[test]
    fn a_sidecar_outbound_traffic_policy_overrides_the_mesh() {
        let mut open = sidecar("prod", "open", None, &["*/*"]);
        open.spec.outbound_traffic_policy =
            Some(net::OutboundTrafficPolicy { mode: net::outbound_traffic_policy::Mode::AllowAny as i32 });
        let mut push = PushContext { sidecars: vec![open], ..Default::default() };
        push.mesh.allow_any = false;
        assert!(ProxyScope::of(&push, &proxy("prod", "reviews")).allow_any(&push));
        assert!(!ProxyScope::of(&push, &proxy("dev", "reviews")).allow_any(&push));
    }

    /// Mesh-wide defaults live in the mesh config's `rootNamespace`, not always `istio-system`.
    #[test]
    fn the_mesh_default_sidecar_comes_from_the_configured_root_namespace() {
        let mut push = PushContext {
            sidecars: vec![
                sidecar("istio-config", "default", None, &["./*"]),
                sidecar(ROOT_NAMESPACE, "ignored", None, &["*/*"]),
            ],
            ..Default::default()
        };
        push.mesh.root_namespace = "istio-config".to_string();
        assert_eq!(applied_sidecar(&push, &proxy("dev", "reviews")).map(|s| s.name.as_str()), Some("default"));
        let dev = ProxyScope::of(&push, &proxy("dev", "reviews"));
        assert!(dev.sees_service(&service("ratings.dev.svc.cluster.local", "dev", &[])));
        assert!(!dev.sees_service(&service("ratings.prod.svc.cluster.local", "prod", &[])));
        push.mesh.root_namespace = ROOT_NAMESPACE.to_string();
        assert_eq!(applied_sidecar(&push, &proxy("dev", "reviews")).map(|s| s.name.as_str()), Some("ignored"));
    }
}
