//! The RBAC HTTP filter's place in a request: the request and its connection shown to the
//! manager's RBAC rules before a route is chosen, as Envoy's filter chain runs RBAC before the
//! router. Headers are looked up as Envoy's matchers see them: pseudo-headers (`:path` with
//! its query, `:method`, `:authority`, `:scheme`) and the values of a repeated header joined
//! with `,`. Dynamic metadata is what the `jwt_authn` filters left.

use http::request::Parts;

use super::super::context::TrafficContext;
use super::super::rbac::engine::Subject;
use super::super::rbac::Rules;
use super::exchange::Exchange;

/// The value of header `name` in a request, as RBAC and route matchers see it.
fn header_value(parts: &Parts, exchange: &Exchange, name: &str) -> Option<String> {
    match name {
        ":path" => Some(exchange.original_path.clone()),
        ":method" => Some(parts.method.as_str().to_string()),
        ":authority" => Some(exchange.authority.clone()),
        ":scheme" => Some(exchange.downstream.scheme().to_string()),
        _ => {
            let values: Vec<&str> =
                parts.headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect();
            (!values.is_empty()).then(|| values.join(","))
        }
    }
}

/// Whether the manager's RBAC rules let the request through (counting the decision under
/// `http.<stat_prefix>.rbac.`).
pub(crate) fn allowed(
    context: &TrafficContext,
    stat_prefix: &str,
    rules: &Rules,
    exchange: &Exchange,
    parts: &Parts,
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> bool {
    let lookup = |name: &str| header_value(parts, exchange, name);
    let path = exchange.original_path.split('?').next().unwrap_or_default();
    let downstream = &exchange.downstream;
    let subject = Subject {
        source: downstream.remote,
        destination: downstream.local,
        peer: downstream.peer.as_deref(),
        server_name: downstream.server_name.as_deref(),
        header: Some(&lookup),
        path: Some(path),
        metadata,
    };
    let decision = rules.decide(&subject, &context.stats, || format!("http.{stat_prefix}.rbac."));
    if !decision.allowed {
        tracing::debug!(
            "RBAC denied {} {}: rbac_access_denied_matched_policy[{}]",
            parts.method,
            exchange.original_path,
            decision.policy.as_deref().unwrap_or("none")
        );
    }
    decision.allowed
}
