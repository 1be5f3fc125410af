//! Decoded config specs, kept from one push context to the next. Every context is built from
//! every accepted object, and decoding a spec from its JSON (through the descriptors) is most
//! of that work; an object whose resource version is the one decoded before decodes to the same
//! spec, so only changed objects are decoded again. The versions come from the stores: a
//! Kubernetes `resourceVersion`, or a config file's content hash. Objects without a version
//! (made inside Pilot, such as those converted from Ingresses) are decoded every time.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use istio_config::object::{Object, ObjectKey};

use crate::model::Named;

/// Decodes an accepted object's spec as `T`; `None` (logged) when it does not decode.
pub(crate) fn decode<T: prost::Message + Default>(object: &Object) -> Option<Named<T>> {
    let kind = object.istio_kind()?;
    let spec = if object.spec().is_null() { serde_json::json!({}) } else { object.spec().clone() };
    match istio_api::json::decode::<T>(kind.proto, &spec) {
        Ok(spec) => Some(Named { name: object.name().to_string(), namespace: object.namespace().to_string(), spec }),
        Err(error) => {
            tracing::warn!(object = %object.display_name(), %error, "cannot decode accepted config");
            None
        }
    }
}

/// The specs decoded for the last context, by object, with the resource version each was
/// decoded at.
#[derive(Default)]
pub(crate) struct SpecCache {
    entries: HashMap<ObjectKey, (String, Arc<dyn Any + Send + Sync>)>,
}

impl SpecCache {
    /// `object`'s spec (stored under `key`) as `T`, decoded again only if its version changed.
    pub(crate) fn named<T>(&mut self, key: Option<&ObjectKey>, object: &Object) -> Option<Named<T>>
    where
        T: prost::Message + Default + Clone + Send + Sync + 'static,
    {
        let version = object.resource_version();
        let Some(key) = key.filter(|_| !version.is_empty()) else { return decode(object) };
        if let Some((decoded_at, spec)) = self.entries.get(key) {
            if decoded_at == version {
                if let Some(named) = spec.downcast_ref::<Named<T>>() {
                    return Some(named.clone());
                }
            }
        }
        let named = decode::<T>(object)?;
        self.entries.insert(key.clone(), (version.to_string(), Arc::new(named.clone())));
        Some(named)
    }

    /// Forgets the specs of objects that are gone or changed.
    pub(crate) fn retain_current(&mut self, objects: &BTreeMap<ObjectKey, Object>) {
        self.entries.retain(|key, (decoded_at, _)| {
            objects.get(key).is_some_and(|object| object.resource_version() == decoded_at)
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use istio_api::pb::istio::networking::v1alpha3::VirtualService;

    use super::*;

    fn virtual_service(host: &str, version: &str) -> (ObjectKey, Object) {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: reviews, namespace: default, resourceVersion: '{version}'}}
spec: {{hosts: [{host}]}}
"
        );
        let (found, errors) = istio_config::yaml::parse_objects("test", &yaml);
        assert!(errors.is_empty(), "{errors:?}");
        let object = found.into_iter().next().expect("one object").object;
        (object.key(), object)
    }

    #[test]
    fn a_spec_is_decoded_again_only_when_its_version_changes() {
        let mut cache = SpecCache::default();
        let (key, object) = virtual_service("reviews", "1");
        let first: Named<VirtualService> = cache.named(Some(&key), &object).expect("decodes");
        assert_eq!(first.spec.hosts, ["reviews"]);
        // The same version is the cached spec, even if the object (wrongly) says otherwise.
        let (_, same_version) = virtual_service("ratings", "1");
        let cached: Named<VirtualService> = cache.named(Some(&key), &same_version).expect("cached");
        assert_eq!(cached.spec.hosts, ["reviews"]);
        // A new version is decoded.
        let (_, changed) = virtual_service("ratings", "2");
        let decoded: Named<VirtualService> = cache.named(Some(&key), &changed).expect("decodes");
        assert_eq!(decoded.spec.hosts, ["ratings"]);
        // Without a version, or without a key, nothing is kept.
        let (_, unversioned) = virtual_service("details", "");
        let decoded: Named<VirtualService> = cache.named(Some(&key), &unversioned).expect("decodes");
        assert_eq!(decoded.spec.hosts, ["details"]);
        let _: Option<Named<VirtualService>> = cache.named(None, &changed);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn gone_and_changed_objects_are_forgotten() {
        let mut cache = SpecCache::default();
        let (key, object) = virtual_service("reviews", "1");
        let _: Option<Named<VirtualService>> = cache.named(Some(&key), &object);
        cache.retain_current(&BTreeMap::from([(key.clone(), object)]));
        assert_eq!(cache.len(), 1);
        let (_, changed) = virtual_service("reviews", "2");
        cache.retain_current(&BTreeMap::from([(key, changed)]));
        assert_eq!(cache.len(), 0);
    }
}
