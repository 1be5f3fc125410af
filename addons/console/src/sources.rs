//! Where the console's data comes from, each over its own HTTP API: Prometheus (instant and
//! range queries), the trace collector (Zipkin's v2 query API) and Pilot's debug endpoints
//! (`/debug/syncz`, `/debug/configz`). A source that is not configured, not reachable or
//! answering nonsense gives an error that names it, which the pages show in place of its data.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one source may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a source gave no data.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no {0} address was given to the console")]
    NotConfigured(&'static str),
    #[error("{source_name} at {url}: {message}")]
    Failed { source_name: &'static str, url: String, message: String },
    #[error("{source_name} has no {url}")]
    NotFound { source_name: &'static str, url: String },
}

/// A labelled value of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// A labelled series of a range query: (seconds since the epoch, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The console's sources; `None` is a source it was not given.
#[derive(Debug, Clone)]
pub struct Sources {
    client: Client<HttpConnector, Empty<Bytes>>,
    pub prometheus: Option<String>,
    pub zipkin: Option<String>,
    pub pilot: Option<String>,
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn labels(metric: &Value) -> BTreeMap<String, String> {
    metric
        .as_object()
        .map(|object| {
            object.iter().map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string())).collect()
        })
        .unwrap_or_default()
}

/// A Prometheus sample value (`[time, "1.5"]`); NaN (a quantile of nothing) is left out.
fn sample_value(pair: &Value) -> Option<(f64, f64)> {
    let time = pair[0].as_f64()?;
    let value: f64 = pair[1].as_str()?.parse().ok()?;
    value.is_finite().then_some((time, value))
}

impl Sources {
    pub fn new(prometheus: Option<String>, zipkin: Option<String>, pilot: Option<String>) -> Sources {
        let trim =
            |url: Option<String>| url.map(|url| url.trim_end_matches('/').to_string()).filter(|url| !url.is_empty());
        Sources {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            prometheus: trim(prometheus),
            zipkin: trim(zipkin),
            pilot: trim(pilot),
        }
    }

    async fn get_json(&self, name: &'static str, base: &Option<String>, path: &str) -> Result<Value, SourceError> {
        let base = base.as_deref().ok_or(SourceError::NotConfigured(name))?;
        let url = format!("{base}{path}");
        let failed = |message: String| SourceError::Failed { source_name: name, url: url.clone(), message };
        let uri: http::Uri = url.parse().map_err(|error| failed(format!("not a URL: {error}")))?;
        let fetch = async {
            let response = self.client.get(uri).await.map_err(|error| failed(format!("unreachable: {error}")))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|error| failed(error.to_string()))?.to_bytes();
            if status == http::StatusCode::NOT_FOUND {
                return Err(SourceError::NotFound { source_name: name, url: url.clone() });
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(failed(format!("answered {status}: {}", text.trim())));
            }
            serde_json::from_slice(&body).map_err(|error| failed(format!("not JSON: {error}")))
        };
        tokio::time::timeout(TIMEOUT, fetch).await.map_err(|_| failed(format!("no answer within {TIMEOUT:?}")))?
    }

    /// A PromQL instant query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, SourceError> {
        let answer = self
            .get_json("Prometheus", &self.prometheus, &format!("/api/v1/query?{}", encode(&[("query", promql)])))
            .await?;
        Ok(answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (_, value) = sample_value(&item["value"])?;
                Some(Sample { labels: labels(&item["metric"]), value })
            })
            .collect())
    }

    /// A PromQL range query over the last `span`, a point every `step`.
    pub async fn query_range(&self, promql: &str, span: Duration, step: Duration) -> Result<Vec<Series>, SourceError> {
        let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let start = end.saturating_sub(span.as_secs());
        let (start, end, step) = (start.to_string(), end.to_string(), step.as_secs().max(1).to_string());
        let path = format!(
            "/api/v1/query_range?{}",
            encode(&[("query", promql), ("start", &start), ("end", &end), ("step", &step)])
        );
        let answer = self.get_json("Prometheus", &self.prometheus, &path).await?;
        Ok(answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| Series {
                labels: labels(&item["metric"]),
                points: item["values"].as_array().into_iter().flatten().filter_map(sample_value).collect(),
            })
            .filter(|series| !series.points.is_empty())
            .collect())
    }

    /// The services that reported spans.
    pub async fn trace_services(&self) -> Result<Vec<String>, SourceError> {
        let answer = self.get_json("the trace collector", &self.zipkin, "/api/v2/services").await?;
        Ok(answer.as_array().into_iter().flatten().filter_map(|name| name.as_str().map(str::to_string)).collect())
    }

    /// Recent traces (each a list of Zipkin v2 spans), of one service or of all.
    pub async fn traces(&self, service: Option<&str>, limit: usize) -> Result<Vec<Vec<Value>>, SourceError> {
        let limit = limit.to_string();
        let mut pairs = vec![("limit", limit.as_str())];
        if let Some(service) = service {
            pairs.push(("serviceName", service));
        }
        let answer =
            self.get_json("the trace collector", &self.zipkin, &format!("/api/v2/traces?{}", encode(&pairs))).await?;
        Ok(serde_json::from_value(answer).unwrap_or_default())
    }

    /// One trace's spans.
    pub async fn trace(&self, id: &str) -> Result<Vec<Value>, SourceError> {
        let id: String = id.chars().filter(char::is_ascii_hexdigit).collect();
        match self.get_json("the trace collector", &self.zipkin, &format!("/api/v2/trace/{id}")).await {
            Ok(answer) => Ok(answer.as_array().cloned().unwrap_or_default()),
            Err(SourceError::NotFound { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Pilot's view of each connected proxy's sync state.
    pub async fn syncz(&self) -> Result<Vec<Value>, SourceError> {
        Ok(self.get_json("Pilot", &self.pilot, "/debug/syncz").await?.as_array().cloned().unwrap_or_default())
    }

    /// The Istio config Pilot holds (what Galley validated and served).
    pub async fn configz(&self) -> Result<Vec<Value>, SourceError> {
        Ok(self.get_json("Pilot", &self.pilot, "/debug/configz").await?.as_array().cloned().unwrap_or_default())
    }
}
