//! DestinationRule rules: host, subsets, and traffic policies (load balancer, connection pool,
//! outlier detection, TLS, port-level settings), plus the locality LB setting the mesh config uses.

use std::collections::HashSet;

use super::virtual_service::subset_name;
use crate::validation::common::*;
use crate::validation::invalid::Invalid;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn destination_rule(rule: &net::DestinationRule, report: &mut Report) {
    report.check("spec.host", validate_wildcard_domain(&rule.host));
    if let Some(policy) = &rule.traffic_policy {
        traffic_policy("spec.trafficPolicy", policy, report);
    }
    for (index, subset) in rule.subsets.iter().enumerate() {
        let field = format!("spec.subsets[{index}]");
        report.check(format!("{field}.name"), subset_name(&subset.name));
        report.check(format!("{field}.labels"), validate_labels(&subset.labels));
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(&format!("{field}.trafficPolicy"), policy, report);
        }
    }
    let mut names = HashSet::new();
    for subset in &rule.subsets {
        if !names.insert(subset.name.as_str()) {
            report.error("spec.subsets", format!("duplicate subset name {:?}", subset.name));
        }
    }
    report.check("spec.exportTo", validate_export_to(&rule.export_to));
}

pub(super) fn traffic_policy(field: &str, policy: &net::TrafficPolicy, report: &mut Report) {
    if policy.outlier_detection.is_none()
        && policy.connection_pool.is_none()
        && policy.load_balancer.is_none()
        && policy.tls.is_none()
        && policy.port_level_settings.is_empty()
    {
        report.error(field, "traffic policy must have at least one field");
        return;
    }
    outlier_detection(field, policy.outlier_detection.as_ref(), report);
    connection_pool(field, policy.connection_pool.as_ref(), report);
    load_balancer(field, policy.load_balancer.as_ref(), report);
    tls_settings(field, policy.tls.as_ref(), report);
    for (index, port_policy) in policy.port_level_settings.iter().enumerate() {
        let field = format!("{field}.portLevelSettings[{index}]");
        if port_policy.port.is_none() {
            report.error(&field, "portTrafficPolicy must have valid port");
        }
        if port_policy.outlier_detection.is_none()
            && port_policy.connection_pool.is_none()
            && port_policy.load_balancer.is_none()
            && port_policy.tls.is_none()
        {
            report.error(&field, "port traffic policy must have at least one field");
        } else {
            outlier_detection(&field, port_policy.outlier_detection.as_ref(), report);
            connection_pool(&field, port_policy.connection_pool.as_ref(), report);
            load_balancer(&field, port_policy.load_balancer.as_ref(), report);
            tls_settings(&field, port_policy.tls.as_ref(), report);
        }
    }
}

pub(super) fn outlier_detection(field: &str, outlier: Option<&net::OutlierDetection>, report: &mut Report) {
    let Some(outlier) = outlier else { return };
    let field = format!("{field}.outlierDetection");
    if let Some(time) = &outlier.base_ejection_time {
        report.check(format!("{field}.baseEjectionTime"), validate_duration(time));
    }
    if outlier.consecutive_errors < 0 {
        report.error(format!("{field}.consecutiveErrors"), "outlier detection consecutive errors cannot be negative");
    }
    if let Some(interval) = &outlier.interval {
        report.check(format!("{field}.interval"), validate_duration(interval));
    }
    report.check(format!("{field}.maxEjectionPercent"), validate_percent(i64::from(outlier.max_ejection_percent)));
    report.check(format!("{field}.minHealthPercent"), validate_percent(i64::from(outlier.min_health_percent)));
}

pub(super) fn connection_pool(field: &str, pool: Option<&net::ConnectionPoolSettings>, report: &mut Report) {
    let Some(pool) = pool else { return };
    let field = format!("{field}.connectionPool");
    if pool.http.is_none() && pool.tcp.is_none() {
        report.error(&field, "connection pool must have at least one field");
        return;
    }
    if let Some(http) = &pool.http {
        let checks = [
            (
                "http1MaxPendingRequests",
                http.http1_max_pending_requests,
                "http1 max pending requests must be non-negative",
            ),
            ("http2MaxRequests", http.http2_max_requests, "http2 max requests must be non-negative"),
            (
                "maxRequestsPerConnection",
                http.max_requests_per_connection,
                "max requests per connection must be non-negative",
            ),
            ("maxRetries", http.max_retries, "max retries must be non-negative"),
        ];
        for (name, value, message) in checks {
            if value < 0 {
                report.error(format!("{field}.http.{name}"), message);
            }
        }
        if let Some(idle) = &http.idle_timeout {
            report.check(format!("{field}.http.idleTimeout"), validate_duration(idle));
        }
    }
    if let Some(tcp) = &pool.tcp {
        if tcp.max_connections < 0 {
            report.error(format!("{field}.tcp.maxConnections"), "max connections must be non-negative");
        }
        if let Some(timeout) = &tcp.connect_timeout {
            report.check(format!("{field}.tcp.connectTimeout"), validate_duration(timeout));
        }
    }
}

pub(super) fn load_balancer(field: &str, settings: Option<&net::LoadBalancerSettings>, report: &mut Report) {
    use net::load_balancer_settings::consistent_hash_lb::HashKey;
    use net::load_balancer_settings::LbPolicy;
    let Some(settings) = settings else { return };
    let field = format!("{field}.loadBalancer");
    if let Some(LbPolicy::ConsistentHash(hash)) = &settings.lb_policy {
        if let Some(HashKey::HttpCookie(cookie)) = &hash.hash_key {
            if cookie.name.is_empty() {
                report.error(format!("{field}.consistentHash.httpCookie.name"), "name required for HttpCookie");
            }
            if cookie.ttl.is_none() {
                report.error(format!("{field}.consistentHash.httpCookie.ttl"), "ttl required for HttpCookie");
            }
        }
    }
}

pub(crate) fn locality_lb_setting(setting: &net::LocalityLoadBalancerSetting) -> Result<(), Invalid> {
    if !setting.distribute.is_empty() && !setting.failover.is_empty() {
        return Err(Invalid::DistributeAndFailover);
    }
    let mut sources = Vec::new();
    for distribute in &setting.distribute {
        sources.push(distribute.from.as_str());
        let mut total: u64 = 0;
        for weight in distribute.to.values() {
            if *weight == 0 {
                return Err(Invalid::LocalityWeight);
            }
            total += u64::from(*weight);
        }
        if total != 100 {
            return Err(Invalid::LocalityWeightTotal(total));
        }
        localities(distribute.to.keys().map(String::as_str))?;
    }
    localities(sources.into_iter())?;
    for failover in &setting.failover {
        if failover.from == failover.to {
            return Err(Invalid::FailoverSameRegion);
        }
        if failover.to.contains('*') {
            return Err(Invalid::FailoverWildcard);
        }
    }
    Ok(())
}

pub(super) fn localities<'a>(localities: impl Iterator<Item = &'a str>) -> Result<(), Invalid> {
    let mut seen = HashSet::new();
    for locality in localities {
        if locality.is_empty() {
            return Err(Invalid::EmptyLocality);
        }
        if locality.contains('*') && (!locality.ends_with('*') || locality.matches('*').count() > 1) {
            return Err(Invalid::LocalityWildcard(locality.to_string()));
        }
        if !seen.insert(locality) {
            return Err(Invalid::LocalityOverlap(locality.to_string()));
        }
    }
    Ok(())
}

pub(super) fn tls_settings(field: &str, tls: Option<&net::TlsSettings>, report: &mut Report) {
    let Some(tls) = tls else { return };
    let field = format!("{field}.tls");
    if tls.mode == net::tls_settings::TlSmode::Mutual as i32 {
        if tls.client_certificate.is_empty() {
            report.error(format!("{field}.clientCertificate"), "client certificate required for mutual tls");
        }
        if tls.private_key.is_empty() {
            report.error(format!("{field}.privateKey"), "private key required for mutual tls");
        }
    }
}
