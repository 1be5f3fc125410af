//! Calls from one Bookinfo service to another: a plain HTTP/1.1 GET with a timeout, carrying
//! the headers the original services forward (request id, B3 trace context, the end user,
//! the user agent) so routing rules and traces see the original request.

use std::time::Duration;

use axum::http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Headers passed on to the next service, as productpage and reviews do.
pub(crate) const FORWARDED_HEADERS: [&str; 13] = [
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampled",
    "end-user",
    "user-agent",
    "b3",
];

/// The forwarded subset of `incoming`.
pub(crate) fn forwarded(incoming: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        if let Some(value) = incoming.get(name) {
            headers.insert(name, value.clone());
        }
    }
    headers
}

/// What a call returned.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// An HTTP client shared by a service's handlers.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build_http() }
    }
}

impl HttpClient {
    /// GETs `http://{address}{path}` with `headers`; an error when it cannot connect, the
    /// response does not come within `timeout`, or the body is cut short.
    pub(crate) async fn get(
        &self,
        address: &str,
        path: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let mut request = hyper::Request::get(format!("http://{address}{path}")).body(Empty::new())?;
        request.headers_mut().extend(headers.clone());
        let call = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(Reply { status, body })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| anyhow::anyhow!("GET {address}{path}: no answer within {timeout:?}"))?
    }
}
