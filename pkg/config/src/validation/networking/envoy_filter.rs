//! EnvoyFilter rules: the deprecated filter form and the 1.4 config-patch form (applyTo, match
//! and patch must agree).

use crate::validation::common::*;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn envoy_filter(filter: &net::EnvoyFilter, report: &mut Report) {
    use net::envoy_filter::ApplyTo;
    if !filter.workload_labels.is_empty() && filter.workload_selector.is_some() {
        report.error("spec", "only one of workloadLabels or workloadSelector can be set");
    }
    if filter.workload_selector.as_ref().is_some_and(|selector| selector.labels.is_empty()) {
        report.error("spec.workloadSelector", "Envoy filter: workloadSelector cannot have empty labels");
    }
    for (index, deprecated) in filter.filters.iter().enumerate() {
        let field = format!("spec.filters[{index}]");
        if let Some(position) = &deprecated.insert_position {
            let relative = position.index == net::envoy_filter::insert_position::Index::Before as i32
                || position.index == net::envoy_filter::insert_position::Index::After as i32;
            if relative && position.relative_to.is_empty() {
                report.error(
                    format!("{field}.insertPosition"),
                    "envoy filter: missing relativeTo filter with BEFORE/AFTER index",
                );
            }
        }
        if deprecated.filter_type == net::envoy_filter::filter::FilterType::Invalid as i32 {
            report.error(format!("{field}.filterType"), "envoy filter: missing filter type");
        }
        if deprecated.filter_name.is_empty() {
            report.error(format!("{field}.filterName"), "envoy filter: missing filter name");
        }
        if deprecated.filter_config.is_none() {
            report.error(format!("{field}.filterConfig"), "envoy filter: missing filter config");
        }
    }
    for (index, patch) in filter.config_patches.iter().enumerate() {
        let field = format!("spec.configPatches[{index}]");
        if patch.apply_to == ApplyTo::Invalid as i32 {
            report.error(format!("{field}.applyTo"), "Envoy filter: missing applyTo");
            continue;
        }
        let Some(body) = &patch.patch else {
            report.error(format!("{field}.patch"), "Envoy filter: missing patch");
            continue;
        };
        if body.operation == net::envoy_filter::patch::Operation::Invalid as i32 {
            report.error(format!("{field}.patch.operation"), "Envoy filter: missing patch operation");
            continue;
        }
        if body.operation != net::envoy_filter::patch::Operation::Remove as i32 && body.value.is_none() {
            report.error(format!("{field}.patch.value"), "Envoy filter: missing patch value for non-remove operation");
            continue;
        }
        let apply_to = ApplyTo::try_from(patch.apply_to).unwrap_or(ApplyTo::Invalid);
        if match_is_valid(&field, apply_to, patch.r#match.as_ref(), report) {
            value_is_valid(&field, apply_to, body, report);
        }
    }
}

/// Whether a patch's match agrees with its `applyTo` (1.4's checks). A bad proxy-version
/// regex or a listener-class mismatch ends the patch's checks there, as in 1.4.
fn match_is_valid(
    field: &str,
    apply_to: net::envoy_filter::ApplyTo,
    matcher: Option<&net::envoy_filter::EnvoyConfigObjectMatch>,
    report: &mut Report,
) -> bool {
    use net::envoy_filter::envoy_config_object_match::ObjectTypes;
    use net::envoy_filter::ApplyTo;
    let Some(matcher) = matcher else { return true };
    if let Some(proxy) = &matcher.proxy {
        if !proxy.proxy_version.is_empty() {
            if let Err(message) = validate_regex(&proxy.proxy_version) {
                report.error(
                    format!("{field}.match.proxy.proxyVersion"),
                    format!("Envoy filter: invalid regex for proxy version, [{message}]"),
                );
                return false;
            }
        }
    }
    let Some(object_types) = &matcher.object_types else { return true };
    match apply_to {
        ApplyTo::Listener | ApplyTo::FilterChain | ApplyTo::NetworkFilter | ApplyTo::HttpFilter => {
            let ObjectTypes::Listener(listener) = object_types else {
                report.error(
                    format!("{field}.match"),
                    "Envoy filter: applyTo for listener class objects cannot have non listener match",
                );
                return false;
            };
            let Some(network_filter) = listener.filter_chain.as_ref().and_then(|chain| chain.filter.as_ref()) else {
                return true;
            };
            let sub_filter_field = format!("{field}.match.listener.filterChain.filter.subFilter");
            let problem = if network_filter.name.is_empty() {
                Some((
                    format!("{field}.match.listener.filterChain.filter"),
                    "Envoy filter: filter match has no name to match on",
                ))
            } else if let Some(sub_filter) = &network_filter.sub_filter {
                if apply_to != ApplyTo::HttpFilter {
                    Some((sub_filter_field, "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only"))
                } else if network_filter.name != "envoy.http_connection_manager" {
                    Some((
                        sub_filter_field,
                        "Envoy filter: subfilter match requires filter match with envoy.http_connection_manager",
                    ))
                } else if sub_filter.name.is_empty() {
                    Some((sub_filter_field, "Envoy filter: subfilter match has no name to match on"))
                } else {
                    None
                }
            } else {
                None
            };
            match problem {
                Some((path, message)) => {
                    report.error(path, message);
                    false
                }
                None => true,
            }
        }
        ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
            if !matches!(object_types, ObjectTypes::RouteConfiguration(_)) =>
        {
            report.error(
                format!("{field}.match"),
                "Envoy filter: applyTo for http route class objects cannot have non route configuration match",
            );
            true
        }
        ApplyTo::Cluster if !matches!(object_types, ObjectTypes::Cluster(_)) => {
            report.error(
                format!("{field}.match"),
                "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
            );
            true
        }
        _ => true,
    }
}

/// Whether a patch's value reads as the xDS object its `applyTo` names (1.4 checked this
/// last).
fn value_is_valid(
    field: &str,
    apply_to: net::envoy_filter::ApplyTo,
    body: &net::envoy_filter::Patch,
    report: &mut Report,
) {
    let (Some(value), Some(object)) = (&body.value, istio_xds::patch_value::PatchObject::of(apply_to)) else {
        return;
    };
    let merge = body.operation == net::envoy_filter::patch::Operation::Merge as i32;
    let checked = istio_api::json::encode("google.protobuf.Struct", value)
        .map_err(|error| error.to_string())
        .and_then(|json| istio_xds::patch_value::patch_value(object, &json, merge).map_err(|error| error.to_string()));
    if let Err(message) = checked {
        report.error(format!("{field}.patch.value"), format!("Envoy filter: {message}"));
    }
}
