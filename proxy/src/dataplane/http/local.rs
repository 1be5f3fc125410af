//! Replies the data plane makes itself, with Envoy's status codes and body texts (so clients
//! and tests see the same thing either way): no route, no healthy upstream, overflow, timeout,
//! injected faults, redirects and direct responses; and CORS handling.

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::{Method, Response, StatusCode};

use super::super::access_log::ResponseFlag;
use super::super::body::{self, Body};
use super::super::config::route::{Cors, Redirect};

/// A locally generated response and the flag that explains it.
pub(crate) fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(if text.is_empty() { body::empty() } else { body::full(text.to_string()) });
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

/// Envoy's reply for a request that failed for `flag`.
pub(crate) fn failure(flag: ResponseFlag) -> Response<Body> {
    match flag {
        ResponseFlag::NoRouteFound => reply(StatusCode::NOT_FOUND, ""),
        ResponseFlag::NoHealthyUpstream => reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
        ResponseFlag::UpstreamOverflow => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
        ResponseFlag::UpstreamConnectionFailure => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        ResponseFlag::UpstreamConnectionTermination | ResponseFlag::UpstreamRetryLimitExceeded => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
        ResponseFlag::UpstreamRequestTimeout => reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        ResponseFlag::NoClusterFound => reply(StatusCode::SERVICE_UNAVAILABLE, ""),
        ResponseFlag::DownstreamConnectionTermination => reply(StatusCode::SERVICE_UNAVAILABLE, ""),
        ResponseFlag::FaultInjected => reply(StatusCode::SERVICE_UNAVAILABLE, "fault filter abort"),
        ResponseFlag::DelayInjected => reply(StatusCode::OK, ""),
        ResponseFlag::UnauthorizedExternalService => reply(StatusCode::FORBIDDEN, ""),
    }
}

/// The `Location` of a redirect for a request to `authority` + `path_and_query`.
pub(crate) fn redirect(
    redirect: &Redirect,
    tls: bool,
    authority: &str,
    path_and_query: &str,
    matched_prefix: Option<&str>,
) -> Response<Body> {
    let scheme = redirect.scheme.clone().unwrap_or_else(|| if tls { "https".into() } else { "http".into() });
    let (host, original_port) = split_authority(authority);
    let host = redirect.host.clone().unwrap_or_else(|| host.to_string());
    let port = match (redirect.port, original_port) {
        (Some(port), _) => format!(":{port}"),
        // A scheme change drops the port, as Envoy does for the default ports.
        (None, Some(port)) if redirect.scheme.is_none() => format!(":{port}"),
        _ => String::new(),
    };
    let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let mut new_path = match (&redirect.path, &redirect.prefix_rewrite, matched_prefix) {
        (Some(path), _, _) => path.clone(),
        (None, Some(rewrite), Some(prefix)) if path.starts_with(prefix) => {
            format!("{rewrite}{}", &path[prefix.len()..])
        }
        _ => path.to_string(),
    };
    if let (Some(query), false) = (query, redirect.strip_query) {
        if !new_path.contains('?') {
            new_path = format!("{new_path}?{query}");
        }
    }
    let location = format!("{scheme}://{host}{port}{new_path}");
    let mut response = reply(StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY), "");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// `host` and optional port of an authority (IPv6 literals keep their brackets).
pub(crate) fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.ends_with(']') {
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

impl Cors {
    pub(crate) fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|matcher| matcher.matches(origin))
    }

    /// The answer to a preflight request from an allowed origin.
    pub(crate) fn preflight(&self, origin: &str) -> Response<Body> {
        let mut response = reply(StatusCode::OK, "");
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                if !value.is_empty() {
                    headers.insert(name, value);
                }
            }
        };
        set("access-control-allow-origin", origin);
        set("access-control-allow-methods", &self.allow_methods);
        set("access-control-allow-headers", &self.allow_headers);
        set("access-control-max-age", &self.max_age);
        if self.allow_credentials {
            set("access-control-allow-credentials", "true");
        }
        response
    }

    /// Adds the CORS headers to a normal response for an allowed origin.
    pub(crate) fn decorate(&self, origin: &str, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(origin) {
            headers.insert("access-control-allow-origin", value);
        }
        if self.allow_credentials {
            headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        }
        if let Ok(value) = HeaderValue::from_str(&self.expose_headers) {
            if !value.is_empty() {
                headers.insert("access-control-expose-headers", value);
            }
        }
    }
}

/// Whether this is a CORS preflight request.
pub(crate) fn is_preflight(method: &Method, headers: &http::HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key("origin") && headers.contains_key("access-control-request-method")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_redirect_keeps_path_and_query() {
        let redirect = Redirect::to_https();
        let response = super::redirect(&redirect, false, "httpbin.example.com:80", "/status/200?x=1", None);
        assert_eq!(response.status(), 301);
        assert_eq!(response.headers()[LOCATION], "https://httpbin.example.com/status/200?x=1");
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("reviews:9080"), ("reviews", Some("9080")));
        assert_eq!(split_authority("reviews"), ("reviews", None));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
    }
}
