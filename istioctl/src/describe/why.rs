//! `describe --why`: why the pod's recent requests failed, in words. It reads the pod's proxy
//! access log (1.4's default text format: status code, response flags, Mixer status, upstream
//! cluster) and its stats, groups the failures by cause and explains each: no route (NR), no
//! cluster or subset (NC), an open circuit breaker (UO), upstream connection failures (UF,
//! URX, UC), no healthy upstream (UH), RBAC denials, and Mixer denials (the Mixer filter's
//! status, or `UAEX` where a stock Envoy asks Mixer through ext_authz). Both data planes write
//! the same log and stats, so this works the same on either.

use std::collections::BTreeMap;

use istio_config::object::Object;
use regex::Regex;
use serde_json::Value;

use super::access::Access;
use super::render::PROXY_CONTAINER;

/// One access-log line's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub code: u16,
    pub flags: String,
    pub mixer_status: String,
    pub authority: String,
    pub cluster: String,
}

fn log_pattern() -> Regex {
    Regex::new(
        r#"^\[[^\]]+\] "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<code>\d+) (?P<flags>\S+) "(?P<mixer>[^"]*)" "[^"]*" \S+ \S+ \S+ \S+ "[^"]*" "[^"]*" "[^"]*" "(?P<authority>[^"]*)" "[^"]*" (?P<cluster>\S+)"#,
    )
    .expect("valid regex")
}

/// The requests in a proxy's log (other lines are skipped).
pub(crate) fn requests(log: &str) -> Vec<Request> {
    let pattern = log_pattern();
    log.lines()
        .filter_map(|line| pattern.captures(line))
        .map(|c| Request {
            method: c["method"].to_string(),
            path: c["path"].to_string(),
            code: c["code"].parse().unwrap_or(0),
            flags: c["flags"].to_string(),
            mixer_status: c["mixer"].to_string(),
            authority: c["authority"].to_string(),
            cluster: c["cluster"].to_string(),
        })
        .collect()
}

fn failed(request: &Request) -> bool {
    request.code >= 400 || request.code == 0 || request.flags != "-"
}

/// The clusters the proxy's routes for `authority` name but its clusters do not include: what
/// a route without a cluster (NC) points at. A stock Envoy logs no cluster for such a request,
/// so its config dump says which it was.
pub(crate) fn missing_route_clusters(dump: &Value, authority: &str) -> Vec<String> {
    let sections = dump["configs"].as_array().cloned().unwrap_or_default();
    let of_type = |suffix: &'static str| {
        sections.iter().filter(move |c| c["@type"].as_str().is_some_and(|t| t.ends_with(suffix)))
    };
    let mut known = std::collections::BTreeSet::new();
    for section in of_type(".ClustersConfigDump") {
        for list in ["static_clusters", "dynamic_active_clusters", "dynamic_warming_clusters"] {
            for entry in section[list].as_array().into_iter().flatten() {
                known.extend(entry["cluster"]["name"].as_str().map(str::to_string));
            }
        }
    }
    let mut missing = Vec::new();
    for section in of_type(".RoutesConfigDump") {
        let configs = ["static_route_configs", "dynamic_route_configs"]
            .into_iter()
            .flat_map(|list| section[list].as_array().cloned().unwrap_or_default());
        for config in configs {
            for host in config["route_config"]["virtual_hosts"].as_array().into_iter().flatten() {
                if !host["domains"].as_array().into_iter().flatten().any(|domain| domain == authority) {
                    continue;
                }
                for route in host["routes"].as_array().into_iter().flatten() {
                    let action = &route["route"];
                    let named = action["cluster"].as_str().map(str::to_string).into_iter().chain(
                        action["weighted_clusters"]["clusters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c["name"].as_str().map(str::to_string)),
                    );
                    for cluster in named {
                        if !known.contains(&cluster) && !missing.contains(&cluster) {
                            missing.push(cluster);
                        }
                    }
                }
            }
        }
    }
    missing
}

/// The cause of a failed request, in words; `dump` (the proxy's config dump) names the
/// cluster a stock Envoy did not log.
pub(crate) fn cause(request: &Request, dump: Option<&Value>) -> String {
    let flags: Vec<&str> = request.flags.split(',').collect();
    let has = |flag: &str| flags.contains(&flag);
    let cluster = if request.cluster != "-" {
        request.cluster.clone()
    } else {
        let missing = dump.map(|dump| missing_route_clusters(dump, &request.authority)).unwrap_or_default();
        if has("NC") && !missing.is_empty() {
            missing.join(" or ")
        } else {
            "its destination".to_string()
        }
    };
    let mixer = request.mixer_status.as_str();
    if !mixer.is_empty() && mixer != "-" && !mixer.starts_with("OK") {
        return format!("denied by Mixer policy ({mixer}): a Mixer rule (denier, list or quota) refused it");
    }
    if has("UAEX") {
        return "denied by Mixer policy: the external authorization check (Mixer's Check) refused it".to_string();
    }
    if has("RBAC") || (request.code == 403 && request.flags == "-") {
        return "denied by RBAC: no authorization policy allows this request (check ServiceRoles/AuthorizationPolicies)"
            .to_string();
    }
    if has("NR") {
        return format!(
            "no route (NR): no VirtualService route or listener matched {}{} — check the VirtualService's matches and hosts",
            request.authority, request.path
        );
    }
    if has("NC") {
        return format!(
            "no cluster (NC): the route points at {cluster}, which does not exist — usually a subset that no DestinationRule defines"
        );
    }
    if has("UO") {
        return format!(
            "circuit breaker open (UO): {cluster} had too many pending requests or connections (DestinationRule connectionPool)"
        );
    }
    if has("UH") {
        return format!(
            "no healthy upstream (UH): every endpoint of {cluster} is ejected (outlier detection) or there is none"
        );
    }
    if has("URX") {
        return format!("retries exhausted (URX): every attempt to {cluster} failed (see its retry policy)");
    }
    if has("UF") {
        return format!(
            "upstream connection failure (UF): connecting to {cluster} failed (is the app listening? mTLS mismatch?)"
        );
    }
    if has("UC") {
        return format!("upstream connection termination (UC): {cluster} closed the connection before answering");
    }
    if has("UT") {
        return format!("upstream timeout (UT): {cluster} did not answer within the route's timeout");
    }
    if has("DI") {
        return "fault injection (DI): the VirtualService delays these requests".to_string();
    }
    if has("FI") {
        return "fault injection (FI): the VirtualService aborts these requests".to_string();
    }
    if request.flags == "-" {
        return format!("the application answered {}", request.code);
    }
    format!("response flags {}", request.flags)
}

/// The stats counters that explain failures, with their values, when not zero.
pub(crate) fn failure_counters(stats: &str) -> Vec<(String, u64)> {
    let interesting = [
        ".no_route",
        ".upstream_rq_pending_overflow",
        ".upstream_cx_connect_fail",
        ".upstream_cx_none_healthy",
        ".rbac.denied",
        "rbac.denied",
    ];
    let mut found = Vec::new();
    for line in stats.lines() {
        let Some((name, value)) = line.split_once(": ") else { continue };
        if !interesting.iter().any(|suffix| name.ends_with(suffix)) {
            continue;
        }
        if let Ok(value) = value.trim().parse::<u64>() {
            if value > 0 {
                found.push((name.to_string(), value));
            }
        }
    }
    found
}

/// The explanation for a pod's log, stats and (when a failure needs it) config dump.
pub(crate) fn explain_text(pod_name: &str, log: &str, stats: &str, dump: Option<&Value>) -> String {
    let all = requests(log);
    let failures: Vec<&Request> = all.iter().filter(|request| failed(request)).collect();
    let mut out = format!(
        "--------------------\nWhy requests failed (the last {} requests in {pod_name}'s proxy log):\n",
        all.len()
    );
    if failures.is_empty() {
        out.push_str("   No recent request failed.\n");
    } else {
        let mut grouped: BTreeMap<(u16, String, String), (usize, &Request)> = BTreeMap::new();
        for request in &failures {
            let entry =
                grouped.entry((request.code, request.flags.clone(), request.cluster.clone())).or_insert((0, request));
            entry.0 += 1;
        }
        for ((code, flags, _), (count, example)) in grouped {
            out.push_str(&format!(
                "   {count} x {code} {flags} ({} {}{}): {}\n",
                example.method,
                example.authority,
                example.path,
                cause(example, dump)
            ));
        }
    }
    let counters = failure_counters(stats);
    if !counters.is_empty() {
        out.push_str("   Proxy counters:\n");
        for (name, value) in counters {
            out.push_str(&format!("      {name}: {value}\n"));
        }
    }
    out
}

pub(crate) fn explain(access: &Access, pod: &Object) -> anyhow::Result<String> {
    let log = access.logs(pod, PROXY_CONTAINER)?;
    let stats = access.admin(pod, "stats").unwrap_or_default();
    let unnamed_nc = requests(&log).iter().any(|r| r.cluster == "-" && r.flags.split(',').any(|f| f == "NC"));
    let dump = if unnamed_nc {
        access.admin(pod, "config_dump").ok().and_then(|text| serde_json::from_str::<Value>(&text).ok())
    } else {
        None
    };
    Ok(explain_text(pod.name(), &log, &stats, dump.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(code: u16, flags: &str, mixer: &str, cluster: &str) -> String {
        format!(
            "[2026-12-07T04:19:38.004Z] \"GET /reviews/0 HTTP/1.1\" {code} {flags} \"{mixer}\" \"-\" 0 178 37 37 \"-\" \"curl\" \"id\" \"reviews:9080\" \"10.44.1.3:9080\" {cluster} - 10.96.0.14:9080 10.44.1.4:36734 - default"
        )
    }

    #[test]
    fn access_log_lines_are_read() {
        let log =
            format!("agent started\n{}\n", line(503, "UO", "-", "outbound|9080|v1|reviews.default.svc.cluster.local"));
        let found = requests(&log);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, 503);
        assert_eq!(found[0].flags, "UO");
        assert_eq!(found[0].authority, "reviews:9080");
        assert_eq!(found[0].cluster, "outbound|9080|v1|reviews.default.svc.cluster.local");
    }

    #[test]
    fn each_failure_mode_is_explained() {
        let explain =
            |code, flags, mixer| cause(&requests(&line(code, flags, mixer, "outbound|9080|v9|reviews"))[0], None);
        assert!(explain(404, "NR", "-").starts_with("no route (NR)"));
        assert!(explain(503, "NC", "-").contains("subset that no DestinationRule defines"));
        assert!(explain(503, "UO", "-").starts_with("circuit breaker open (UO)"));
        assert!(explain(503, "UH", "-").starts_with("no healthy upstream (UH)"));
        assert!(explain(503, "UF,URX", "-").starts_with("retries exhausted (URX)"));
        assert!(explain(503, "UF", "-").starts_with("upstream connection failure (UF)"));
        assert!(explain(403, "-", "-").starts_with("denied by RBAC"));
        assert!(explain(403, "-", "PERMISSION_DENIED:denyreviewsv3handler.denier.default:Not allowed")
            .starts_with("denied by Mixer policy (PERMISSION_DENIED"));
        assert!(explain(403, "UAEX", "-").starts_with("denied by Mixer policy"));
        assert_eq!(explain(500, "-", "-"), "the application answered 500");
    }

    #[test]
    fn a_stock_envoys_unnamed_nc_is_named_from_its_routes() {
        let dump = serde_json::json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "dynamic_active_clusters": [{"cluster": {"name": "outbound|9080|v1|reviews.default.svc.cluster.local"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "9080", "virtual_hosts": [
                {"domains": ["ratings:9080"], "routes": [{"route": {"cluster": "outbound|9080|v7|ratings.default.svc.cluster.local"}}]},
                {"domains": ["reviews.default.svc.cluster.local:9080", "reviews:9080"], "routes": [
                    {"route": {"weighted_clusters": {"clusters": [
                        {"name": "outbound|9080|v1|reviews.default.svc.cluster.local"},
                        {"name": "outbound|9080|v9|reviews.default.svc.cluster.local"}]}}}]}]}}]}]});
        assert_eq!(
            missing_route_clusters(&dump, "reviews:9080"),
            ["outbound|9080|v9|reviews.default.svc.cluster.local"]
        );
        let request = &requests(&line(503, "NC", "-", "-"))[0];
        assert!(
            cause(request, Some(&dump)).contains(
                "the route points at outbound|9080|v9|reviews.default.svc.cluster.local, which does not exist"
            ),
            "{}",
            cause(request, Some(&dump))
        );
        assert!(cause(request, None).contains("the route points at its destination"));
    }

    #[test]
    fn failures_are_grouped_and_counters_listed() {
        let log = [
            line(200, "-", "-", "outbound|9080||reviews"),
            line(503, "UO", "-", "outbound|9080||reviews"),
            line(503, "UO", "-", "outbound|9080||reviews"),
        ]
        .join("\n");
        let stats =
            "cluster.outbound|9080||reviews.upstream_rq_pending_overflow: 2\ncluster.x.upstream_cx_connect_fail: 0\n";
        let text = explain_text("productpage-v1-1", &log, stats, None);
        assert!(text.contains("the last 3 requests"), "{text}");
        assert!(text.contains("   2 x 503 UO (GET reviews:9080/reviews/0): circuit breaker open (UO)"), "{text}");
        assert!(text.contains("cluster.outbound|9080||reviews.upstream_rq_pending_overflow: 2"), "{text}");
        assert!(!text.contains("upstream_cx_connect_fail"), "{text}");
        assert!(explain_text("p", &line(200, "-", "-", "c"), "", None).contains("No recent request failed."));
    }
}
