//! VirtualService rules: hosts, gateways, HTTP/TLS/TCP routes, matches, destinations and weights,
//! redirects, rewrites, retries, timeouts, faults, mirroring, CORS and header operations.

use crate::validation::common::*;
use crate::validation::invalid::Invalid;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn virtual_service(vs: &net::VirtualService, report: &mut Report) {
    if vs.hosts.is_empty() {
        report.error("spec.hosts", "virtual service must have at least one host");
    }
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|gateway| gateway == "mesh");
    gateway_names("spec.gateways", &vs.gateways, report);
    let mut all_hosts_valid = true;
    for (index, host) in vs.hosts.iter().enumerate() {
        let field = format!("spec.hosts[{index}]");
        if let Err(message) = validate_wildcard_domain(host) {
            if validate_ip(host).is_err() {
                report.error(field, message.to_string());
                all_hosts_valid = false;
            }
        } else if applies_to_mesh && host == "*" {
            report.error(field, "wildcard host * is not allowed for virtual services bound to the mesh gateway");
            all_hosts_valid = false;
        }
    }
    if all_hosts_valid {
        for (i, first) in vs.hosts.iter().enumerate() {
            for second in &vs.hosts[i + 1..] {
                if host_matches(first, second) {
                    report.error("spec.hosts", format!("duplicate hosts in virtual service: {first} & {second}"));
                }
            }
        }
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        report.error("spec", "http, tcp or tls must be provided in virtual service");
    }
    for (index, route) in vs.http.iter().enumerate() {
        http_route(&format!("spec.http[{index}]"), route, report);
    }
    for (index, route) in vs.tls.iter().enumerate() {
        tls_route(&format!("spec.tls[{index}]"), route, &vs.hosts, report);
    }
    for (index, route) in vs.tcp.iter().enumerate() {
        tcp_route(&format!("spec.tcp[{index}]"), route, report);
    }
    report.check("spec.exportTo", validate_export_to(&vs.export_to));
}

pub(super) fn gateway_names(field: &str, gateways: &[String], report: &mut Report) {
    for (index, gateway) in gateways.iter().enumerate() {
        let field = format!("{field}[{index}]");
        match gateway.split_once('/') {
            None => report.check(field, validate_fqdn(gateway)),
            Some((namespace, name)) => {
                if namespace.is_empty() || name.is_empty() {
                    report.error(&field, "config namespace and gateway name cannot be empty");
                }
                if !is_dns1123_label(namespace) {
                    report.error(&field, format!("invalid value for namespace: {namespace:?}"));
                }
                if !is_dns1123_label(name) {
                    report.error(&field, format!("invalid value for gateway name: {name:?}"));
                }
            }
        }
    }
}

pub(super) fn header_names<'a>(field: &str, names: impl IntoIterator<Item = &'a String>, report: &mut Report) {
    for name in names {
        report.check(field, validate_header_name(name));
    }
}

pub(super) fn header_operations(field: &str, headers: Option<&net::Headers>, report: &mut Report) {
    let Some(headers) = headers else { return };
    for (side, operations) in [("request", &headers.request), ("response", &headers.response)] {
        let Some(operations) = operations else { continue };
        let field = format!("{field}.headers.{side}");
        header_names(&format!("{field}.set"), operations.set.keys(), report);
        header_names(&format!("{field}.add"), operations.add.keys(), report);
        header_names(&format!("{field}.remove"), operations.remove.iter(), report);
    }
}

pub(super) fn string_match(field: &str, matcher: Option<&net::StringMatch>, report: &mut Report) {
    use net::string_match::MatchType;
    let Some(matcher) = matcher else { return };
    match &matcher.match_type {
        Some(MatchType::Regex(pattern)) => report.check(format!("{field}.regex"), validate_regex(pattern)),
        Some(MatchType::Exact(_) | MatchType::Prefix(_)) => {}
        None => report.error(field, "string match must set exact, prefix or regex"),
    }
}

pub(super) fn http_route(field: &str, route: &net::HttpRoute, report: &mut Report) {
    if route.redirect.is_some() {
        if !route.route.is_empty() {
            report.error(field, "HTTP route cannot contain both route and redirect");
        }
        if route.fault.is_some() {
            report.error(field, "HTTP route cannot contain both fault and redirect");
        }
        if route.rewrite.is_some() {
            report.error(field, "HTTP route rule cannot contain both rewrite and redirect");
        }
    } else if route.route.is_empty() {
        report.error(field, "HTTP route or redirect is required");
    }
    header_operations(field, route.headers.as_ref(), report);
    header_names(&format!("{field}.appendHeaders"), route.append_headers.keys(), report);
    header_names(&format!("{field}.appendRequestHeaders"), route.append_request_headers.keys(), report);
    header_names(&format!("{field}.appendResponseHeaders"), route.append_response_headers.keys(), report);
    header_names(&format!("{field}.removeRequestHeaders"), route.remove_request_headers.iter(), report);
    header_names(&format!("{field}.removeResponseHeaders"), route.remove_response_headers.iter(), report);
    if let Some(cors) = &route.cors_policy {
        cors_policy(&format!("{field}.corsPolicy"), cors, report);
    }
    if let Some(fault) = &route.fault {
        fault_injection(&format!("{field}.fault"), fault, report);
    }
    for (index, matcher) in route.r#match.iter().enumerate() {
        let field = format!("{field}.match[{index}]");
        for (name, value) in &matcher.headers {
            report.check(format!("{field}.headers"), validate_header_name(name));
            string_match(&format!("{field}.headers.{name}"), Some(value), report);
        }
        for (name, value) in &matcher.query_params {
            string_match(&format!("{field}.queryParams.{name}"), Some(value), report);
        }
        for (part, value) in [
            ("uri", &matcher.uri),
            ("scheme", &matcher.scheme),
            ("method", &matcher.method),
            ("authority", &matcher.authority),
        ] {
            string_match(&format!("{field}.{part}"), value.as_ref(), report);
        }
        if matcher.port != 0 {
            report.check(format!("{field}.port"), validate_port(i64::from(matcher.port)));
        }
        report.check(format!("{field}.sourceLabels"), validate_labels(&matcher.source_labels));
        gateway_names(&format!("{field}.gateways"), &matcher.gateways, report);
    }
    if let Some(percent) = route.mirror_percent {
        if percent > 100 {
            report.error(
                format!("{field}.mirrorPercent"),
                format!("mirror_percent must have a max value of 100 (it has {percent})"),
            );
        }
    }
    if let Some(mirror) = &route.mirror {
        destination(&format!("{field}.mirror"), mirror, report);
    }
    if let Some(redirect) = &route.redirect {
        let field = format!("{field}.redirect");
        if redirect.uri.is_empty() && redirect.authority.is_empty() {
            report.error(&field, "redirect must specify URI, authority, or both");
        }
        if redirect.redirect_code != 0 && !(300..=399).contains(&redirect.redirect_code) {
            report.error(
                format!("{field}.redirectCode"),
                format!("{} is not a valid redirect code, must be 3xx", redirect.redirect_code),
            );
        }
    }
    if let Some(retries) = &route.retries {
        http_retry(&format!("{field}.retries"), retries, report);
    }
    if let Some(rewrite) = &route.rewrite {
        if rewrite.uri.is_empty() && rewrite.authority.is_empty() {
            report.error(format!("{field}.rewrite"), "rewrite must specify URI, authority, or both");
        }
    }
    let mut total_weight: i64 = 0;
    for (index, weighted) in route.route.iter().enumerate() {
        let field = format!("{field}.route[{index}]");
        match &weighted.destination {
            Some(dest) => destination(&format!("{field}.destination"), dest, report),
            None => report.error(&field, "destination is required"),
        }
        header_operations(&field, weighted.headers.as_ref(), report);
        report.check(format!("{field}.weight"), validate_percent(i64::from(weighted.weight)));
        total_weight += i64::from(weighted.weight);
    }
    if route.route.len() > 1 && total_weight != 100 {
        report.error(format!("{field}.route"), format!("total destination weight {total_weight} != 100"));
    }
    if let Some(timeout) = &route.timeout {
        report.check(format!("{field}.timeout"), validate_duration(timeout));
    }
}

pub(super) fn cors_policy(field: &str, cors: &net::CorsPolicy, report: &mut Report) {
    for method in &cors.allow_methods {
        report.check(format!("{field}.allowMethods"), validate_http_method(method));
    }
    header_names(&format!("{field}.allowHeaders"), cors.allow_headers.iter(), report);
    header_names(&format!("{field}.exposeHeaders"), cors.expose_headers.iter(), report);
    if let Some(max_age) = &cors.max_age {
        report.check(format!("{field}.maxAge"), validate_duration(max_age));
        if max_age.nanos > 0 {
            report.error(format!("{field}.maxAge"), "max_age duration is accurate only to seconds precision");
        }
    }
}

pub(super) fn fault_injection(field: &str, fault: &net::HttpFaultInjection, report: &mut Report) {
    use net::http_fault_injection::abort::ErrorType;
    use net::http_fault_injection::delay::HttpDelayType;
    if fault.abort.is_none() && fault.delay.is_none() {
        report.error(field, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(abort) = &fault.abort {
        let field = format!("{field}.abort");
        report.check(format!("{field}.percent"), validate_percent(i64::from(abort.percent)));
        if let Some(percentage) = &abort.percentage {
            report.check(format!("{field}.percentage"), validate_percentage(percentage.value));
        }
        match &abort.error_type {
            Some(ErrorType::HttpStatus(status)) if !(0..=600).contains(status) => {
                report.error(format!("{field}.httpStatus"), format!("HTTP status {status} is not in range 0-600"));
            }
            Some(ErrorType::GrpcStatus(_)) => {
                report.error(format!("{field}.grpcStatus"), "gRPC abort fault injection not supported yet")
            }
            Some(ErrorType::Http2Error(_)) => {
                report.error(format!("{field}.http2Error"), "HTTP/2 abort fault injection not supported yet")
            }
            Some(ErrorType::HttpStatus(_)) => {}
            None => report.error(&field, "abort must set httpStatus"),
        }
    }
    if let Some(delay) = &fault.delay {
        let field = format!("{field}.delay");
        report.check(format!("{field}.percent"), validate_percent(i64::from(delay.percent)));
        if let Some(percentage) = &delay.percentage {
            report.check(format!("{field}.percentage"), validate_percentage(percentage.value));
        }
        match &delay.http_delay_type {
            Some(HttpDelayType::FixedDelay(duration)) => {
                report.check(format!("{field}.fixedDelay"), validate_duration(duration))
            }
            Some(HttpDelayType::ExponentialDelay(duration)) => {
                report.check(format!("{field}.exponentialDelay"), validate_duration(duration));
                report.error(format!("{field}.exponentialDelay"), "exponentialDelay not supported yet");
            }
            None => report.error(&field, "delay must set fixedDelay"),
        }
    }
}

pub(super) fn http_retry(field: &str, retries: &net::HttpRetry, report: &mut Report) {
    const POLICIES: &[&str] = &[
        "5xx",
        "gateway-error",
        "reset",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ];
    if retries.attempts < 0 {
        report.error(format!("{field}.attempts"), "attempts cannot be negative");
    }
    if retries.attempts == 0 && (retries.per_try_timeout.is_some() || !retries.retry_on.is_empty()) {
        report.error(field, "http retry policy configured when attempts are set to 0 (disabled)");
    }
    if let Some(per_try_timeout) = &retries.per_try_timeout {
        report.check(format!("{field}.perTryTimeout"), validate_duration(per_try_timeout));
    }
    if !retries.retry_on.is_empty() {
        for policy in retries.retry_on.split(',').map(str::trim) {
            let is_status = policy.parse::<u16>().is_ok_and(|code| (100..=599).contains(&code));
            if !is_status && !POLICIES.contains(&policy) {
                report.error(format!("{field}.retryOn"), format!("{policy:?} is not a valid retryOn policy"));
            }
        }
    }
}

pub(super) fn destination(field: &str, dest: &net::Destination, report: &mut Report) {
    if dest.host == "*" {
        report.error(format!("{field}.host"), format!("invalid destination host {}", dest.host));
        return;
    }
    report.check(format!("{field}.host"), validate_wildcard_domain(&dest.host));
    if !dest.subset.is_empty() {
        report.check(format!("{field}.subset"), subset_name(&dest.subset));
    }
    if let Some(port) = &dest.port {
        if port.number != 0 {
            report.check(format!("{field}.port.number"), validate_port(i64::from(port.number)));
        }
    }
}

pub(super) fn subset_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        Err(Invalid::EmptySubsetName)
    } else if !is_dns1123_label(name) {
        Err(Invalid::SubsetName(name.to_string()))
    } else {
        Ok(())
    }
}

pub(super) fn route_destinations(field: &str, routes: &[net::RouteDestination], report: &mut Report) {
    let mut total_weight: i64 = 0;
    for (index, weighted) in routes.iter().enumerate() {
        let field = format!("{field}[{index}]");
        match &weighted.destination {
            Some(dest) => destination(&format!("{field}.destination"), dest, report),
            None => report.error(&field, "destination is required"),
        }
        report.check(format!("{field}.weight"), validate_percent(i64::from(weighted.weight)));
        total_weight += i64::from(weighted.weight);
    }
    if routes.len() > 1 && total_weight != 100 {
        report.error(field, format!("total destination weight {total_weight} != 100"));
    }
}

pub(super) fn tls_route(field: &str, route: &net::TlsRoute, hosts: &[String], report: &mut Report) {
    if route.r#match.is_empty() {
        report.error(format!("{field}.match"), "TLS route must have at least one match condition");
    }
    for (index, matcher) in route.r#match.iter().enumerate() {
        let field = format!("{field}.match[{index}]");
        if matcher.sni_hosts.is_empty() {
            report.error(format!("{field}.sniHosts"), "TLS match must have at least one SNI host");
        }
        for sni in &matcher.sni_hosts {
            let field = format!("{field}.sniHosts");
            if let Err(message) = validate_wildcard_domain(sni) {
                if validate_ip(sni).is_err() {
                    report.error(field, message.to_string());
                    continue;
                }
            }
            if !hosts.iter().any(|host| host_subset_of(sni, host)) {
                report.error(
                    field,
                    format!(
                        "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                        hosts.join(", ")
                    ),
                );
            }
        }
        for subnet in &matcher.destination_subnets {
            report.check(format!("{field}.destinationSubnets"), validate_ip_subnet(subnet));
        }
        if matcher.port != 0 {
            report.check(format!("{field}.port"), validate_port(i64::from(matcher.port)));
        }
        report.check(format!("{field}.sourceLabels"), validate_labels(&matcher.source_labels));
        gateway_names(&format!("{field}.gateways"), &matcher.gateways, report);
    }
    if route.route.is_empty() {
        report.error(format!("{field}.route"), "TLS route is required");
    }
    route_destinations(&format!("{field}.route"), &route.route, report);
}

pub(super) fn tcp_route(field: &str, route: &net::TcpRoute, report: &mut Report) {
    for (index, matcher) in route.r#match.iter().enumerate() {
        let field = format!("{field}.match[{index}]");
        for subnet in &matcher.destination_subnets {
            report.check(format!("{field}.destinationSubnets"), validate_ip_subnet(subnet));
        }
        if !matcher.source_subnet.is_empty() {
            report.check(format!("{field}.sourceSubnet"), validate_ip_subnet(&matcher.source_subnet));
        }
        if matcher.port != 0 {
            report.check(format!("{field}.port"), validate_port(i64::from(matcher.port)));
        }
        report.check(format!("{field}.sourceLabels"), validate_labels(&matcher.source_labels));
        gateway_names(&format!("{field}.gateways"), &matcher.gateways, report);
    }
    if route.route.is_empty() {
        report.error(format!("{field}.route"), "TCP route is required");
    }
    route_destinations(&format!("{field}.route"), &route.route, report);
}
