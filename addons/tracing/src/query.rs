//! Zipkin's `GET /api/v2/traces` query: its parameters (`serviceName`, `remoteServiceName`,
//! `spanName`, `annotationQuery`, `minDuration`, `maxDuration`, `endTs`, `lookback`, `limit`),
//! their defaults, and which traces they match. As in Zipkin, every condition must hold for some
//! span of the named service (of any service when none is named), and the trace must have
//! started inside the window `[endTs - lookback, endTs]`.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::span::Span;

/// Zipkin's defaults: the last day, ten traces.
const DEFAULT_LOOKBACK_MS: u64 = 86_400_000;
const DEFAULT_LIMIT: usize = 10;

/// One term of an annotation query: a tag with a value, or a tag or annotation by name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Tag { key: String, value: String },
    Present(String),
}

/// A parsed trace query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceQuery {
    service: Option<String>,
    remote_service: Option<String>,
    span_name: Option<String>,
    terms: Vec<Term>,
    /// In microseconds.
    min_duration: Option<u64>,
    max_duration: Option<u64>,
    /// In milliseconds since the epoch.
    end_ts: u64,
    lookback: u64,
    pub limit: usize,
}

/// A parameter the query could not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{parameter}={value:?}: {reason}")]
pub struct QueryError {
    parameter: &'static str,
    value: String,
    reason: &'static str,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or_default()
}

fn number(params: &HashMap<String, String>, parameter: &'static str) -> Result<Option<u64>, QueryError> {
    match params.get(parameter).map(|value| value.trim()).filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(value) => value.parse::<u64>().map(Some).map_err(|_| QueryError {
            parameter,
            value: value.to_string(),
            reason: "should be a whole number of at least 0",
        }),
    }
}

/// A name parameter, lower-cased as names are stored; empty (and Zipkin UI's `all`) is none.
fn name(params: &HashMap<String, String>, parameter: &str) -> Option<String> {
    params.get(parameter).map(|value| value.trim().to_lowercase()).filter(|value| !value.is_empty() && value != "all")
}

impl TraceQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<TraceQuery, QueryError> {
        let terms = params
            .get("annotationQuery")
            .map(|query| {
                query
                    .split(" and ")
                    .map(str::trim)
                    .filter(|term| !term.is_empty())
                    .map(|term| match term.split_once('=') {
                        Some((key, value)) => {
                            Term::Tag { key: key.trim().to_string(), value: value.trim().to_string() }
                        }
                        None => Term::Present(term.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let limit = number(params, "limit")?.unwrap_or(DEFAULT_LIMIT as u64);
        if limit == 0 {
            return Err(QueryError { parameter: "limit", value: "0".into(), reason: "should be positive" });
        }
        let end_ts = number(params, "endTs")?.unwrap_or_else(now_ms);
        if end_ts == 0 {
            return Err(QueryError { parameter: "endTs", value: "0".into(), reason: "should be positive" });
        }
        let min_duration = number(params, "minDuration")?;
        let max_duration = number(params, "maxDuration")?;
        if let (None, Some(max)) = (min_duration, max_duration) {
            return Err(QueryError {
                parameter: "maxDuration",
                value: max.to_string(),
                reason: "needs minDuration as well",
            });
        }
        Ok(TraceQuery {
            service: name(params, "serviceName"),
            remote_service: name(params, "remoteServiceName"),
            span_name: name(params, "spanName"),
            terms,
            min_duration,
            max_duration,
            end_ts,
            lookback: number(params, "lookback")?.unwrap_or(DEFAULT_LOOKBACK_MS),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    /// Whether a trace that started at `started` (microseconds) lies inside the window; a trace
    /// without timestamps lies in every window.
    pub fn in_window(&self, started: u64) -> bool {
        if started == u64::MAX {
            return true;
        }
        let started_ms = started / 1000;
        started_ms <= self.end_ts && started_ms >= self.end_ts.saturating_sub(self.lookback)
    }

    /// Whether every condition holds for some span of the queried service.
    pub fn matches(&self, spans: &[Span]) -> bool {
        let candidates: Vec<&Span> = spans
            .iter()
            .filter(|span| self.service.as_deref().is_none_or(|service| span.local_service() == Some(service)))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let any = |test: &dyn Fn(&Span) -> bool| candidates.iter().any(|span| test(span));
        if let Some(wanted) = &self.span_name {
            if !any(&|span| span.name.as_deref() == Some(wanted.as_str())) {
                return false;
            }
        }
        if let Some(wanted) = &self.remote_service {
            if !any(&|span| span.remote_service() == Some(wanted.as_str())) {
                return false;
            }
        }
        for term in &self.terms {
            let found = match term {
                Term::Tag { key, value } => any(&|span| span.tags.get(key) == Some(value)),
                Term::Present(key) => any(&|span| {
                    span.tags.contains_key(key) || span.annotations.iter().any(|annotation| &annotation.value == key)
                }),
            };
            if !found {
                return false;
            }
        }
        if let Some(min) = self.min_duration {
            let max = self.max_duration.unwrap_or(u64::MAX);
            if !any(&|span| span.duration.is_some_and(|duration| duration >= min && duration <= max)) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Annotation, Endpoint};

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn span(service: &str, name: &str, duration: u64, tags: &[(&str, &str)]) -> Span {
        Span {
            trace_id: "1".into(),
            id: "1".into(),
            name: Some(name.into()),
            timestamp: Some(5_000_000),
            duration: Some(duration),
            local_endpoint: Some(Endpoint { service_name: Some(service.into()), ..Endpoint::default() }),
            tags: tags.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            annotations: vec![Annotation { timestamp: 5_000_001, value: "ws".into() }],
            ..Span::default()
        }
    }

    #[test]
    fn conditions_hold_for_some_span_of_the_service() {
        let trace = [
            span("istio-ingressgateway", "productpage.default.svc.cluster.local:9080/productpage", 900, &[]),
            span("ratings.default", "ratings.default.svc.cluster.local:9080/*", 40, &[("http.status_code", "200")]),
        ];
        let query = |pairs: &[(&str, &str)]| TraceQuery::parse(&params(pairs)).expect("valid");
        assert!(query(&[("serviceName", "Ratings.default")]).matches(&trace));
        assert!(!query(&[("serviceName", "details.default")]).matches(&trace));
        assert!(query(&[("spanName", "ratings.default.svc.cluster.local:9080/*")]).matches(&trace));
        assert!(!query(&[
            ("serviceName", "istio-ingressgateway"),
            ("spanName", "ratings.default.svc.cluster.local:9080/*")
        ])
        .matches(&trace));
        assert!(query(&[("spanName", "all")]).matches(&trace));
        assert!(query(&[("annotationQuery", "http.status_code=200 and ws")]).matches(&trace));
        assert!(!query(&[("annotationQuery", "http.status_code=503")]).matches(&trace));
        assert!(query(&[("minDuration", "500")]).matches(&trace));
        assert!(!query(&[("serviceName", "ratings.default"), ("minDuration", "500")]).matches(&trace));
        assert!(!query(&[("minDuration", "50"), ("maxDuration", "800")]).matches(&trace));
    }

    #[test]
    fn the_window_and_bad_parameters() {
        let query = TraceQuery::parse(&params(&[("endTs", "6000"), ("lookback", "2000")])).expect("valid");
        assert!(query.in_window(5_000_000) && query.in_window(4_000_000));
        assert!(!query.in_window(3_999_000) && !query.in_window(6_001_000));
        let error = TraceQuery::parse(&params(&[("limit", "ten")])).expect_err("bad limit");
        assert_eq!(error.to_string(), r#"limit="ten": should be a whole number of at least 0"#);
        let error = TraceQuery::parse(&params(&[("limit", "0")])).expect_err("zero limit");
        assert_eq!(error.to_string(), r#"limit="0": should be positive"#);
        let error = TraceQuery::parse(&params(&[("maxDuration", "10")])).expect_err("max alone");
        assert_eq!(error.to_string(), r#"maxDuration="10": needs minDuration as well"#);
        assert_eq!(TraceQuery::parse(&params(&[])).expect("defaults").limit, 10);
    }
}
