//! The installation's components, each in its own module as 1.4's charts were.

#[path = "components/base.rs"]
mod base;
#[path = "components/citadel.rs"]
mod citadel;
#[path = "components/console.rs"]
mod console;
#[path = "components/galley.rs"]
mod galley;
#[path = "components/gateways.rs"]
mod gateways;
#[path = "components/grafana.rs"]
mod grafana;
#[path = "components/injector.rs"]
mod injector;
#[path = "components/kiali.rs"]
mod kiali;
#[path = "components/mixer.rs"]
mod mixer;
#[path = "components/nodeagent.rs"]
mod nodeagent;
#[path = "components/pilot.rs"]
mod pilot;
#[path = "components/prometheus.rs"]
mod prometheus;
#[path = "components/tracing.rs"]
mod tracing;

use crate::install::{Install, InstallError};
use crate::manifest::Manifest;

/// Every component's objects, in no particular order.
pub(crate) fn all(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let mut manifests = base::manifests(install)?;
    if install.enabled("trafficManagement") {
        manifests.extend(pilot::manifests(install)?);
    }
    for key in ["policy", "telemetry"] {
        if install.enabled(key) {
            manifests.extend(mixer::manifests(install, key)?);
        }
    }
    if install.enabled("security") {
        manifests.extend(citadel::manifests(install)?);
        if install.node_agent() {
            manifests.extend(nodeagent::manifests(install)?);
        }
    }
    if install.enabled("configManagement") {
        manifests.extend(galley::manifests(install)?);
    }
    if install.enabled("autoInjection") {
        manifests.extend(injector::manifests(install)?);
    }
    for gateway in gateways::GATEWAYS {
        if install.enabled(&format!("gateways.components.{}", gateway.settings)) {
            manifests.extend(gateways::manifests(install, &gateway)?);
        }
    }
    if install.enabled("gateways.components.ingressGateway") {
        if let Some(object) = crate::k8s_ingress::preconfigured_gateway(install.value(""), &install.namespace()) {
            manifests.push(Manifest { component: "IngressGateway", object });
        }
    }
    // The addons, which 1.4's spec had no feature for: `values.ADDON.enabled`.
    if install.addon("prometheus") {
        manifests.extend(prometheus::manifests(install)?);
    }
    if install.addon("grafana") {
        manifests.extend(grafana::manifests(install)?);
    }
    if install.addon("kiali") {
        manifests.extend(kiali::manifests(install)?);
    }
    if install.addon("tracing") {
        manifests.extend(tracing::manifests(install)?);
    }
    if install.addon("meshConsole") {
        manifests.extend(console::manifests(install)?);
    }
    Ok(manifests)
}
