//! Which VirtualServices bind where: to the mesh (`gateways` empty or `mesh`) or to a Gateway
//! named `name`, `ns/name` or 1.4's `name.ns.svc.domain`, resolved against the VirtualService's
//! own namespace. Turning them into routes is the xDS generators' job.

use istio_api::pb::istio::networking::v1alpha3 as net;

use crate::model::{Named, PushContext};

/// VirtualServices that apply to a gateway (`ns/name`) or, for `None`, to the mesh.
pub(crate) fn virtual_services_for<'a>(
    push: &'a PushContext,
    gateway: Option<&str>,
) -> impl Iterator<Item = &'a Named<net::VirtualService>> {
    let gateway = gateway.map(str::to_string);
    push.virtual_services.iter().filter(move |vs| {
        let gateways: Vec<String> =
            if vs.spec.gateways.is_empty() { vec!["mesh".to_string()] } else { vs.spec.gateways.clone() };
        gateways.iter().any(|bound| match &gateway {
            None => bound == "mesh",
            Some(full) => bound != "mesh" && qualify_gateway(bound, &vs.namespace) == *full,
        })
    })
}

/// `name` in namespace `ns` → `ns/name`; `ns/name` stays; 1.4's `name.ns.svc.domain` → `ns/name`.
pub(crate) fn qualify_gateway(gateway: &str, namespace: &str) -> String {
    if gateway.contains('/') {
        return gateway.to_string();
    }
    match gateway.split('.').collect::<Vec<_>>().as_slice() {
        [name] => format!("{namespace}/{name}"),
        [name, ns, ..] => format!("{ns}/{name}"),
        _ => gateway.to_string(),
    }
}
