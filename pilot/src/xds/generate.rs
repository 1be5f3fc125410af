//! What one proxy gets of each resource type: the dispatch from a proxy's kind and the
//! requested names to the generators, with everything that does not depend on the proxy itself
//! taken from the push context's cache, so a push to many proxies generates each shared
//! resource once. The ADS server and the debug endpoints both ask here.

use std::sync::Arc;

use istio_xds::type_url;

use envoy_types::pb::envoy::config::listener::v3::Listener;

use istio_api::pb::istio::networking::v1alpha3::envoy_filter::PatchContext;

use super::{
    any, cluster, config_patch, endpoint, envoy_filter, gateway, inbound_listener, listener, locality, mixer_outbound,
    mixer_telemetry, route,
};
use crate::model::{self, GeneratedResource, PushContext, SharedResources};
use crate::node::{Proxy, ProxyKind};

/// Every listener for `proxy`.
pub(crate) fn listeners(push: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    let mut listeners = match proxy.kind {
        ProxyKind::Router => {
            let mut listeners = gateway::gateway_listeners(push, proxy);
            mixer_outbound::decorate_listeners(&mut listeners, push, proxy);
            listeners
        }
        ProxyKind::Sidecar => {
            let mut listeners = listener::sidecar_outbound_listeners(push, &crate::scope::ProxyScope::of(push, proxy));
            mixer_outbound::decorate_listeners(&mut listeners, push, proxy);
            listeners.push(inbound_listener::virtual_inbound(push, proxy));
            listeners
        }
    };
    listener::decorate(&mut listeners, push, proxy.kind);
    mixer_telemetry::add_report_logs(&mut listeners, push, proxy);
    listeners
}

/// Sorted `key=value` labels, for cache keys of label-dependent resources.
fn label_key(proxy: &Proxy) -> String {
    let mut labels: Vec<String> = proxy.labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
    labels.sort();
    labels.join(",")
}

fn resources<T: prost::Message + prost::Name>(items: Vec<T>, name: impl Fn(&T) -> String) -> Vec<GeneratedResource> {
    items.into_iter().map(|item| GeneratedResource::new(name(&item), any(item))).collect()
}

/// What a proxy's routes depend on besides their names: proxies with equal contexts get equal
/// route configurations.
fn route_context(push: &PushContext, proxy: &Proxy, scope: &crate::scope::ProxyScope, patch_key: &str) -> String {
    let kind = match proxy.kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Router => "router",
    };
    let labels =
        if proxy.kind == ProxyKind::Router || push.routes_depend_on_labels { label_key(proxy) } else { String::new() };
    format!("{kind}|{}|{}|{labels}|{}|{patch_key}", proxy.namespace, scope.key, mixer_outbound::cache_key(push, proxy))
}

/// For EDS and RDS, whose resources are generated one requested name at a time: a key equal for
/// two proxies exactly when every name gives both the same resource. `None` for CDS and LDS,
/// whose sets hold each proxy's own resources too.
pub(crate) fn names_context(push: &PushContext, proxy: &Proxy, type_url: &str) -> Option<String> {
    let with_pod = proxy.with_registry_pod(push);
    let proxy = with_pod.as_ref().unwrap_or(proxy);
    match type_url {
        // Only a mesh-wide locality setting makes assignments depend on the proxy (its
        // locality and, through the rules' outlier detection, its namespace).
        type_url::ENDPOINT => Some(match &push.mesh.locality_lb_setting {
            None => String::new(),
            Some(_) => format!("{}|{}", locality::key(locality::of_proxy(push, proxy).as_ref()), proxy.namespace),
        }),
        type_url::ROUTE => {
            let patches =
                config_patch::matching::applicable(&push.envoy_filter_patches, &push.mesh.root_namespace, proxy);
            let patch_key = config_patch::matching::cache_key(&patches, proxy);
            Some(route_context(push, proxy, &crate::scope::ProxyScope::of(push, proxy), &patch_key))
        }
        _ => None,
    }
}

/// What one proxy gets of one type: sets shared with other proxies (cache entries, held as
/// they are) and the resources that are its own.
#[derive(Debug, Default)]
pub(crate) struct ProxyResources {
    shared: Vec<Arc<SharedResources>>,
    own: Vec<GeneratedResource>,
}

impl ProxyResources {
    fn shared(shared: Arc<SharedResources>) -> ProxyResources {
        ProxyResources { shared: vec![shared], own: Vec::new() }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &GeneratedResource> {
        self.shared.iter().flat_map(|set| set.resources.iter()).chain(&self.own)
    }

    /// A hash of every resource's name and content, in order; the shared sets' come precomputed.
    pub(crate) fn fingerprint(&self) -> u64 {
        let shared = self.shared.iter().fold(0, |acc, set| model::combine_fingerprints(acc, set.fingerprint));
        model::combine_fingerprints(shared, model::fingerprint(&self.own))
    }

    pub(crate) fn into_vec(self) -> Vec<GeneratedResource> {
        let mut resources: Vec<GeneratedResource> =
            self.shared.iter().flat_map(|set| set.resources.iter().cloned()).collect();
        resources.extend(self.own);
        resources
    }
}

/// Generates the resources of `type_url` for a proxy; `names` narrows EDS and RDS. What does not
/// depend on the proxy itself comes from the push context's cache, so a push to many proxies
/// generates each shared resource once.
pub(crate) fn generate(push: &PushContext, proxy: &Proxy, type_url: &str, names: &[String]) -> Vec<GeneratedResource> {
    generate_parts(push, proxy, type_url, names).into_vec()
}

/// [`generate`], with the shared sets left shared.
pub(crate) fn generate_parts(push: &PushContext, proxy: &Proxy, type_url: &str, names: &[String]) -> ProxyResources {
    let with_pod;
    let proxy = match proxy.with_registry_pod(push) {
        Some(enriched) => {
            with_pod = enriched;
            &with_pod
        }
        None => proxy,
    };
    let scope = crate::scope::ProxyScope::of(push, proxy);
    // EnvoyFilter config patches (none for endpoints): proxies with equal keys get equal
    // patched objects.
    let patches = if type_url == type_url::ENDPOINT {
        Vec::new()
    } else {
        config_patch::matching::applicable(&push.envoy_filter_patches, &push.mesh.root_namespace, proxy)
    };
    let patch_key = config_patch::matching::cache_key(&patches, proxy);
    let outbound_context = match proxy.kind {
        ProxyKind::Sidecar => PatchContext::SidecarOutbound,
        ProxyKind::Router => PatchContext::Gateway,
    };
    match type_url {
        type_url::CLUSTER => match proxy.kind {
            ProxyKind::Sidecar => {
                let shared = push.cache.get_or_generate(format!("cds|{}|{patch_key}", scope.key), || {
                    let mut clusters = cluster::shared_clusters(push, &scope);
                    config_patch::cluster::apply(outbound_context, proxy, &patches, &mut clusters);
                    resources(clusters, |c| c.name.clone())
                });
                let mut inbound = cluster::proxy_clusters(push, proxy);
                config_patch::cluster::apply(PatchContext::SidecarInbound, proxy, &patches, &mut inbound);
                // An inbound cluster (say, one an ANY-context ADD put in both lists) of a name
                // the outbound ones have: the outbound one stays, as 1.4's `normalizeClusters`.
                inbound.retain(|cluster| !shared.resources.iter().any(|outbound| outbound.name == cluster.name));
                ProxyResources { shared: vec![shared], own: resources(inbound, |c| c.name.clone()) }
            }
            ProxyKind::Router => {
                let key = format!("cds|router|{}|{}|{patch_key}", scope.key, proxy.sni_dnat);
                let generated = push.cache.get_or_generate(key, || {
                    let mut clusters = cluster::shared_clusters(push, &scope);
                    clusters.extend(cluster::proxy_clusters(push, proxy));
                    config_patch::cluster::apply(PatchContext::Gateway, proxy, &patches, &mut clusters);
                    resources(clusters, |c| c.name.clone())
                });
                ProxyResources::shared(generated)
            }
        },
        type_url::LISTENER => {
            // EnvoyFilters patch listeners; proxies with the same set share the patched ones.
            let filters = envoy_filter::applicable(push, proxy);
            let filter_key = format!("{}|{patch_key}", envoy_filter::key(&filters));
            let patched = |mut listeners: Vec<Listener>, context: PatchContext| {
                envoy_filter::apply(push, proxy, &filters, &mut listeners);
                config_patch::listener::apply(context, proxy, &patches, &mut listeners, false);
                resources(listeners, |l| l.name.clone())
            };
            match proxy.kind {
                ProxyKind::Router => ProxyResources::shared(push.cache.get_or_generate(
                    // Labels and namespace pick the Gateways and AuthorizationPolicies;
                    // v1alpha1 authorization and origin authentication follow the
                    // gateway's service.
                    format!(
                            "lds|router|{}|{}|{}|{}|{}|{}|{filter_key}",
                            proxy.namespace,
                            label_key(proxy),
                            scope.key,
                            proxy.user_sds,
                            super::authz_v1alpha1::gateway_service(push, proxy)
                                .map_or("", |service| service.hostname.as_str()),
                            mixer_outbound::cache_key(push, proxy),
                        ),
                    || patched(listeners(push, proxy), PatchContext::Gateway),
                )),
                ProxyKind::Sidecar => {
                    // The mixer plugin's outbound filter names the proxy: with it, nothing is shared.
                    let mixer_key = mixer_outbound::cache_key(push, proxy);
                    let key = format!("lds|sidecar|{}|{filter_key}|{mixer_key}", scope.key);
                    let shared = push.cache.get_or_generate(key, || {
                        let mut outbound = listener::sidecar_outbound_listeners(push, &scope);
                        mixer_outbound::decorate_listeners(&mut outbound, push, proxy);
                        listener::decorate(&mut outbound, push, ProxyKind::Sidecar);
                        mixer_telemetry::add_report_logs(&mut outbound, push, proxy);
                        patched(outbound, PatchContext::SidecarOutbound)
                    });
                    let mut inbound = vec![inbound_listener::virtual_inbound(push, proxy)];
                    listener::decorate(&mut inbound, push, ProxyKind::Sidecar);
                    mixer_telemetry::add_report_logs(&mut inbound, push, proxy);
                    ProxyResources { shared: vec![shared], own: patched(inbound, PatchContext::SidecarInbound) }
                }
            }
        }
        type_url::ROUTE => {
            let context = route_context(push, proxy, &scope, &patch_key);
            let shared = names
                .iter()
                .map(|name| {
                    let key = format!("rds|{context}|{name}");
                    push.cache.get_or_generate(key, || {
                        let mut configurations = route::route_configurations(push, proxy, std::slice::from_ref(name));
                        for configuration in &mut configurations {
                            mixer_outbound::decorate_routes(push, proxy, configuration);
                            config_patch::route::apply(outbound_context, proxy, &patches, configuration);
                        }
                        resources(configurations, |r| r.name.clone())
                    })
                })
                .collect();
            ProxyResources { shared, own: Vec::new() }
        }
        type_url::ENDPOINT => {
            // With a mesh-wide locality setting that applies to a cluster (it distributes, or
            // the proxy's rule gives the cluster outlier detection, which failover needs),
            // what a proxy gets depends on where it is: proxies of one locality and namespace
            // share those assignments; every other cluster's is shared by all.
            let locality_setting = push.mesh.locality_lb_setting.as_ref();
            let proxy_locality = std::cell::OnceCell::new();
            let shared = names
                .iter()
                .map(|name| {
                    let applied = locality_setting.and_then(|setting| {
                        let failover = endpoint::has_outlier_detection(push, &proxy.namespace, name);
                        (!setting.distribute.is_empty() || failover).then(|| {
                            (setting, failover, proxy_locality.get_or_init(|| locality::of_proxy(push, proxy)))
                        })
                    });
                    let key = match applied {
                        Some((_, _, locality)) => {
                            format!("eds|{}|{}|{name}", locality::key(locality.as_ref()), proxy.namespace)
                        }
                        None => format!("eds|{name}"),
                    };
                    push.cache.get_or_generate(key, || {
                        let mut assignment = endpoint::load_assignment(push, name).unwrap_or_else(|| {
                            envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
                                cluster_name: name.clone(),
                                ..Default::default()
                            }
                        });
                        let count = assignment.endpoints.iter().map(|locality| locality.lb_endpoints.len()).sum();
                        push.status.endpoints(name, count);
                        if let Some((setting, failover, locality)) = applied {
                            locality::apply(locality.as_ref(), &mut assignment, setting, failover);
                        }
                        resources(vec![assignment], |a| a.cluster_name.clone())
                    })
                })
                .collect();
            ProxyResources { shared, own: Vec::new() }
        }
        _ => ProxyResources::default(),
    }
}
