//! Fixtures for Pilot's unit tests: services, rules and proxies written the way a user writes
//! them (Istio specs as JSON), gathered into a push context.

use std::collections::HashMap;
use std::sync::Arc;

use istio_api::pb::istio::networking::v1alpha3 as net;
use serde_json::Value;

use crate::model::{Named, PushContext, Service};
use crate::node::{Proxy, ProxyKind};

/// A spec of `proto` from JSON.
fn spec<T: prost::Message + Default>(proto: &str, json: Value) -> T {
    istio_api::json::decode(proto, &json).unwrap_or_else(|error| panic!("{proto}: {error}"))
}

/// The services of a ServiceEntry in `namespace`.
pub(crate) fn service_entry(namespace: &str, json: Value) -> Vec<Service> {
    Service::from_service_entry(&spec("istio.networking.v1alpha3.ServiceEntry", json), namespace)
}

pub(crate) fn destination_rule(namespace: &str, name: &str, json: Value) -> Named<net::DestinationRule> {
    Named {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec: spec("istio.networking.v1alpha3.DestinationRule", json),
    }
}

pub(crate) fn virtual_service(namespace: &str, name: &str, json: Value) -> Named<net::VirtualService> {
    Named {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec: spec("istio.networking.v1alpha3.VirtualService", json),
    }
}

pub(crate) fn authn_policy(
    namespace: &str,
    name: &str,
    json: Value,
) -> Named<istio_api::pb::istio::authentication::v1alpha1::Policy> {
    Named {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec: spec("istio.authentication.v1alpha1.Policy", json),
    }
}

/// A push context holding `services` and `rules`.
pub(crate) fn push(services: Vec<Service>, rules: Vec<Named<net::DestinationRule>>) -> PushContext {
    PushContext {
        services: services.into_iter().map(|service| (service.hostname.clone(), Arc::new(service))).collect(),
        destination_rules: rules,
        version: "1".to_string(),
        ..PushContext::default()
    }
}

/// A sidecar at `ip` in `namespace` with `labels`.
pub(crate) fn sidecar(namespace: &str, ip: &str, labels: &[(&str, &str)]) -> Proxy {
    Proxy {
        kind: ProxyKind::Sidecar,
        id: format!("sidecar~{ip}~app-1.{namespace}~{namespace}.svc.cluster.local"),
        workload: format!("app-1.{namespace}"),
        namespace: namespace.to_string(),
        ips: vec![ip.to_string()],
        labels: labels.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect::<HashMap<_, _>>(),
        dns_domain: format!("{namespace}.svc.cluster.local"),
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

/// Bookinfo's reviews service: three versions on port 9080.
pub(crate) fn reviews() -> Vec<Service> {
    service_entry(
        "default",
        serde_json::json!({
            "hosts": ["reviews.default.svc.cluster.local"],
            "addresses": ["10.96.0.12"],
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "endpoints": [
                {"address": "10.1.0.21", "labels": {"app": "reviews", "version": "v1"}},
                {"address": "10.1.0.22", "labels": {"app": "reviews", "version": "v2"}},
                {"address": "10.1.0.23", "labels": {"app": "reviews", "version": "v3"}}
            ]
        }),
    )
}
