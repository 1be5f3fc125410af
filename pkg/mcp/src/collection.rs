//! What an MCP source serves: collections of resources, each with a version derived from its
//! content (so a sink is pushed only collections that really changed), gathered in snapshots.
//!
//! Deciding what goes into a collection is the source component's job (Galley's processing).

use std::collections::BTreeMap;
use std::sync::Arc;

use istio_api::pb::istio::mcp::v1alpha1::Resource;

/// One collection: its version and its resources by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collection {
    pub version: String,
    pub resources: BTreeMap<String, Resource>,
}

impl Collection {
    /// Builds a collection from resources, deriving the version from names and versions.
    pub fn new(resources: BTreeMap<String, Resource>) -> Self {
        let bytes: Vec<u8> = resources
            .iter()
            .flat_map(|(name, resource)| {
                let version = resource.metadata.as_ref().map_or("", |metadata| metadata.version.as_str());
                name.bytes().chain([0]).chain(version.bytes()).chain([0]).collect::<Vec<u8>>()
            })
            .collect();
        Collection { version: istio_config::hash::fnv1a64_hex(bytes), resources }
    }

    /// The version of each resource, by name.
    pub fn resource_versions(&self) -> BTreeMap<String, String> {
        self.resources
            .iter()
            .map(|(name, resource)| {
                (name.clone(), resource.metadata.as_ref().map(|metadata| metadata.version.clone()).unwrap_or_default())
            })
            .collect()
    }
}

/// Every collection a source serves, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases with every published snapshot; 0 means nothing has been published yet.
    pub generation: u64,
    pub collections: BTreeMap<String, Arc<Collection>>,
}

impl Snapshot {
    pub fn collection(&self, name: &str) -> Option<&Arc<Collection>> {
        self.collections.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_api::pb::istio::mcp::v1alpha1::Metadata;

    fn resource(name: &str, version: &str) -> (String, Resource) {
        let metadata = Metadata { name: name.to_string(), version: version.to_string(), ..Default::default() };
        (name.to_string(), Resource { metadata: Some(metadata), body: None })
    }

    #[test]
    fn the_version_follows_names_and_resource_versions_only() {
        let one = Collection::new([resource("default/a", "1"), resource("default/b", "7")].into());
        let same = Collection::new([resource("default/b", "7"), resource("default/a", "1")].into());
        let changed = Collection::new([resource("default/a", "2"), resource("default/b", "7")].into());
        let renamed = Collection::new([resource("default/c", "1"), resource("default/b", "7")].into());
        assert_eq!(one.version, same.version);
        assert_ne!(one.version, changed.version);
        assert_ne!(one.version, renamed.version);
        assert_eq!(one.resource_versions()["default/b"], "7");
    }
}
