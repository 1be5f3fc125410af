//! Envoy's per-cluster stats (`cluster.<name>.…`), resolved once when the cluster is built so
//! requests update atomics without looking names up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::dataplane::stats::{Counter, Gauge, Stats};

/// Envoy's per-cluster stats this data plane keeps.
#[derive(Debug, Clone)]
pub(crate) struct ClusterStats {
    prefix: String,
    stats: Stats,
    pub upstream_cx_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_rq_total: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_pending_active: Gauge,
    pub upstream_rq_pending_total: Counter,
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_retry: Counter,
    pub upstream_rq_retry_overflow: Counter,
    pub upstream_rq_timeout: Counter,
    pub upstream_rq_per_try_timeout: Counter,
    pub upstream_cx_destroy_remote: Counter,
    pub membership_total: Gauge,
    pub membership_healthy: Gauge,
    pub ejections_active: Gauge,
    pub ejections_total: Counter,
    /// Envoy's non-deprecated name for ejections that were carried out.
    pub ejections_enforced_total: Counter,
    pub update_success: Counter,
    /// `upstream_rq_1xx` … `upstream_rq_5xx`.
    rq_by_class: [Counter; 5],
    /// `upstream_rq_<code>`, found once per code.
    rq_by_code: Arc<Mutex<HashMap<u16, Counter>>>,
}

impl ClusterStats {
    pub(super) fn new(stats: &Stats, name: &str) -> ClusterStats {
        let prefix = format!("cluster.{name}.");
        let counter = |suffix: &str| stats.counter(&format!("{prefix}{suffix}"));
        let gauge = |suffix: &str| stats.gauge(&format!("{prefix}{suffix}"));
        ClusterStats {
            upstream_cx_total: counter("upstream_cx_total"),
            upstream_cx_active: gauge("upstream_cx_active"),
            upstream_cx_connect_fail: counter("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: counter("upstream_cx_connect_timeout"),
            upstream_rq_total: counter("upstream_rq_total"),
            upstream_rq_active: gauge("upstream_rq_active"),
            upstream_rq_pending_active: gauge("upstream_rq_pending_active"),
            upstream_rq_pending_total: counter("upstream_rq_pending_total"),
            upstream_rq_pending_overflow: counter("upstream_rq_pending_overflow"),
            upstream_rq_retry: counter("upstream_rq_retry"),
            upstream_rq_retry_overflow: counter("upstream_rq_retry_overflow"),
            upstream_rq_timeout: counter("upstream_rq_timeout"),
            upstream_rq_per_try_timeout: counter("upstream_rq_per_try_timeout"),
            upstream_cx_destroy_remote: counter("upstream_cx_destroy_remote"),
            membership_total: gauge("membership_total"),
            membership_healthy: gauge("membership_healthy"),
            ejections_active: gauge("outlier_detection.ejections_active"),
            ejections_total: counter("outlier_detection.ejections_total"),
            ejections_enforced_total: counter("outlier_detection.ejections_enforced_total"),
            update_success: counter("update_success"),
            rq_by_class: [1, 2, 3, 4, 5].map(|class| counter(&format!("upstream_rq_{class}xx"))),
            rq_by_code: Arc::default(),
            prefix,
            stats: stats.clone(),
        }
    }

    /// `upstream_rq_<code>` and `upstream_rq_<class>xx` for a response.
    pub(crate) fn record_response(&self, status: u16) {
        let code = {
            let mut codes = istio_runtime::sync::lock(&self.rq_by_code);
            codes
                .entry(status)
                .or_insert_with(|| self.stats.counter(&format!("{}upstream_rq_{status}", self.prefix)))
                .clone()
        };
        code.inc();
        if let Some(class) = self.rq_by_class.get(usize::from(status / 100).saturating_sub(1)) {
            class.inc();
        }
    }
}
