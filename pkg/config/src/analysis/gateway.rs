//! `gateway.IngressGatewayPortAnalyzer`: a Gateway whose selector matches no pod, or whose
//! server ports no Service of its pods exposes. A Gateway for the system ingress gateway
//! (`istio: ingressgateway`) that is not among the analysed objects is checked against the
//! ports the ingress gateway's Service has by default.

use std::collections::BTreeSet;

use serde_json::Value;

use super::analyzer::Analyzer;
use super::messages::{gateway_port_not_on_workload, referenced_resource_not_found};
use super::snapshot::{array, selector_string, selects, string, string_map, GATEWAYS, PODS, SERVICES};

/// The ports of 1.4's `istio-ingressgateway` Service that the analysis assumes when that
/// gateway is not among the analysed objects.
const DEFAULT_INGRESS_GATEWAY_PORTS: [i64; 4] = [80, 443, 31400, 15443];

pub(super) fn analyzer() -> Analyzer {
    Analyzer::new("gateway.IngressGatewayPortAnalyzer", &[GATEWAYS, PODS, SERVICES], |snapshot, messages| {
        for gateway in snapshot.entries(GATEWAYS) {
            let selector = string_map(gateway.spec(), "selector");
            let mut service_ports = BTreeSet::new();
            let mut matched_pods = 0;
            for pod in snapshot.entries(PODS) {
                let labels = pod.labels();
                if !selects(&selector, &labels) {
                    continue;
                }
                matched_pods += 1;
                for service in
                    snapshot.entries(SERVICES).iter().filter(|service| service.namespace() == pod.namespace())
                {
                    if !selects(&string_map(service.spec(), "selector"), &labels) {
                        continue;
                    }
                    for port in array(service.spec(), "ports") {
                        // Kubernetes defaults a port's protocol to TCP.
                        if matches!(string(port, "protocol"), "" | "TCP") {
                            service_ports.insert(port.get("port").and_then(Value::as_i64).unwrap_or(0));
                        }
                    }
                }
            }
            if matched_pods == 0 {
                let is_system_ingress =
                    selector.len() == 1 && selector.get("istio").is_some_and(|v| v == "ingressgateway");
                if !is_system_ingress {
                    messages.push(referenced_resource_not_found(
                        &gateway.origin,
                        "selector",
                        &selector_string(&selector),
                    ));
                    continue;
                }
                service_ports.extend(DEFAULT_INGRESS_GATEWAY_PORTS);
            }
            for server in array(gateway.spec(), "servers") {
                let Some(port) = server.get("port") else { continue };
                let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
                if !service_ports.contains(&number) {
                    messages.push(gateway_port_not_on_workload(&gateway.origin, &selector_string(&selector), number));
                }
            }
        }
    })
}
