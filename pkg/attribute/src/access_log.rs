//! How Pilot and Mixer agree on a stock Envoy's reports: 1.4's `mixer` filter reported each
//! request and connection; a stock Envoy streams access logs over Envoy's gRPC access log
//! service instead, and the log's name says which side of the proxy wrote it (what 1.4's
//! filter put in `context.reporter.kind`). Who the proxy is comes from the stream's node.

/// The log name of a proxy's inbound side (a server sidecar's `virtualInbound`).
pub const INBOUND_LOG: &str = "istio-mixer-inbound";
/// The log name of a proxy's outbound side (client sidecars and gateways).
pub const OUTBOUND_LOG: &str = "istio-mixer-outbound";

/// `context.reporter.kind` for a log name; `None` for logs that are not reports.
pub fn reporter_kind(log_name: &str) -> Option<&'static str> {
    match log_name {
        INBOUND_LOG => Some("inbound"),
        OUTBOUND_LOG => Some("outbound"),
        _ => None,
    }
}

/// Request headers a report needs beyond what the access log entry always carries.
pub const REQUEST_HEADERS: [&str; 2] = ["content-type", "x-forwarded-proto"];
/// Response headers (and trailers) a report needs.
pub const RESPONSE_HEADERS: [&str; 3] = ["content-type", "grpc-status", "grpc-message"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_say_the_reporter_kind() {
        assert_eq!(reporter_kind(INBOUND_LOG), Some("inbound"));
        assert_eq!(reporter_kind(OUTBOUND_LOG), Some("outbound"));
        assert_eq!(reporter_kind("something-else"), None);
    }
}
