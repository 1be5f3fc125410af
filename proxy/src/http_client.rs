//! A minimal HTTP/1.1 client for the agent's own calls: the local admin API (readiness,
//! `proxy request`, draining) and the application's health endpoints (rewritten probes).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no answer; each names the address and what failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("connecting to {authority}: {source}")]
    Connect { authority: String, source: std::io::Error },
    #[error("{host:?} is not a valid TLS server name")]
    ServerName { host: String },
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("TLS with {authority}: {source}")]
    Tls { authority: String, source: std::io::Error },
    #[error("HTTP handshake with {authority}: {source}")]
    Handshake { authority: String, source: hyper::Error },
    #[error("building the request for {path}: {source}")]
    Request { path: String, source: http::Error },
    #[error("{target}: {source}")]
    Send { target: String, source: hyper::Error },
    #[error("reading {target}: {source}")]
    Read { target: String, source: hyper::Error },
    #[error("{target}: no answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("{path} answered {status}")]
    Status { path: String, status: StatusCode },
}

/// A response's status and whole body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `host:port` — over HTTPS when `tls` is set, without checking the
/// server's certificate, as the kubelet's probes do — and reads the whole answer, all within
/// `timeout`.
pub(crate) async fn send(
    tls: bool,
    method: Method,
    authority: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, ClientError> {
    let target = || format!("{authority}{path_and_query}");
    let exchange = async {
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|source| ClientError::Connect { authority: authority.to_string(), source })?;
        let stream: crate::dataplane::upstream::pool::BoxStream = if tls {
            let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host).trim_matches(['[', ']']);
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| ClientError::ServerName { host: host.to_string() })?;
            let connector = tokio_rustls::TlsConnector::from(crate::dataplane::tls::unverified_client_config()?);
            Box::pin(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ClientError::Tls { authority: authority.to_string(), source })?,
            )
        } else {
            Box::pin(tcp)
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Handshake { authority: authority.to_string(), source })?;
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path_and_query).header(http::header::HOST, authority);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|source| ClientError::Request { path: path_and_query.to_string(), source })?;
        let response =
            sender.send_request(request).await.map_err(|source| ClientError::Send { target: target(), source })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Read { target: target(), source })?
            .to_bytes();
        Ok(Response { status, body })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout { target: target(), timeout })?
}

/// The local admin API on `127.0.0.1:port`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin {
    pub port: u16,
}

impl Admin {
    const TIMEOUT: Duration = Duration::from_secs(5);

    pub(crate) async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.call(Method::GET, path).await
    }

    pub(crate) async fn post(&self, path: &str) -> Result<Response, ClientError> {
        self.call(Method::POST, path).await
    }

    pub(crate) async fn call(&self, method: Method, path: &str) -> Result<Response, ClientError> {
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        send(false, method, &format!("127.0.0.1:{}", self.port), &path, &[], Self::TIMEOUT).await
    }

    /// Counter and gauge values from `/stats` whose names match `filter` (a regex).
    pub(crate) async fn stats(&self, filter: &str) -> Result<Vec<(String, u64)>, ClientError> {
        let response = self.get(&format!("/stats?filter={}", encode_query(filter))).await?;
        if !response.status.is_success() {
            return Err(ClientError::Status { path: "/stats".to_string(), status: response.status });
        }
        Ok(parse_stats(&response.text()))
    }
}

/// Parses `name: value` lines of Envoy's text `/stats`, skipping histograms.
pub(crate) fn parse_stats(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .filter_map(|(name, value)| value.trim().parse().ok().map(|value| (name.to_string(), value)))
        .collect()
}

/// Percent-encodes a query value (regex filters contain `^`, `|`, `\`, …).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines() {
        let stats = parse_stats(
            "cluster_manager.cds.update_success: 3\nlistener_manager.lds.update_rejected: 0\n\
             http.admin.downstream_rq_time: P0(nan,0) P25(nan,0)\n",
        );
        assert_eq!(
            stats,
            [
                ("cluster_manager.cds.update_success".to_string(), 3),
                ("listener_manager.lds.update_rejected".to_string(), 0)
            ]
        );
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query(r"^a\.b|c$"), "%5Ea%5C.b%7Cc%24");
    }
}
