//! Route selection: the manager's route table (inline, or the RDS table of its name), the
//! virtual host for the request's authority, and the first route whose match accepts the
//! original path and headers.

use std::sync::Arc;

use http::request::Parts;

use super::super::config::listener::{HttpManagerConfig, RouteSource};
use super::super::config::route::{Route, RouteTable, VirtualHost};
use super::super::context::TrafficContext;
use super::exchange::Exchange;

/// The route a request takes, with the levels its header edits and filters come from.
pub(crate) struct Selected<'a> {
    pub table: &'a RouteTable,
    pub host: &'a VirtualHost,
    pub route: &'a Route,
}

/// The route table the manager uses, if it has arrived.
pub(crate) fn route_table(context: &TrafficContext, manager: &HttpManagerConfig) -> Option<Arc<RouteTable>> {
    match &manager.routes {
        RouteSource::Inline(table) => Some(table.clone()),
        RouteSource::Rds(name) => context.routes.load().get(name).cloned(),
    }
}

/// The route of `table` the request takes, if any.
pub(crate) fn select<'a>(table: &'a RouteTable, exchange: &Exchange, parts: &Parts) -> Option<Selected<'a>> {
    let host = table.virtual_host(&exchange.authority)?;
    let route = host
        .routes
        .iter()
        .find(|route| route.matcher.matches(&exchange.original_path, |name| exchange.header_value(parts, name)))?;
    Some(Selected { table, host, route })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::http::testing::{downstream, parts, route_table};
    use serde_json::json;

    fn selected_route(table: &RouteTable, method: &str, uri: &str, headers: &[(&str, &str)]) -> Option<String> {
        let parts = parts(method, uri, headers);
        let exchange = Exchange::begin(downstream(), &parts);
        select(table, &exchange, &parts).map(|selected| selected.route.name.clone())
    }

    /// The virtual host by authority (exact before wildcard), then the first route whose path
    /// and headers — HTTP/2 pseudo-headers included — match.
    #[test]
    fn routes_are_chosen_by_authority_path_and_headers() {
        let table = route_table(json!({"name": "9080", "virtual_hosts": [
            {"name": "reviews", "domains": ["reviews:9080", "reviews"], "routes": [
                {"name": "jason", "match": {"prefix": "/", "headers": [{"name": "end-user", "exact_match": "jason"}]},
                 "route": {"cluster": "v2"}},
                {"name": "deletes", "match": {"prefix": "/", "headers": [{"name": ":method", "exact_match": "DELETE"}]},
                 "route": {"cluster": "v1"}},
                {"name": "api", "match": {"path": "/api"}, "route": {"cluster": "v1"}},
                {"name": "rest", "match": {"prefix": "/"}, "route": {"cluster": "v1"}}]},
            {"name": "any", "domains": ["*"], "routes": [{"name": "fallback", "match": {"prefix": "/"}, "route": {"cluster": "x"}}]}
        ]}));
        let route = |method: &str, uri: &str, headers: &[(&str, &str)]| selected_route(&table, method, uri, headers);
        assert_eq!(
            route("GET", "/reviews/0", &[("host", "reviews:9080"), ("end-user", "jason")]).as_deref(),
            Some("jason")
        );
        assert_eq!(route("DELETE", "/reviews/0", &[("host", "reviews")]).as_deref(), Some("deletes"));
        assert_eq!(route("GET", "/api?x=1", &[("host", "reviews")]).as_deref(), Some("api"));
        assert_eq!(route("GET", "/api/more", &[("host", "reviews")]).as_deref(), Some("rest"));
        assert_eq!(route("GET", "/", &[("host", "ratings")]).as_deref(), Some("fallback"));

        let only_reviews = route_table(json!({"name": "9080", "virtual_hosts": [
            {"name": "reviews", "domains": ["reviews"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "v1"}}]}]}));
        assert_eq!(selected_route(&only_reviews, "GET", "/", &[("host", "ratings")]), None, "no virtual host");
    }
}
