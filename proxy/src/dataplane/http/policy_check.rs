//! Istio 1.4's `mixer` HTTP filter in the pipeline: once a request is routed, its attributes
//! (the connection, the request, Pilot's `mixer_attributes` and the route's service, what the
//! calling sidecar forwarded in `x-istio-attributes`) are checked with Mixer, with the quotas
//! the service's `QuotaSpec`s charge. A refusal is answered here with 1.4's status and body
//! (`PERMISSION_DENIED:…` as 403, `RESOURCE_EXHAUSTED:Quota is exhausted for: …` as 429); an
//! allowed request gets the rules' header operations. Unless the service's reports are off,
//! the same attributes are kept for the request's report, which the finish completes.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::quota_spec::requirements;

use super::super::body::Body;
use super::super::context::TrafficContext;
use super::super::mixer::attributes::{self, FORWARD_HEADER};
use super::super::mixer::client::MixerClient;
use super::super::mixer::filter::HttpMixer;
use super::super::mixer::report::{PendingReport, Reporter};
use super::exchange::Exchange;
use super::local;
use super::routing::Selected;

const REPLACE: i32 = 0;
const REMOVE: i32 = 1;

/// Applies header operations (REPLACE, REMOVE, APPEND) to `headers`; pseudo-headers are the
/// caller's (see [`apply_to_request`]).
pub(crate) fn apply(operations: &[mixer::HeaderOperation], headers: &mut HeaderMap) {
    for operation in operations {
        let Ok(name) = HeaderName::from_bytes(operation.name.to_lowercase().as_bytes()) else {
            tracing::debug!(header = %operation.name, "header operation on a name that is not a header skipped");
            continue;
        };
        match operation.operation {
            REMOVE => {
                headers.remove(&name);
            }
            kind => {
                let Ok(value) = HeaderValue::from_str(&operation.value) else { continue };
                if kind == REPLACE {
                    headers.insert(name, value);
                } else {
                    headers.append(name, value);
                }
            }
        }
    }
}

/// Applies request header operations, `:path` and `:authority` included (they change where the
/// request goes, so the caller routes it again).
fn apply_to_request(operations: &[mixer::HeaderOperation], exchange: &mut Exchange, parts: &mut Parts) {
    let (pseudo, regular): (Vec<_>, Vec<_>) = operations.iter().cloned().partition(|op| op.name.starts_with(':'));
    apply(&regular, &mut parts.headers);
    for operation in pseudo.iter().filter(|op| op.operation != REMOVE) {
        match operation.name.as_str() {
            ":path" => {
                if let Ok(path) = operation.value.parse::<http::uri::PathAndQuery>() {
                    let mut uri = parts.uri.clone().into_parts();
                    uri.path_and_query = Some(path);
                    if let Ok(uri) = http::Uri::from_parts(uri) {
                        parts.uri = uri;
                        exchange.original_path = operation.value.clone();
                    }
                }
            }
            ":authority" => {
                if let Ok(value) = HeaderValue::from_str(&operation.value) {
                    parts.headers.insert(http::header::HOST, value);
                    exchange.authority = operation.value.clone();
                }
            }
            other => tracing::debug!(header = other, "header operation on a pseudo-header skipped"),
        }
    }
}

/// What an allowed request leaves for later: the response header operations, and whether the
/// request's headers changed (then it is routed again, as 1.4 cleared the route cache).
pub(crate) struct Allowed {
    pub response_operations: Vec<mixer::HeaderOperation>,
    pub headers_changed: bool,
}

/// Checks a routed request. `Ok` carries what an allowed request leaves for later; `Err` the
/// reply for a refused request.
pub(crate) async fn run(
    context: &TrafficContext,
    mixer: &HttpMixer,
    selected: &Selected<'_>,
    exchange: &mut Exchange,
    parts: &mut Parts,
) -> Result<Allowed, Response<Body>> {
    let service = selected
        .route
        .filters
        .mixer
        .as_deref()
        .or(selected.host.filters.mixer.as_deref())
        .unwrap_or(&mixer.default_service);
    let forwarded = if mixer.ignore_forwarded { Default::default() } else { attributes::forwarded(&parts.headers) };
    parts.headers.remove(FORWARD_HEADER);
    let mut forward = mixer.forward.clone();
    forward.merge(&service.forward);
    if let Some(value) = attributes::forward_header(&forward) {
        parts.headers.insert(FORWARD_HEADER, value);
    }
    let reporter = if service.disable_report { None } else { Reporter::shared(&context.clusters, &mixer.transport) };
    if service.disable_check && reporter.is_none() {
        return Ok(Allowed { response_operations: Vec::new(), headers_changed: false });
    }
    let checked = attributes::Checked::of(&mixer.attributes, true);
    let mut bag = attributes::connection(&exchange.downstream, checked);
    attributes::request(&mut bag, parts, &exchange.authority, exchange.downstream.scheme());
    bag.merge(&mixer.attributes);
    bag.merge(&service.attributes);
    bag.merge(&forwarded);
    if let Some(reporter) = reporter {
        exchange.report = Some(PendingReport {
            reporter,
            attributes: bag.clone(),
            outbound: checked.outbound,
            request_header_bytes: attributes::header_bytes(&parts.headers),
        });
    }
    if service.disable_check {
        return Ok(Allowed { response_operations: Vec::new(), headers_changed: false });
    }
    let charged = requirements(&service.quota_specs, &bag);
    let client = MixerClient::shared(&mixer.transport, mixer.scope);
    let decision = client.check(&context.clusters, &bag, &charged).await;
    let directive = decision.directive.unwrap_or_default();
    if directive.direct_response_code != 0 {
        let status = StatusCode::from_u16(u16::try_from(directive.direct_response_code).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = local::reply(status, &directive.direct_response_body);
        apply(&directive.response_header_operations, reply.headers_mut());
        return Err(reply);
    }
    if !decision.status.is_ok() {
        let status = StatusCode::from_u16(decision.status.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(local::reply(status, &decision.status.body()));
    }
    let headers_changed = !directive.request_header_operations.is_empty();
    apply_to_request(&directive.request_header_operations, exchange, parts);
    Ok(Allowed { response_operations: directive.response_header_operations, headers_changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_operations_replace_append_and_remove() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert("x-gone", HeaderValue::from_static("1"));
        let op = |name: &str, value: &str, operation: i32| mixer::HeaderOperation {
            name: name.into(),
            value: value.into(),
            operation,
        };
        apply(
            &[
                op("X-A", "2", REPLACE),
                op("set-cookie", "a=1", 2),
                op("set-cookie", "b=2", 2),
                op("x-gone", "", REMOVE),
            ],
            &mut headers,
        );
        assert_eq!(headers["x-a"], "2");
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert!(!headers.contains_key("x-gone"));
    }
}
