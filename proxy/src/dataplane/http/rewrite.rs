//! What a route changes about a request and its response: header edits at the route, virtual
//! host and route table levels (the most specific level first, so the route table's win), the
//! path prefix rewrite (keeping the original in `x-envoy-original-path`), and the host rewrite.

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::{HeaderMap, Response};

use super::super::body::Body;
use super::super::config::route::{Forward, HeaderAdd, HeaderEdits, PathMatch};
use super::exchange::Exchange;
use super::router::header_name;
use super::routing::Selected;

/// The three levels of header edits, the most specific first.
fn levels<'a>(selected: &'a Selected<'_>) -> [&'a HeaderEdits; 3] {
    [&selected.route.headers, &selected.host.headers, &selected.table.headers]
}

/// Removes and adds request headers as the route's levels say.
pub(crate) fn request_headers(headers: &mut HeaderMap, selected: &Selected<'_>) {
    for edits in levels(selected) {
        for name in &edits.request_remove {
            headers.remove(name.as_str());
        }
        apply_adds(headers, &edits.request_add);
    }
}

/// Removes and adds response headers as the route's levels say.
pub(crate) fn response_headers(response: &mut Response<Body>, selected: &Selected<'_>) {
    for edits in levels(selected) {
        for name in &edits.response_remove {
            response.headers_mut().remove(name.as_str());
        }
        apply_adds(response.headers_mut(), &edits.response_add);
    }
}

fn apply_adds(headers: &mut HeaderMap, adds: &[HeaderAdd]) {
    for add in adds {
        let (Some(name), Ok(value)) = (header_name(&add.name), HeaderValue::from_str(&add.value)) else {
            continue;
        };
        if add.append {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

/// Rewrites the request's path (prefix rewrite) and authority (host rewrite) for the upstream;
/// returns the authority it goes out with. The URI keeps only path and query.
pub(crate) fn uri_and_host(
    parts: &mut Parts,
    forward: &Forward,
    path_match: &PathMatch,
    exchange: &Exchange,
) -> String {
    let original_path = exchange.original_path.as_str();
    if let Some(rewrite) = &forward.prefix_rewrite {
        let matched = match path_match {
            PathMatch::Prefix(prefix) | PathMatch::SeparatedPrefix(prefix) => Some(prefix.as_str()),
            PathMatch::Exact(path) => Some(path.as_str()),
            PathMatch::Regex(_) => None,
        };
        if let Some(matched) = matched {
            let rest = original_path.get(matched.len()..).unwrap_or("");
            let rewritten = format!("{rewrite}{rest}");
            if let Ok(uri) = rewritten.parse() {
                parts.uri = uri;
                if let Ok(value) = HeaderValue::from_str(original_path) {
                    parts.headers.insert("x-envoy-original-path", value);
                }
            }
        }
    } else if let Some(path) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(path);
    }
    let upstream_authority = forward.host_rewrite.clone().unwrap_or_else(|| exchange.authority.clone());
    if let Ok(value) = HeaderValue::from_str(&upstream_authority) {
        parts.headers.insert(HOST, value);
    }
    upstream_authority
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::config::route::Action;
    use crate::dataplane::http::routing::select;
    use crate::dataplane::http::testing::{downstream, parts, route_table};
    use serde_json::json;

    #[test]
    fn prefix_and_host_rewrites_keep_the_original_path() {
        let table = route_table(json!({"name": "80", "virtual_hosts": [{"name": "h", "domains": ["*"], "routes": [
            {"match": {"prefix": "/v1/reviews"}, "route": {"cluster": "c", "prefix_rewrite": "/reviews",
                                                           "host_rewrite_literal": "reviews.internal"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]}));
        let mut request = parts("GET", "http://bookinfo.com/v1/reviews/0?x=1", &[]);
        let exchange = Exchange::begin(downstream(), &request);
        let selected = select(&table, &exchange, &request).expect("route");
        let Action::Forward(forward) = &selected.route.action else { panic!("not forwarded") };
        let authority = uri_and_host(&mut request, forward, &selected.route.matcher.path, &exchange);
        assert_eq!(authority, "reviews.internal");
        assert_eq!(request.uri, "/reviews/0?x=1");
        assert_eq!(request.headers["x-envoy-original-path"], "/v1/reviews/0?x=1");
        assert_eq!(request.headers[HOST], "reviews.internal");

        let mut plain = parts("GET", "http://bookinfo.com/productpage", &[]);
        let exchange = Exchange::begin(downstream(), &plain);
        let selected = select(&table, &exchange, &plain).expect("route");
        let Action::Forward(forward) = &selected.route.action else { panic!("not forwarded") };
        assert_eq!(uri_and_host(&mut plain, forward, &selected.route.matcher.path, &exchange), "bookinfo.com");
        assert_eq!(plain.uri, "/productpage", "only path and query go upstream");
        assert!(!plain.headers.contains_key("x-envoy-original-path"));
    }

    /// Edits apply route, then virtual host, then table: the route table has the last word.
    #[test]
    fn header_edits_apply_the_most_specific_level_first() {
        let add = |value: &str| json!([{"header": {"key": "x-level", "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]);
        let table = route_table(json!({"name": "80",
            "request_headers_to_add": add("table"), "response_headers_to_add": add("table"),
            "virtual_hosts": [{"name": "h", "domains": ["*"],
                "request_headers_to_add": add("host"), "request_headers_to_remove": ["x-secret"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"},
                            "request_headers_to_add": add("route"), "response_headers_to_remove": ["x-internal"]}]}]}));
        let mut request = parts("GET", "/", &[("host", "a"), ("x-secret", "1")]);
        let exchange = Exchange::begin(downstream(), &request);
        let selected = select(&table, &exchange, &request).expect("route");
        request_headers(&mut request.headers, &selected);
        assert_eq!(request.headers["x-level"], "table");
        assert!(!request.headers.contains_key("x-secret"));

        let mut response = http::Response::new(crate::dataplane::body::empty());
        response.headers_mut().insert("x-internal", HeaderValue::from_static("1"));
        response_headers(&mut response, &selected);
        assert_eq!(response.headers()["x-level"], "table");
        assert!(!response.headers().contains_key("x-internal"));
    }
}
