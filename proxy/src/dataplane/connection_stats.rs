//! The stats a connection updates — per listener (`listener.<address>.…`), per HTTP connection
//! manager (`http.<stat_prefix>.…`, its fault filter's included) and per TCP proxy
//! (`tcp.<stat_prefix>.…`) — resolved once when a listener is installed, so accepting a
//! connection or serving a request updates atomics without building names or taking the
//! registry's lock.

use std::net::SocketAddr;

use super::stats::{Counter, Gauge, Stats};

/// `listener.<ip>_<port>.…`
#[derive(Debug)]
pub(crate) struct ListenerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub no_filter_chain_match: Counter,
    pub ssl_connection_error: Counter,
}

impl ListenerStats {
    pub(crate) fn new(stats: &Stats, address: SocketAddr) -> ListenerStats {
        let prefix = format!("listener.{}_{}.", address.ip(), address.port());
        ListenerStats {
            downstream_cx_total: stats.counter(&format!("{prefix}downstream_cx_total")),
            downstream_cx_active: stats.gauge(&format!("{prefix}downstream_cx_active")),
            no_filter_chain_match: stats.counter(&format!("{prefix}no_filter_chain_match")),
            ssl_connection_error: stats.counter(&format!("{prefix}ssl.connection_error")),
        }
    }
}

/// `http.<stat_prefix>.…` of one HTTP connection manager.
#[derive(Debug)]
pub(crate) struct HttpManagerStats {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub rq_total: Counter,
    pub rq_active: Gauge,
    /// `downstream_rq_1xx` … `downstream_rq_5xx`.
    pub rq_by_class: [Counter; 5],
    pub no_route: Counter,
    pub ws_on_non_ws_route: Counter,
    /// The fault filter's, when the manager has one.
    pub fault: Option<FaultStats>,
}

/// `http.<stat_prefix>.fault.…`
#[derive(Debug)]
pub(crate) struct FaultStats {
    pub delays_injected: Counter,
    pub aborts_injected: Counter,
}

impl HttpManagerStats {
    pub(crate) fn new(stats: &Stats, stat_prefix: &str, fault_filter: bool) -> HttpManagerStats {
        let counter = |suffix: &str| stats.counter(&format!("http.{stat_prefix}.{suffix}"));
        let gauge = |suffix: &str| stats.gauge(&format!("http.{stat_prefix}.{suffix}"));
        HttpManagerStats {
            cx_total: counter("downstream_cx_total"),
            cx_active: gauge("downstream_cx_active"),
            rq_total: counter("downstream_rq_total"),
            rq_active: gauge("downstream_rq_active"),
            rq_by_class: [1, 2, 3, 4, 5].map(|class| counter(&format!("downstream_rq_{class}xx"))),
            no_route: counter("no_route"),
            ws_on_non_ws_route: counter("downstream_rq_ws_on_non_ws_route"),
            fault: fault_filter.then(|| FaultStats {
                delays_injected: counter("fault.delays_injected"),
                aborts_injected: counter("fault.aborts_injected"),
            }),
        }
    }

    /// Counts a response in its status class.
    pub(crate) fn record_status(&self, status: u16) {
        if let Some(class) = self.rq_by_class.get(usize::from(status / 100).saturating_sub(1)) {
            class.inc();
        }
    }
}

/// `tcp.<stat_prefix>.…` of one TCP proxy.
#[derive(Debug)]
pub(crate) struct TcpProxyStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
}

impl TcpProxyStats {
    pub(crate) fn new(stats: &Stats, stat_prefix: &str) -> TcpProxyStats {
        TcpProxyStats {
            downstream_cx_total: stats.counter(&format!("tcp.{stat_prefix}.downstream_cx_total")),
            downstream_cx_active: stats.gauge(&format!("tcp.{stat_prefix}.downstream_cx_active")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_update_the_named_stats() {
        let stats = Stats::default();
        let listener = ListenerStats::new(&stats, "10.0.0.1:15006".parse().expect("address"));
        listener.downstream_cx_total.inc();
        assert_eq!(stats.counter("listener.10.0.0.1_15006.downstream_cx_total").value(), 1);
        let manager = HttpManagerStats::new(&stats, "inbound_0.0.0.0_9080", true);
        manager.record_status(503);
        manager.fault.as_ref().expect("fault stats").aborts_injected.inc();
        assert_eq!(stats.counter("http.inbound_0.0.0.0_9080.downstream_rq_5xx").value(), 1);
        assert_eq!(stats.counter("http.inbound_0.0.0.0_9080.fault.aborts_injected").value(), 1);
        assert!(HttpManagerStats::new(&stats, "no_fault", false).fault.is_none());
        let tcp = TcpProxyStats::new(&stats, "outbound|9000||tcp-echo");
        let _active = tcp.downstream_cx_active.track();
        assert_eq!(stats.gauge("tcp.outbound|9000||tcp-echo.downstream_cx_active").value(), 1);
    }
}
