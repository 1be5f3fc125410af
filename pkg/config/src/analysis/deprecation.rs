//! `deprecation.DeprecationAnalyzer`: fields 1.4 deprecated in VirtualServices, EnvoyFilters and
//! ServiceRoleBindings, each with its replacement where there is one.

use serde_json::Value;

use super::analyzer::Analyzer;
use super::messages::deprecated;
use super::snapshot::{array, string, ENVOY_FILTERS, SERVICE_ROLE_BINDINGS, VIRTUAL_SERVICES};

pub(super) fn analyzer() -> Analyzer {
    Analyzer::new(
        "deprecation.DeprecationAnalyzer",
        &[VIRTUAL_SERVICES, ENVOY_FILTERS, SERVICE_ROLE_BINDINGS],
        |snapshot, messages| {
            for service in snapshot.entries(VIRTUAL_SERVICES) {
                for detail in virtual_service_deprecations(service.spec()) {
                    messages.push(deprecated(&service.origin, &detail));
                }
            }
            for filter in snapshot.entries(ENVOY_FILTERS) {
                let spec = filter.spec();
                if spec.get("workloadLabels").and_then(Value::as_object).is_some_and(|labels| !labels.is_empty()) {
                    messages.push(deprecated(
                        &filter.origin,
                        &replaced("EnvoyFilter.workloadLabels", "EnvoyFilter.workload_selector"),
                    ));
                }
                if !array(spec, "filters").is_empty() {
                    messages.push(deprecated(&filter.origin, "EnvoyFilter.filters is deprecated"));
                }
            }
            for binding in snapshot.entries(SERVICE_ROLE_BINDINGS) {
                for subject in array(binding.spec(), "subjects") {
                    if !string(subject, "group").is_empty() {
                        messages.push(deprecated(&binding.origin, "ServiceRoleBinding.subjects.group is deprecated"));
                    }
                }
            }
        },
    )
}

fn replaced(field: &str, replacement: &str) -> String {
    format!("{field} is deprecated; use {replacement}")
}

/// Whether a field holds something: a non-empty map or list, `true`, or a non-zero number.
fn is_set(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Object(map)) => !map.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64().is_some_and(|n| n > 0.0),
        Some(Value::String(text)) => !text.is_empty(),
        _ => false,
    }
}

fn virtual_service_deprecations(spec: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for route in array(spec, "http") {
        if is_set(route.get("websocketUpgrade")) {
            found.push("HTTPRoute.websocket_upgrade ignored".to_string());
        }
        let route_fields = [
            ("appendHeaders", "HTTPRoute.append_headers", "HTTPRoute.headers.request.add"),
            ("appendRequestHeaders", "HTTPRoute.append_request_headers", "HTTPRoute.headers.request.add"),
            ("removeRequestHeaders", "HTTPRoute.remove_request_headers", "HTTPRoute.headers.request.remove"),
            ("appendResponseHeaders", "HTTPRoute.append_response_headers", "HTTPRoute.headers.response.add"),
            ("removeResponseHeaders", "HTTPRoute.remove_response_headers", "HTTPRoute.headers.response.remove"),
        ];
        for (key, field, replacement) in route_fields {
            if is_set(route.get(key)) {
                found.push(replaced(field, replacement));
            }
        }
        for destination in array(route, "route") {
            let destination_fields = [
                (
                    "appendRequestHeaders",
                    "HTTPRoute.Route.append_request_headers",
                    "HTTPRoute.route.headers.request.add",
                ),
                (
                    "removeRequestHeaders",
                    "HTTPRoute.Route.remove_request_headers",
                    "HTTPRoute.route.headers.request.remove",
                ),
                (
                    "appendResponseHeaders",
                    "HTTPRoute.Route.append_response_headers",
                    "HTTPRoute.route.headers.response.add",
                ),
                (
                    "removeResponseHeaders",
                    "HTTPRoute.Route.remove_response_headers",
                    "HTTPRoute.route.headers.response.remove",
                ),
            ];
            for (key, field, replacement) in destination_fields {
                if is_set(destination.get(key)) {
                    found.push(replaced(field, replacement));
                }
            }
        }
        if let Some(fault) = route.get("fault") {
            if fault.get("delay").is_some_and(|delay| is_set(delay.get("percent"))) {
                found.push(replaced("HTTPRoute.fault.delay.percent", "HTTPRoute.fault.delay.percentage"));
            }
            if fault.get("abort").is_some_and(|abort| is_set(abort.get("percent"))) {
                found.push(replaced("HTTPRoute.fault.abort.percent", "HTTPRoute.fault.abort.percentage"));
            }
        }
    }
    found
}
