//! CORS, as Envoy's CORS filter does it when the connection manager has one: the route's policy,
//! else the virtual host's; a preflight request from an allowed origin is answered here, and a
//! normal response to one gets the `access-control-*` headers.

use http::request::Parts;
use http::Response;

use super::super::body::Body;
use super::super::config::listener::HttpManagerConfig;
use super::super::config::route::Cors;
use super::local;
use super::routing::Selected;

/// The CORS policy of a request on its route, and the origin it came from.
pub(crate) struct CorsRequest<'a> {
    policy: &'a Cors,
    origin: String,
}

impl<'a> CorsRequest<'a> {
    /// The policy that applies, when the manager filters CORS and the request names an origin.
    pub(crate) fn of(manager: &HttpManagerConfig, selected: &Selected<'a>, parts: &Parts) -> Option<CorsRequest<'a>> {
        if !manager.cors_filter {
            return None;
        }
        let policy = selected.route.filters.cors.as_ref().or(selected.host.filters.cors.as_ref())?;
        let origin = parts.headers.get("origin").and_then(|value| value.to_str().ok())?.to_string();
        Some(CorsRequest { policy, origin })
    }

    /// The answer to a preflight request from an allowed origin.
    pub(crate) fn preflight(&self, parts: &Parts) -> Option<Response<Body>> {
        (local::is_preflight(&parts.method, &parts.headers) && self.policy.allows(&self.origin))
            .then(|| self.policy.preflight(&self.origin))
    }

    /// Adds the CORS headers to the response for an allowed origin.
    pub(crate) fn decorate(&self, response: &mut Response<Body>) {
        if self.policy.allows(&self.origin) {
            self.policy.decorate(&self.origin, response);
        }
    }
}
