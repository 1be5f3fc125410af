//! Galley's collections: the accepted Istio config turned into one MCP collection per kind
//! (empty ones included, so a sink subscribed to a kind hears that it has none).

use std::collections::BTreeMap;
use std::sync::Arc;

use istio_api::kinds;
use istio_api::pb::istio::mcp::v1alpha1::Resource;
use istio_config::object::Object;
use istio_mcp::collection::Collection;
use istio_mcp::resource::{istio_resource, resource_name};

/// Builds the collections of every Istio kind (empty ones included) from accepted objects.
pub(crate) fn istio_collections<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
) -> BTreeMap<String, Arc<Collection>> {
    let mut by_collection: BTreeMap<&'static str, BTreeMap<String, Resource>> =
        kinds::all().iter().map(|kind| (kind.collection, BTreeMap::new())).collect();
    for object in objects {
        let Some(kind) = object.istio_kind() else { continue };
        match istio_resource(kind, object) {
            Ok(resource) => {
                by_collection.entry(kind.collection).or_default().insert(resource_name(object), resource);
            }
            Err(error) => tracing::warn!(%error, "cannot encode accepted object; not served"),
        }
    }
    by_collection
        .into_iter()
        .map(|(name, resources)| (name.to_string(), Arc::new(Collection::new(resources))))
        .collect()
}
