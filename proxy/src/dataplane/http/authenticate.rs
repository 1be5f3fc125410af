//! The `jwt_authn` filters' place in a request: after the connection manager has the request
//! and before RBAC, as Pilot orders them. A request that fails a requirement gets Envoy's
//! local reply (401, or 403 for a wrong audience, with `www-authenticate`); one that passes
//! carries the verified payloads on as dynamic metadata under `envoy.filters.http.jwt_authn`,
//! where the RBAC filters' metadata matchers find them.

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Map, Value};

use super::super::body::Body;
use super::super::context::TrafficContext;
use super::super::jwt::token::JwtError;
use super::super::jwt::{JwtAuthn, TokenSource, FILTER};
use super::exchange::Exchange;
use super::local;

/// A request as the filter sees it.
struct RequestView<'a> {
    parts: &'a Parts,
    exchange: &'a Exchange,
}

impl TokenSource for RequestView<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.exchange.header_value(self.parts, name)
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.exchange.original_path.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| value.to_string())
        })
    }

    fn path_and_query(&self) -> &str {
        &self.exchange.original_path
    }

    fn is_cors_preflight(&self) -> bool {
        let headers = &self.parts.headers;
        self.parts.method == http::Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    }
}

/// Runs the manager's `jwt_authn` filters: the dynamic metadata they leave (`None` when no
/// filter verified a token), or why the request is refused ([`refusal`] answers it).
pub(crate) fn run(
    context: &TrafficContext,
    stat_prefix: &str,
    filters: &[std::sync::Arc<JwtAuthn>],
    exchange: &Exchange,
    parts: &mut Parts,
) -> Result<Option<Map<String, Value>>, JwtError> {
    let mut payloads = Map::new();
    for filter in filters {
        let outcome = filter.authenticate(&RequestView { parts, exchange });
        if let Some(error) = outcome.result {
            context.stats.counter(&format!("http.{stat_prefix}.jwt_authn.denied")).inc();
            tracing::debug!("jwt_authn denied {} {}: {}", parts.method, exchange.original_path, error.message());
            return Err(error);
        }
        context.stats.counter(&format!("http.{stat_prefix}.jwt_authn.allowed")).inc();
        for header in &outcome.strip_headers {
            parts.headers.remove(header.as_str());
        }
        payloads.extend(outcome.payloads);
    }
    if payloads.is_empty() {
        return Ok(None);
    }
    let mut metadata = Map::new();
    metadata.insert(FILTER.to_string(), Value::Object(payloads));
    Ok(Some(metadata))
}

/// Envoy's local reply for a refused token.
pub(crate) fn refusal(error: JwtError, exchange: &Exchange) -> Response<Body> {
    let status = if error == JwtError::AudienceNotAllowed { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    let mut response = local::reply(status, error.message());
    let (scheme, authority, path) = (exchange.downstream.scheme(), &exchange.authority, &exchange.original_path);
    let mut challenge = format!("Bearer realm=\"{scheme}://{authority}{path}\"");
    if error != JwtError::Missing {
        challenge.push_str(", error=\"invalid_token\"");
    }
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}
