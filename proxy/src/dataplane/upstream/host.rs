//! One upstream host and what the data plane tracks about it: its weight, priority and locality, its
//! health as EDS reported it, outlier-detection state, requests in flight, and its connections.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::host_pool::HostPool;
use crate::dataplane::config::cluster::EndpointConfig;

/// One upstream host and what the data plane tracks about it.
#[derive(Debug)]
pub(crate) struct Host {
    pub address: SocketAddr,
    pub weight: u32,
    pub priority: u32,
    /// Health as EDS reported it.
    pub eds_healthy: bool,
    /// Its `envoy.transport_socket_match` metadata: which of the cluster's sockets it takes.
    pub socket_match: std::collections::BTreeMap<String, String>,
    /// Its locality and the locality's weight (locality-weighted balancing).
    pub locality: String,
    pub locality_weight: u32,
    pub outlier: Mutex<OutlierState>,
    pub active_requests: AtomicUsize,
    pub pool: HostPool,
}

#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub ejected_until: Option<Instant>,
    pub times_ejected: u32,
}

impl Host {
    pub(super) fn new(endpoint: &EndpointConfig, address: SocketAddr) -> Arc<Host> {
        Arc::new(Host {
            address,
            weight: endpoint.weight,
            priority: endpoint.priority,
            eds_healthy: endpoint.healthy,
            socket_match: endpoint.socket_match.clone(),
            locality: endpoint.locality.clone(),
            locality_weight: endpoint.locality_weight,
            outlier: Mutex::new(OutlierState::default()),
            active_requests: AtomicUsize::new(0),
            pool: HostPool::default(),
        })
    }

    pub(crate) fn ejected(&self, now: Instant) -> bool {
        istio_runtime::sync::lock(&self.outlier).ejected_until.is_some_and(|until| until > now)
    }

    pub(crate) fn healthy(&self, now: Instant) -> bool {
        self.eds_healthy && !self.ejected(now)
    }
}
