//! Envoy's map fields (RBAC policies, JWT providers, per-filter configs, `Struct` fields) are
//! std `HashMap`s, and prost encodes a map in its iteration order. Two maps with the same
//! entries but their own random hash seeds iterate, and so encode, differently: a listener
//! generated twice from the same config would differ in its bytes, every proxy would take
//! each push as a change to it, and the changed filter chains would drain their connections.
//! Maps built here share one seed for as long as Pilot runs and receive their entries in key
//! order, so the same entries always encode to the same bytes.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::LazyLock;

/// The seed every stable map uses.
static SEED: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A map of `entries` whose iteration order depends only on its keys.
pub(crate) fn stable_map<K: Hash + Ord, V>(entries: impl IntoIterator<Item = (K, V)>) -> HashMap<K, V> {
    let mut entries: Vec<(K, V)> = entries.into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.cmp(b));
    let mut map = HashMap::with_capacity_and_hasher(entries.len(), SEED.clone());
    map.extend(entries);
    map
}

/// Rebuilds `map` in place as a [`stable_map`] (after entries were inserted one by one).
pub(crate) fn stabilize<K: Hash + Ord, V>(map: &mut HashMap<K, V>) {
    *map = stable_map(std::mem::take(map));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn policies(names: &[&str]) -> envoy_types::pb::envoy::config::rbac::v3::Rbac {
        let policy = envoy_types::pb::envoy::config::rbac::v3::Policy::default();
        let policies = names.iter().map(|name| (name.to_string(), policy.clone()));
        envoy_types::pb::envoy::config::rbac::v3::Rbac { policies: stable_map(policies), ..Default::default() }
    }

    #[test]
    fn the_same_entries_encode_the_same_whatever_their_order() {
        let names: Vec<String> = (0..40).map(|index| format!("ns[default]-policy[p{index}]-rule[0]")).collect();
        let forward: Vec<&str> = names.iter().map(String::as_str).collect();
        let backward: Vec<&str> = forward.iter().rev().copied().collect();
        let first = policies(&forward).encode_to_vec();
        for _ in 0..5 {
            assert_eq!(policies(&backward).encode_to_vec(), first);
        }
        // Maps with their own seeds do not (the reason for this module): 40 entries in the
        // same order twice in a row from independent seeds would be a one-in-40! event.
        let fresh = |names: &[&str]| {
            let mut rbac = policies(&[]);
            rbac.policies = names.iter().map(|name| (name.to_string(), Default::default())).collect();
            rbac.encode_to_vec()
        };
        assert!((0..5).any(|_| fresh(&forward) != first), "independent seeds changed nothing");
    }

    #[test]
    fn stabilize_keeps_the_entries() {
        let mut map: HashMap<String, u32> = HashMap::new();
        map.insert("b".into(), 2);
        map.insert("a".into(), 1);
        stabilize(&mut map);
        assert_eq!(map, HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)]));
    }
}

/// Every resource type generated from the same config twice, in two push contexts as two
/// pushes would build them, is the same bytes: maps with several entries included (the Mixer
/// filters' attributes, RBAC policies, JWT providers, a route's fault and CORS configs).
#[cfg(test)]
mod generated_twice {
    use crate::model::{MeshSettings, MixerSettings, PushContext};
    use crate::xds::generate::generate;
    use istio_xds::type_url;

    const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local, reviews.default.svc.cluster.local]
  addresses: [10.96.0.20]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.31, labels: {app: productpage, version: v1}}
  - {address: 10.1.0.21, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}}
    corsPolicy: {allowOrigin: [example.com], allowMethods: [GET]}
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: productpage, namespace: default}
spec:
  targets: [{name: productpage}]
  origins:
  - jwt: {issuer: first@example.com, jwksUri: "http://127.0.0.1:9/first"}
  - jwt: {issuer: second@example.com, jwksUri: "http://127.0.0.1:9/second"}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: struct-config, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.router}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: example.struct
        typed_config:
          "@type": type.googleapis.com/google.protobuf.Struct
          value: {a: 1, b: 2, c: 3, d: 4, e: 5, f: {g: 6, h: 7, i: 8}}
"#;

    fn policy(name: &str, path: &str) -> String {
        format!(
            "---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  selector: {{matchLabels: {{app: productpage}}}}\n  rules: [{{to: [{{operation: {{paths: [{path}]}}}}]}}]\n"
        )
    }

    fn push() -> PushContext {
        let mut yaml = CONFIG.to_string();
        for index in 0..6 {
            yaml += &policy(&format!("viewer-{index}"), &format!("/page-{index}"));
        }
        let (found, errors) = istio_config::yaml::parse_objects("test", &yaml);
        assert!(errors.is_empty(), "{errors:?}");
        let objects = found.into_iter().map(|found| (found.object.key(), found.object)).collect();
        let mixer = MixerSettings {
            check_server: "istio-policy.istio-system.svc.cluster.local:9091".into(),
            report_server: "istio-telemetry.istio-system.svc.cluster.local:9091".into(),
            ..MixerSettings::default()
        };
        let mesh = MeshSettings { mixer, root_namespace: "istio-system".into(), ..MeshSettings::default() };
        crate::source::build(&objects, &mesh, "1".into())
    }

    #[test]
    fn two_pushes_of_the_same_config_give_the_same_bytes() {
        let mut proxy = crate::testing::sidecar("default", "10.1.0.31", &[("app", "productpage"), ("version", "v1")]);
        proxy.mixer_filter = true;
        let (first, second) = (push(), push());
        for type_url in [type_url::LISTENER, type_url::CLUSTER, type_url::ROUTE, type_url::ENDPOINT] {
            let names: Vec<String> = match type_url {
                type_url::ROUTE => vec!["9080".to_string()],
                type_url::ENDPOINT => vec!["outbound|9080||reviews.default.svc.cluster.local".to_string()],
                _ => Vec::new(),
            };
            let once = generate(&first, &proxy, type_url, &names);
            let again = generate(&second, &proxy, type_url, &names);
            assert!(!once.is_empty(), "{type_url}: nothing generated");
            assert_eq!(once.len(), again.len(), "{type_url}");
            if type_url == type_url::LISTENER {
                let patched = once.iter().any(|r| r.wire.windows(14).any(|window| window == b"example.struct"));
                assert!(patched, "the EnvoyFilter's filter is in a listener");
            }
            for (a, b) in once.iter().zip(&again) {
                assert_eq!(a.name, b.name, "{type_url}");
                assert!(a.wire == b.wire, "{type_url} {}: the bytes differ between pushes", a.name);
            }
        }
    }
}
