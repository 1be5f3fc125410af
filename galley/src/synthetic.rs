//! Galley's synthetic ServiceEntries: the entries `istio_config::synthetic` builds from
//! Kubernetes Services, Endpoints, Pods and Nodes, served under
//! `istio/networking/v1alpha3/synthetic/serviceentries` with 1.4's version annotations, so Pilot
//! can discover services over MCP alone.

use std::collections::BTreeMap;

use istio_api::pb::istio::mcp::v1alpha1::Resource;
use istio_config::object::Object;
use istio_config::synthetic::{service_entry, CoreObjects};
use prost::Message;

pub(crate) use istio_config::synthetic::is_core_input;

use istio_mcp::collection::Collection;
use istio_mcp::resource::{metadata, resource_name};

pub(crate) const SERVICE_VERSION_ANNOTATION: &str = "networking.istio.io/serviceVersion";
pub(crate) const ENDPOINTS_VERSION_ANNOTATION: &str = "networking.istio.io/endpointsVersion";

/// The synthetic ServiceEntry collection for the given objects.
pub(crate) fn collection<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
    domain_suffix: &str,
    trust_domain: &str,
) -> Collection {
    let core = CoreObjects::collect(objects);
    let mut resources = BTreeMap::new();
    for service in &core.services {
        let entry = service_entry(&core, service, domain_suffix, trust_domain);
        let endpoints_version = core
            .endpoints
            .get(&(service.namespace().to_string(), service.name().to_string()))
            .map(|endpoints| endpoints.resource_version().to_string())
            .unwrap_or_default();
        let mut meta = metadata(service, format!("{}/{}", service.resource_version(), endpoints_version));
        meta.annotations.insert(SERVICE_VERSION_ANNOTATION.to_string(), service.resource_version().to_string());
        meta.annotations.insert(ENDPOINTS_VERSION_ANNOTATION.to_string(), endpoints_version);
        let body = prost_types::Any {
            type_url: format!("type.googleapis.com/{}", istio_api::kinds::SERVICE_ENTRY_PROTO),
            value: entry.encode_to_vec(),
        };
        resources.insert(resource_name(service), Resource { metadata: Some(meta), body: Some(body) });
    }
    Collection::new(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_api::pb::istio::networking::v1alpha3::ServiceEntry;

    #[test]
    fn entries_carry_service_and_endpoints_versions() {
        let objects: Vec<Object> = [
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "11"},
                "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 9080}]}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "12"},
                "subsets": [{"addresses": [{"ip": "10.1.0.7"}], "ports": [{"name": "http", "port": 9080}]}]}),
        ]
        .into_iter()
        .map(|value| serde_json::from_value(value).expect("object"))
        .collect();
        let collection = collection(&objects, "cluster.local", "cluster.local");
        let resource = &collection.resources["default/reviews"];
        let meta = resource.metadata.as_ref().expect("metadata");
        assert_eq!(meta.annotations[SERVICE_VERSION_ANNOTATION], "11");
        assert_eq!(meta.annotations[ENDPOINTS_VERSION_ANNOTATION], "12");
        let entry = ServiceEntry::decode(resource.body.as_ref().expect("body").value.as_slice()).expect("decode");
        assert_eq!(entry.hosts, vec!["reviews.default.svc.cluster.local"]);
        assert_eq!(entry.endpoints[0].address, "10.1.0.7");
    }
}
