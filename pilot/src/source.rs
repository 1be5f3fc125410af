//! Pilot's config sources: objects arrive from a store (a config directory, or Kubernetes
//! CRDs), are validated (an invalid object is logged, counted, and its last good version kept),
//! and are turned into a new `PushContext` after changes settle (100 ms quiet, 10 s at most,
//! like `PILOT_DEBOUNCE_AFTER` / `PILOT_DEBOUNCE_MAX`; endpoint changes at once with
//! `PILOT_ENABLE_EDS_DEBOUNCE=false`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use istio_config::accepted::{next_batch_quiet_for, AcceptedObjects, Applied};
use istio_config::object::{Object, ObjectKey};
use istio_config::store::Event;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::model::{EndpointUpdate, MeshSettings, PodInfo, PushContext, Service};
use crate::spec_cache::SpecCache;
use crate::xds::config_patch::prepared::PreparedEnvoyFilter;

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub mesh: MeshSettings,
    /// Validate objects before using them (off for MCP, whose server validated them).
    pub validate: bool,
    pub debounce_after: Duration,
    pub debounce_max: Duration,
    /// Endpoint changes wait for `debounce_after` of quiet too (1.4's
    /// `PILOT_ENABLE_EDS_DEBOUNCE`, on by default); off, a batch that starts with one is pushed
    /// at once.
    pub eds_debounce: bool,
    /// A changed mesh config (the file watched by `meshconfig::watch`) rebuilds everything.
    pub mesh_updates: Option<watch::Receiver<MeshSettings>>,
    /// CA certificates HTTPS JWKS servers are trusted with, besides the system's.
    pub jwks_ca_file: Option<std::path::PathBuf>,
    /// How often fetched JWKS are fetched again.
    pub jwks_refresh_interval: Duration,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            mesh: MeshSettings::default(),
            validate: true,
            debounce_after: Duration::from_millis(100),
            debounce_max: Duration::from_secs(10),
            eds_debounce: true,
            mesh_updates: None,
            jwks_ca_file: None,
            jwks_refresh_interval: crate::jwks::DEFAULT_REFRESH_INTERVAL,
        }
    }
}

/// An object's `metadata.creationTimestamp` (RFC 3339, so it sorts as text); empty when unset.
fn creation_time(object: &Object) -> String {
    object.metadata.creation_timestamp.as_ref().map(|time| time.0.to_string()).unwrap_or_default()
}

/// Adds a service; a hostname already taken is a duplicate cluster, as 1.4 counted it, and
/// the later definition wins.
fn insert_service(push: &mut PushContext, service: Service) {
    if push.services.contains_key(&service.hostname) {
        push.status.conflict(
            crate::push_status::Conflict::DuplicateEnvoyClusters,
            &service.hostname,
            "duplicate cluster: two services have the hostname",
        );
    }
    push.services.insert(service.hostname.clone(), Arc::new(service));
}

/// The kind of update an event is, as 1.4's `pilot_inbound_updates` labelled it; `None` for
/// objects that only add detail to others (pods, nodes, namespaces).
fn update_type(event: &Event) -> Option<&'static str> {
    let object = match event {
        Event::Added(object) | Event::Modified(object) | Event::Deleted(object) => object,
        _ => return None,
    };
    match (object.group(), object.kind.as_str()) {
        ("", "Endpoints") => Some("eds"),
        ("", "Service") | ("networking.istio.io", "ServiceEntry") => Some("svc"),
        ("", _) => None,
        _ => Some("config"),
    }
}

/// Builds a push context from accepted objects (each decoded afresh).
#[cfg(test)]
pub(crate) fn build(objects: &BTreeMap<ObjectKey, Object>, mesh: &MeshSettings, version: String) -> PushContext {
    build_with(objects, mesh, version, &mut SpecCache::default())
}

/// Builds a push context from accepted objects, decoding only the specs `specs` does not hold
/// at the object's version.
pub(crate) fn build_with(
    objects: &BTreeMap<ObjectKey, Object>,
    mesh: &MeshSettings,
    version: String,
    specs: &mut SpecCache,
) -> PushContext {
    let mut push =
        PushContext { version, mesh: mesh.clone(), created: Some(std::time::Instant::now()), ..Default::default() };
    // The Kubernetes registry: Services (with their Endpoints, Pods and Nodes) as ServiceEntries,
    // exactly as Galley serves them.
    let core = istio_config::synthetic::CoreObjects::collect(objects.values());
    for service in &core.services {
        let entry = istio_config::synthetic::service_entry(&core, service, &mesh.domain_suffix, &mesh.trust_domain);
        for service in Service::from_service_entry(&entry, service.namespace()) {
            insert_service(&mut push, service);
        }
    }
    for (ip, pod) in &core.pods_by_ip {
        let labels = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect();
        push.pods.insert(ip.clone(), Arc::new(PodInfo { namespace: pod.namespace().to_string(), labels }));
    }
    // Kubernetes Ingresses the mesh takes, as the Gateways and VirtualServices 1.4 made of them.
    let from_ingresses = istio_config::kube_ingress::convert(objects.values(), &mesh.ingress);
    let mut authn_policies = Vec::new();
    let mut bindings = Vec::new();
    let mut envoy_filters = Vec::new();
    let mut legacy_rbac_config = None;
    let stored = objects.iter().map(|(key, object)| (Some(key), object));
    for (key, object) in stored.chain(from_ingresses.iter().map(|object| (None, object))) {
        match (object.group(), object.kind.as_str()) {
            ("networking.istio.io", "ServiceEntry") => {
                if let Some(entry) =
                    specs.named::<istio_api::pb::istio::networking::v1alpha3::ServiceEntry>(key, object)
                {
                    for service in Service::from_service_entry(&entry.spec, &entry.namespace) {
                        let hostname = push.qualify(&service.hostname, &entry.namespace);
                        insert_service(&mut push, Service { hostname, ..service });
                    }
                }
            }
            ("networking.istio.io", "VirtualService") => push.virtual_services.extend(specs.named(key, object)),
            ("networking.istio.io", "DestinationRule") => push.destination_rules.extend(specs.named(key, object)),
            ("networking.istio.io", "Gateway") => push.gateways.extend(specs.named(key, object)),
            ("networking.istio.io", "Sidecar") => push.sidecars.extend(specs.named(key, object)),
            ("networking.istio.io", "EnvoyFilter") => {
                envoy_filters.extend(specs.named(key, object).map(|filter| (creation_time(object), filter)));
            }
            ("security.istio.io", "AuthorizationPolicy") => {
                push.authorization_policies.extend(specs.named(key, object))
            }
            ("config.istio.io", "QuotaSpec") => push.quota_specs.extend(specs.named(key, object)),
            ("config.istio.io", "QuotaSpecBinding") => push.quota_spec_bindings.extend(specs.named(key, object)),
            ("rbac.istio.io", "ServiceRole") => push.service_roles.extend(specs.named(key, object)),
            ("rbac.istio.io", "ServiceRoleBinding") => {
                bindings.extend(specs.named(key, object).map(|binding| (creation_time(object), binding)));
            }
            // The singleton `default`; the deprecated RbacConfig counts only without it.
            ("rbac.istio.io", "ClusterRbacConfig") if object.name() == crate::scope::authn::DEFAULT_POLICY_NAME => {
                push.rbac_config = specs.named(key, object);
            }
            ("rbac.istio.io", "RbacConfig") if object.name() == crate::scope::authn::DEFAULT_POLICY_NAME => {
                legacy_rbac_config = specs.named(key, object);
            }
            ("authentication.istio.io", "Policy") => {
                authn_policies.extend(specs.named(key, object).map(|policy| (creation_time(object), policy)));
            }
            ("authentication.istio.io", "MeshPolicy") if object.name() == crate::scope::authn::DEFAULT_POLICY_NAME => {
                push.mesh_policy = specs.named(key, object);
            }
            _ => {}
        }
    }
    // Oldest first, as 1.4 ordered them; objects without a creation time keep the store's order.
    authn_policies.sort_by(|(a, _), (b, _)| a.cmp(b));
    push.authn_policies = authn_policies.into_iter().map(|(_, policy)| policy).collect();
    bindings.sort_by(|(a, _), (b, _)| a.cmp(b));
    envoy_filters.sort_by(|(a, _), (b, _)| a.cmp(b));
    push.envoy_filters = envoy_filters.into_iter().map(|(_, filter)| filter).collect();
    push.envoy_filter_patches = push
        .envoy_filters
        .iter()
        .filter_map(|ef| PreparedEnvoyFilter::prepare(&ef.name, &ef.namespace, &ef.spec).map(Arc::new))
        .collect();
    push.service_role_bindings = bindings.into_iter().map(|(_, binding)| binding).collect();
    push.rbac_config = push.rbac_config.take().or(legacy_rbac_config);
    let private = |export_to: &[String]| !export_to.is_empty() && !export_to.iter().any(|t| t == "*");
    push.has_private_exports = push.services.values().any(|s| private(&s.export_to))
        || push.virtual_services.iter().any(|vs| private(&vs.spec.export_to))
        || push.destination_rules.iter().any(|dr| private(&dr.spec.export_to));
    push.destination_rules_vary = destination_rules_vary(&push);
    specs.retain_current(objects);
    push.routes_depend_on_labels = push
        .virtual_services
        .iter()
        .any(|vs| vs.spec.http.iter().any(|http| http.r#match.iter().any(|m| !m.source_labels.is_empty())));
    push
}

/// Whether the DestinationRule a proxy uses for some host depends on the proxy's namespace:
/// two rules in different namespaces cover a common host (the same host, or a wildcard such as
/// `*.local` over `httpbin.foo.svc.cluster.local`). Then generated clusters are not shared
/// across namespaces.
fn destination_rules_vary(push: &PushContext) -> bool {
    let hosts: Vec<(String, &str)> = push
        .destination_rules
        .iter()
        .map(|rule| (push.qualify(&rule.spec.host, &rule.namespace), rule.namespace.as_str()))
        .collect();
    hosts.iter().enumerate().any(|(index, (host, namespace))| {
        hosts[index + 1..]
            .iter()
            .any(|(other, other_namespace)| namespace != other_namespace && crate::host::hosts_match(host, other))
    })
}

/// Whether `event` changes only endpoints as far as a push can tell before comparing services:
/// a ServiceEntry (its endpoints, perhaps) or a Kubernetes Endpoints object.
fn may_change_only_endpoints(event: &Event) -> bool {
    let (Event::Added(object) | Event::Modified(object) | Event::Deleted(object)) = event else { return false };
    matches!((object.group(), object.kind.as_str()), ("networking.istio.io", "ServiceEntry") | ("", "Endpoints"))
}

/// Two services that are the same but for their endpoints. Written out field by field (with
/// nothing left to `..`), so a field added to `Service` has to be decided here.
fn same_but_endpoints(a: &Service, b: &Service) -> bool {
    let Service {
        hostname,
        namespace,
        address,
        ports,
        resolution,
        mesh_external,
        endpoints: _,
        service_accounts,
        export_to,
    } = a;
    *hostname == b.hostname
        && *namespace == b.namespace
        && *address == b.address
        && *ports == b.ports
        && *resolution == b.resolution
        && *mesh_external == b.mesh_external
        && *service_accounts == b.service_accounts
        && *export_to == b.export_to
}

/// What the last published context held that the next one is compared with.
struct Published {
    version: String,
    services: BTreeMap<String, Arc<Service>>,
}

/// What `next` changed from `previous`, when it differs only in the endpoints of services whose
/// clusters take them over EDS (`STATIC` resolution). Called only when every object that changed
/// in between was a ServiceEntry or an Endpoints object, so nothing but services can differ.
fn endpoint_update(previous: &Published, next: &PushContext) -> Option<EndpointUpdate> {
    if previous.services.len() != next.services.len() {
        return None;
    }
    let mut addresses = std::collections::HashSet::new();
    for (host, service) in &next.services {
        let before = previous.services.get(host)?;
        if Arc::ptr_eq(before, service) || before == service {
            continue;
        }
        if !same_but_endpoints(before, service) || service.resolution != crate::model::Resolution::Static {
            return None;
        }
        addresses.extend(before.endpoints.iter().chain(&service.endpoints).map(|endpoint| endpoint.address.clone()));
    }
    Some(EndpointUpdate { since: previous.version.clone(), addresses })
}

/// Kubernetes objects kept beside Istio's: the registry's inputs and Ingresses.
fn kept_kubernetes_input(key: &ObjectKey) -> bool {
    istio_config::synthetic::is_core_input(key) || istio_config::kube_ingress::is_ingress(key)
}

/// Consumes store events, publishing a new push context after each settled batch of changes.
pub(crate) async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    publish: watch::Sender<Arc<PushContext>>,
    settings: SourceSettings,
    metrics: Metrics,
) {
    let mut accepted = AcceptedObjects::new(settings.validate, kept_kubernetes_input);
    let mut generation = 0_u64;
    // Whether everything applied since the last publish may have changed endpoints alone.
    let only_endpoints = std::sync::atomic::AtomicBool::new(true);
    let mut previous: Option<Published> = None;
    let mut specs = SpecCache::default();
    let apply = |accepted: &mut AcceptedObjects, event: Event| {
        let kind = update_type(&event);
        let endpoints_alone = may_change_only_endpoints(&event);
        match accepted.apply(event) {
            Applied::Changed => {
                if !endpoints_alone {
                    only_endpoints.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(kind) = kind {
                    metrics.inbound_updates.get_or_create(&crate::metrics::UpdateLabel { r#type: kind }).inc();
                }
                true
            }
            Applied::Invalid { .. } => {
                metrics.invalid_config.inc();
                false
            }
            Applied::Unchanged | Applied::SourceUnreadable => false,
        }
    };
    let mut mesh = settings.mesh.clone();
    let mut mesh_updates = settings.mesh_updates.clone();
    let jwks = Arc::new(match crate::jwks::JwksResolver::new(settings.jwks_ca_file.as_deref(), metrics.clone()) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::error!("JWKS CA bundle not usable ({error}); trusting the system roots only");
            crate::jwks::JwksResolver::new(None, metrics.clone()).expect("a resolver with the system roots")
        }
    });
    // Refreshes run beside the loop (a slow identity provider must not hold up config), and
    // keys that changed at their source reach the proxies in a new push context.
    let jwks_changed = Arc::new(tokio::sync::Notify::new());
    let _refresher = crate::jwks::Refresher::spawn(jwks.clone(), settings.jwks_refresh_interval, jwks_changed.clone());
    let quiet_for = |first: &Event| {
        if settings.eds_debounce || !may_change_only_endpoints(first) {
            settings.debounce_after
        } else {
            Duration::ZERO
        }
    };
    loop {
        let mesh_changed = async {
            let Some(updates) = mesh_updates.as_mut() else { return std::future::pending().await };
            if updates.changed().await.is_err() {
                // The watcher is gone: the mesh config stays as it is.
                std::future::pending::<()>().await;
            }
        };
        // A batch cut short by a mesh change loses nothing: its events are applied already,
        // and the rebuild below reads every accepted object.
        let changed = tokio::select! {
            batch = next_batch_quiet_for(&mut events, quiet_for, settings.debounce_max, |event| {
                apply(&mut accepted, event)
            }) => match batch {
                Some(changed) => changed,
                None => break,
            },
            () = mesh_changed => {
                mesh = mesh_updates.as_ref().map(|updates| updates.borrow().clone()).unwrap_or(mesh);
                only_endpoints.store(false, std::sync::atomic::Ordering::Relaxed);
                true
            }
            () = jwks_changed.notified() => {
                only_endpoints.store(false, std::sync::atomic::Ordering::Relaxed);
                true
            }
        };
        if changed && accepted.synced() {
            generation += 1;
            let mut push = build_with(accepted.objects(), &mesh, generation.to_string(), &mut specs);
            push.jwks = jwks.resolve(push.jwts()).await;
            if only_endpoints.swap(true, std::sync::atomic::Ordering::Relaxed) {
                push.endpoint_update = previous.as_ref().and_then(|previous| endpoint_update(previous, &push));
            }
            let build_ms = push.created.map_or(0, |created| created.elapsed().as_millis());
            tracing::info!(
                version = %push.version,
                services = push.services.len(),
                virtual_services = push.virtual_services.len(),
                build_ms,
                "new push context"
            );
            metrics.push_contexts.inc();
            metrics.services.set(push.services.len() as i64);
            metrics.virtual_services.set(push.virtual_services.len() as i64);
            previous = Some(Published { version: push.version.clone(), services: push.services.clone() });
            publish.send_replace(Arc::new(push));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_vary_by_namespace_when_they_cover_a_common_host_from_two_namespaces() {
        let rule = |namespace: &str, host: &str| {
            crate::testing::destination_rule(namespace, host, serde_json::json!({"host": host}))
        };
        let mut push = crate::testing::push(vec![], vec![rule("default", "reviews"), rule("default", "ratings")]);
        push.mesh.domain_suffix = "cluster.local".to_string();
        assert!(!destination_rules_vary(&push), "one namespace");
        push.destination_rules.push(rule("foo", "httpbin"));
        assert!(!destination_rules_vary(&push), "different hosts");
        push.destination_rules.push(rule("istio-system", "*.local"));
        assert!(destination_rules_vary(&push), "*.local covers httpbin.foo.svc.cluster.local");
        push.destination_rules = vec![rule("default", "reviews"), rule("bar", "reviews.default.svc.cluster.local")];
        assert!(destination_rules_vary(&push), "the same host from two namespaces");
    }

    fn object(yaml: &str) -> Object {
        serde_yaml::from_str(yaml).expect("object")
    }

    #[test]
    fn a_service_entry_for_a_kubernetes_service_host_is_a_duplicate_cluster() {
        let mut objects = BTreeMap::new();
        for yaml in [
            "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  clusterIP: 10.0.0.9\n  ports: [{name: http, port: 9080}]\n",
            "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: twice, namespace: default}\nspec:\n  hosts: [reviews.default.svc.cluster.local, external.example.com]\n  ports: [{name: http, number: 80, protocol: HTTP}]\n  resolution: DNS\n",
        ] {
            let object = object(yaml);
            objects.insert(object.key(), object);
        }
        let push = build(&objects, &MeshSettings::default(), "1".into());
        let counts = push.status.conflict_counts();
        assert_eq!(counts[4], (crate::push_status::Conflict::DuplicateEnvoyClusters, 1));
        assert_eq!(push.services["reviews.default.svc.cluster.local"].ports[0].number, 80, "the later definition wins");
    }

    fn context(entries: &[(&str, &str)], version: &str) -> PushContext {
        let mut objects = BTreeMap::new();
        for (name, spec) in entries {
            let object = object(&format!(
                "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
            ));
            objects.insert(object.key(), object);
        }
        build(&objects, &MeshSettings::default(), version.into())
    }

    fn published(push: &PushContext) -> Published {
        Published { version: push.version.clone(), services: push.services.clone() }
    }

    /// Only the endpoints of STATIC services changing is an endpoint update, naming the old and
    /// new addresses; any other difference is not.
    #[test]
    fn an_endpoint_update_is_endpoints_of_static_services_changing_and_nothing_else() {
        let a = |endpoints: &str| {
            format!("{{hosts: [a.example.com], ports: [{{number: 80, name: http, protocol: HTTP}}], resolution: STATIC, endpoints: [{endpoints}]}}")
        };
        let b = "{hosts: [b.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 10.0.0.9}]}";
        let before = context(&[("a", &a("{address: 10.0.0.1}")), ("b", b)], "1");
        let moved = context(&[("a", &a("{address: 10.0.0.2}")), ("b", b)], "2");
        let update = endpoint_update(&published(&before), &moved).expect("an endpoint update");
        assert_eq!(update.since, "1");
        let mut addresses: Vec<&str> = update.addresses.iter().map(String::as_str).collect();
        addresses.sort();
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.2"], "the old and new endpoints of the changed service only");
        assert!(update.covers("1", &["10.1.1.1".to_string()]));
        assert!(!update.covers("1", &["10.0.0.1".to_string()]), "a proxy at a changed endpoint gets everything");
        assert!(!update.covers("0", &["10.1.1.1".to_string()]), "a stream that missed version 1 gets everything");

        let unchanged = context(&[("a", &a("{address: 10.0.0.1}")), ("b", b)], "2");
        assert_eq!(endpoint_update(&published(&before), &unchanged).map(|update| update.addresses.len()), Some(0));

        let ported = "{hosts: [a.example.com], ports: [{number: 81, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 10.0.0.2}]}";
        assert!(endpoint_update(&published(&before), &context(&[("a", ported), ("b", b)], "2")).is_none(), "a port");
        let dns = |address: &str| {
            format!("{{hosts: [a.example.com], ports: [{{number: 80, name: http, protocol: HTTP}}], resolution: DNS, endpoints: [{{address: {address}}}]}}")
        };
        let dns_before = context(&[("a", &dns("a1.example.com")), ("b", b)], "1");
        let dns_after = context(&[("a", &dns("a2.example.com")), ("b", b)], "2");
        assert!(endpoint_update(&published(&dns_before), &dns_after).is_none(), "DNS clusters hold their endpoints");
        assert!(endpoint_update(&published(&before), &context(&[("b", b)], "2")).is_none(), "a service gone");
    }

    #[test]
    fn only_service_entries_and_endpoints_may_change_endpoints_alone() {
        let event = |yaml: &str| Event::Modified(object(yaml));
        assert!(may_change_only_endpoints(&event("apiVersion: v1\nkind: Endpoints\nmetadata: {name: a}\n")));
        assert!(may_change_only_endpoints(&event(
            "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: a}\n"
        )));
        assert!(!may_change_only_endpoints(&event("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")));
        assert!(!may_change_only_endpoints(&event("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")));
        assert!(!may_change_only_endpoints(&event(
            "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: a}\n"
        )));
    }

    #[test]
    fn inbound_updates_are_config_services_or_endpoints() {
        let event = |yaml: &str| Event::Modified(object(yaml));
        let of = |yaml: &str| update_type(&event(yaml));
        assert_eq!(of("apiVersion: v1\nkind: Endpoints\nmetadata: {name: a}\n"), Some("eds"));
        assert_eq!(of("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"), Some("svc"));
        assert_eq!(
            of("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: a}\n"),
            Some("svc")
        );
        assert_eq!(
            of("apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: a}\n"),
            Some("config")
        );
        assert_eq!(of("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n"), None);
    }
}
