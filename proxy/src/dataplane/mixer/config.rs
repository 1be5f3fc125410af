//! What the `mixer` filters' config (1.4's `TransportConfig` and per-route `ServiceConfig`) says
//! the client does, and the status type answers carry.

use std::time::Duration;

use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_attribute::wire::compressed::from_attributes;
use istio_attribute::MapBag;

/// The filter's name, HTTP and network, and its config types.
pub(crate) const FILTER: &str = "mixer";
pub(crate) const HTTP_CONFIG_TYPE: &str = "istio.mixer.v1.config.client.HttpClientConfig";
pub(crate) const TCP_CONFIG_TYPE: &str = "istio.mixer.v1.config.client.TcpClientConfig";
pub(crate) const SERVICE_CONFIG_TYPE: &str = "istio.mixer.v1.config.client.ServiceConfig";

/// A `google.rpc.Status` as the client handles it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Status {
    pub code: i32,
    pub message: String,
}

pub(crate) const OK: i32 = 0;
pub(crate) const RESOURCE_EXHAUSTED: i32 = 8;
pub(crate) const INTERNAL: i32 = 13;
pub(crate) const UNAVAILABLE: i32 = 14;

impl Status {
    pub(crate) fn ok() -> Status {
        Status::default()
    }

    pub(crate) fn new(code: i32, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    pub(crate) fn is_ok(&self) -> bool {
        self.code == OK
    }

    pub(crate) fn from_proto(status: Option<&istio_api::pb::google::rpc::Status>) -> Status {
        status.map_or_else(Status::ok, |status| Status::new(status.code, status.message.clone()))
    }

    /// `CODE_NAME:message`, the body a refused request gets.
    pub(crate) fn body(&self) -> String {
        let name = match self.code {
            0 => "OK",
            1 => "CANCELLED",
            2 => "UNKNOWN",
            3 => "INVALID_ARGUMENT",
            4 => "DEADLINE_EXCEEDED",
            5 => "NOT_FOUND",
            6 => "ALREADY_EXISTS",
            7 => "PERMISSION_DENIED",
            8 => "RESOURCE_EXHAUSTED",
            9 => "FAILED_PRECONDITION",
            10 => "ABORTED",
            11 => "OUT_OF_RANGE",
            12 => "UNIMPLEMENTED",
            13 => "INTERNAL",
            14 => "UNAVAILABLE",
            15 => "DATA_LOSS",
            16 => "UNAUTHENTICATED",
            _ => "UNKNOWN",
        };
        if self.message.is_empty() {
            name.to_string()
        } else {
            format!("{name}:{}", self.message)
        }
    }

    /// The HTTP status 1.4's proxy answered a refusal with.
    pub(crate) fn http_status(&self) -> u16 {
        match self.code {
            0 => 200,
            1 => 499,
            3 | 9 | 11 => 400,
            4 => 504,
            5 => 404,
            6 | 10 => 409,
            7 => 403,
            8 => 429,
            12 => 501,
            14 => 503,
            16 => 401,
            _ => 500,
        }
    }
}

/// How the client reaches Mixer and what it does when it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Transport {
    pub check_cluster: String,
    pub fail_open: bool,
    pub max_retry: u32,
    pub base_retry_wait: Duration,
    pub max_retry_wait: Duration,
    pub check_cache: bool,
    pub quota_cache: bool,
    pub report_cluster: String,
    /// Reports sent together (1.4: 100 unless configured).
    pub report_batch_entries: usize,
    /// How long a report may wait for its batch (1.4: 1 s unless configured).
    pub report_batch_time: Duration,
}

/// 1.4's report batching defaults.
const DEFAULT_REPORT_BATCH_ENTRIES: usize = 100;
const DEFAULT_REPORT_BATCH_TIME: Duration = Duration::from_secs(1);

fn duration(value: Option<&prost_types::Duration>, default: Duration) -> Duration {
    value.map_or(default, |d| {
        let seconds = u64::try_from(d.seconds.clamp(0, 86_400)).unwrap_or(0);
        Duration::from_secs(seconds) + Duration::from_nanos(u64::try_from(d.nanos.max(0)).unwrap_or(0))
    })
}

impl Transport {
    pub(crate) fn from_proto(transport: Option<&mcc::TransportConfig>) -> Transport {
        let transport = transport.cloned().unwrap_or_default();
        let policy = transport.network_fail_policy.unwrap_or_default();
        Transport {
            check_cluster: transport.check_cluster,
            // FAIL_OPEN is the proto's zero value, as in 1.4.
            fail_open: policy.policy == mcc::network_fail_policy::FailPolicy::FailOpen as i32,
            max_retry: policy.max_retry,
            base_retry_wait: duration(policy.base_retry_wait.as_ref(), Duration::from_millis(80)),
            max_retry_wait: duration(policy.max_retry_wait.as_ref(), Duration::from_millis(1000)),
            check_cache: !transport.disable_check_cache,
            quota_cache: !transport.disable_quota_cache,
            report_batch_entries: if transport.disable_report_batch {
                1
            } else if transport.report_batch_max_entries > 0 {
                usize::try_from(transport.report_batch_max_entries).unwrap_or(DEFAULT_REPORT_BATCH_ENTRIES)
            } else {
                DEFAULT_REPORT_BATCH_ENTRIES
            },
            report_batch_time: duration(transport.report_batch_max_time.as_ref(), DEFAULT_REPORT_BATCH_TIME),
            report_cluster: transport.report_cluster,
        }
    }
}

/// A service's part: whether it checks, its attributes and the quotas its requests charge.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceSettings {
    pub disable_check: bool,
    pub disable_report: bool,
    pub attributes: MapBag,
    pub forward: MapBag,
    pub quota_specs: Vec<mcc::QuotaSpec>,
}

impl ServiceSettings {
    pub(crate) fn from_proto(config: &mcc::ServiceConfig) -> ServiceSettings {
        ServiceSettings {
            disable_check: config.disable_check_calls,
            disable_report: config.disable_report_calls,
            attributes: config.mixer_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            forward: config.forward_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            quota_specs: config.quota_spec.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_1_4s() {
        let denied = Status::new(7, "denyreviewsv3handler.default:Not allowed");
        assert_eq!(
            (denied.http_status(), denied.body().as_str()),
            (403, "PERMISSION_DENIED:denyreviewsv3handler.default:Not allowed")
        );
        let exhausted = Status::new(RESOURCE_EXHAUSTED, "Quota is exhausted for: requestcountquota");
        assert_eq!(exhausted.http_status(), 429);
        assert_eq!(Status::new(UNAVAILABLE, "").body(), "UNAVAILABLE");
        assert_eq!(Status::new(9, "x").http_status(), 400);
    }

    #[test]
    fn the_fail_policy_defaults_open_as_the_proto_does() {
        assert!(Transport::from_proto(None).fail_open);
        let closed = mcc::TransportConfig {
            network_fail_policy: Some(mcc::NetworkFailPolicy {
                policy: mcc::network_fail_policy::FailPolicy::FailClose as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!Transport::from_proto(Some(&closed)).fail_open);
    }
}
