//! Access logs in Envoy's text format: the command operators Istio 1.4's format uses
//! (`%START_TIME%`, `%REQ(X?Y)%`, `%RESPONSE_FLAGS%`, `%UPSTREAM_HOST%`, …) rendered from a
//! finished request or TCP session, and written to a file or `/dev/stdout`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::config::listener::AccessLogConfig;

/// Envoy's default text format, used when a log names none.
pub(crate) const DEFAULT_FORMAT: &str =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Envoy's response flags, in the order Envoy prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFlag {
    /// No healthy upstream host.
    NoHealthyUpstream,
    /// Upstream connection failure.
    UpstreamConnectionFailure,
    /// A circuit breaker overflowed.
    UpstreamOverflow,
    /// No route (or no filter chain) for the request.
    NoRouteFound,
    /// Retries were exhausted.
    UpstreamRetryLimitExceeded,
    /// A fault delay was injected.
    DelayInjected,
    /// A fault abort was injected.
    FaultInjected,
    /// The upstream request timed out.
    UpstreamRequestTimeout,
    /// The upstream connection was terminated.
    UpstreamConnectionTermination,
    /// The response was generated locally (reset).
    /// The downstream connection terminated.
    DownstreamConnectionTermination,
    /// The route's cluster does not exist.
    NoClusterFound,
    /// An external authorization service (Mixer) refused the request.
    UnauthorizedExternalService,
}

impl ResponseFlag {
    pub(crate) fn code(self) -> &'static str {
        match self {
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
        }
    }
}

/// Everything a log line can show about one request or TCP session.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogEntry {
    pub start: Option<SystemTime>,
    pub request_headers: HashMap<String, String>,
    pub response_headers: HashMap<String, String>,
    pub protocol: String,
    pub response_code: u16,
    pub flags: Vec<ResponseFlag>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<String>,
    pub upstream_local: Option<SocketAddr>,
    pub upstream_failure: Option<String>,
    pub downstream_local: Option<SocketAddr>,
    pub downstream_remote: Option<SocketAddr>,
    pub server_name: Option<String>,
    pub route_name: Option<String>,
}

impl LogEntry {
    /// `%RESPONSE_FLAGS%`: comma-separated codes, `-` when none.
    pub(crate) fn flags_text(&self) -> String {
        if self.flags.is_empty() {
            "-".to_string()
        } else {
            self.flags.iter().map(|flag| flag.code()).collect::<Vec<_>>().join(",")
        }
    }

    /// Renders `format` for this entry.
    pub(crate) fn render(&self, format: &str) -> String {
        let mut line = String::with_capacity(format.len() + 128);
        let mut rest = format;
        while let Some(start) = rest.find('%') {
            line.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('%') {
                Some(end) => {
                    let operator = &after[..end];
                    match self.operator(operator) {
                        Some(value) => line.push_str(&value),
                        None => {
                            line.push('%');
                            line.push_str(operator);
                            line.push('%');
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    line.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        line.push_str(rest);
        line
    }

    fn operator(&self, operator: &str) -> Option<String> {
        let dash = |value: Option<String>| value.filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_string());
        let address = |address: Option<SocketAddr>| dash(address.map(|a| a.to_string()));
        Some(match operator {
            "START_TIME" => dash(self.start.map(|start| humantime::format_rfc3339_millis(start).to_string())),
            "PROTOCOL" => dash(Some(self.protocol.clone())),
            "RESPONSE_CODE" => self.response_code.to_string(),
            "RESPONSE_FLAGS" => self.flags_text(),
            "BYTES_RECEIVED" => self.bytes_received.to_string(),
            "BYTES_SENT" => self.bytes_sent.to_string(),
            "DURATION" => self.duration.as_millis().to_string(),
            "UPSTREAM_HOST" => address(self.upstream_host),
            "UPSTREAM_CLUSTER" => dash(self.upstream_cluster.clone()),
            "UPSTREAM_LOCAL_ADDRESS" => address(self.upstream_local),
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => dash(self.upstream_failure.clone()),
            "DOWNSTREAM_LOCAL_ADDRESS" => address(self.downstream_local),
            "DOWNSTREAM_REMOTE_ADDRESS" => address(self.downstream_remote),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => dash(self.downstream_remote.map(|a| a.ip().to_string())),
            "REQUESTED_SERVER_NAME" => dash(self.server_name.clone()),
            "ROUTE_NAME" => dash(self.route_name.clone()),
            _ => {
                if let Some(inner) = operator.strip_prefix("REQ(").and_then(|rest| rest.strip_suffix(')')) {
                    dash(header_operator(&self.request_headers, inner))
                } else if let Some(inner) = operator.strip_prefix("RESP(").and_then(|rest| rest.strip_suffix(')')) {
                    dash(header_operator(&self.response_headers, inner))
                } else if operator.starts_with("DYNAMIC_METADATA(") || operator.starts_with("FILTER_STATE(") {
                    "-".to_string()
                } else {
                    return None;
                }
            }
        })
    }
}

/// `X?Y`: the first of the named headers that is present.
fn header_operator(headers: &HashMap<String, String>, inner: &str) -> Option<String> {
    inner.split('?').find_map(|name| headers.get(&name.to_lowercase()).cloned())
}

/// Open log files, shared by every listener that writes to the same path.
#[derive(Debug, Default, Clone)]
pub(crate) struct AccessLogWriters {
    files: Arc<Mutex<HashMap<String, Arc<Mutex<std::fs::File>>>>>,
}

impl AccessLogWriters {
    /// Writes `entry` to every configured log.
    pub(crate) fn write(&self, logs: &[AccessLogConfig], entry: &LogEntry) {
        for log in logs {
            let mut line = entry.render(log.format.as_deref().unwrap_or(DEFAULT_FORMAT));
            if !line.ends_with('\n') {
                line.push('\n');
            }
            if log.path == "/dev/stdout" {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
                continue;
            }
            if log.path == "/dev/stderr" {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                continue;
            }
            let file = {
                let mut files = istio_runtime::sync::lock(&self.files);
                match files.get(&log.path) {
                    Some(file) => file.clone(),
                    None => match std::fs::OpenOptions::new().create(true).append(true).open(&log.path) {
                        Ok(file) => {
                            let file = Arc::new(Mutex::new(file));
                            files.insert(log.path.clone(), file.clone());
                            file
                        }
                        Err(error) => {
                            tracing::warn!("access log {}: {error}", log.path);
                            continue;
                        }
                    },
                }
            };
            let _ = istio_runtime::sync::lock(&file).write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Istio 1.4's format (`EnvoyTextLogFormat13`).
    const ISTIO_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% \"%DYNAMIC_METADATA(istio.mixer:status)%\" \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" \
%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \
\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% \
%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

    #[test]
    fn renders_istios_format() {
        let entry = LogEntry {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_576_000_000_123)),
            request_headers: HashMap::from([
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), "/status/418".to_string()),
                (":authority".to_string(), "httpbin:8000".to_string()),
                ("user-agent".to_string(), "curl/7.64".to_string()),
                ("x-request-id".to_string(), "abc".to_string()),
            ]),
            response_headers: HashMap::from([("x-envoy-upstream-service-time".to_string(), "3".to_string())]),
            protocol: "HTTP/1.1".into(),
            response_code: 503,
            flags: vec![ResponseFlag::UpstreamOverflow],
            bytes_received: 0,
            bytes_sent: 81,
            duration: Duration::from_millis(4),
            upstream_cluster: Some("outbound|8000||httpbin.default.svc.cluster.local".into()),
            downstream_local: Some("10.0.0.9:8000".parse().expect("addr")),
            downstream_remote: Some("10.0.0.5:4000".parse().expect("addr")),
            route_name: Some("default".into()),
            ..Default::default()
        };
        assert_eq!(
            entry.render(ISTIO_FORMAT),
            "[2019-12-10T17:46:40.123Z] \"GET /status/418 HTTP/1.1\" 503 UO \"-\" \"-\" 0 81 4 3 \"-\" \"curl/7.64\" \"abc\" \
\"httpbin:8000\" \"-\" outbound|8000||httpbin.default.svc.cluster.local - 10.0.0.9:8000 10.0.0.5:4000 - default\n"
        );
    }

    #[test]
    fn unknown_operators_stay_visible() {
        assert_eq!(LogEntry::default().render("%NOPE% %RESPONSE_FLAGS% 100%"), "%NOPE% - 100%");
    }
}
