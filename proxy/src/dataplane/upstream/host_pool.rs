//! A host's connections as data: the idle HTTP/1.1 connections waiting for reuse, the count of
//! open ones, the shared HTTP/2 connection, and whether a sweeper is closing idle ones. Taking
//! and returning connections under the cluster's limits is `pool`'s job.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::Instant;

use hyper::client::conn::{http1, http2};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::dataplane::body::Body;

/// A byte stream to an upstream host (plain TCP or TLS).
/// A byte stream to an upstream host (plain TCP or TLS).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub(crate) type BoxStream = Pin<Box<dyn Stream>>;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// A circuit breaker is open (`UO`).
    #[error("overflow")]
    Overflow,
    /// The connection failed (`UF`), with the reason.
    #[error("connection failure: {0}")]
    ConnectFailure(String),
    /// The request's deadline passed while waiting (`UT`).
    #[error("timed out waiting for a connection")]
    Timeout,
}

#[derive(Debug, Default)]
pub(crate) struct HostPool {
    /// Open (or opening) connections to this host.
    pub(super) connections: std::sync::atomic::AtomicUsize,
    pub(super) idle: Mutex<Vec<IdleConnection>>,
    /// Whether a task is waiting to close this host's idle connections when they time out
    /// (one per host, however many requests it serves).
    pub(super) sweeper_running: std::sync::atomic::AtomicBool,
    pub(super) http2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
}

#[derive(Debug)]
pub(super) struct IdleConnection {
    pub(super) sender: http1::SendRequest<Body>,
    pub(super) served: u32,
    pub(super) since: Instant,
    /// The worker whose runtime drives the connection.
    pub(super) worker: Option<usize>,
}

/// An idle connection taken for a request.
pub(super) struct TakenConnection {
    pub(super) sender: http1::SendRequest<Body>,
    pub(super) served: u32,
    pub(super) worker: Option<usize>,
}

impl HostPool {
    /// Whether the pool still holds a live connection.
    pub(crate) fn has_idle(&self) -> bool {
        istio_runtime::sync::lock(&self.idle).iter().any(|idle| !idle.sender.is_closed())
    }

    pub(super) fn connection_count(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops idle connections older than `idle_timeout`, and dead ones.
    pub(super) fn sweep(&self, idle_timeout: std::time::Duration) {
        istio_runtime::sync::lock(&self.idle)
            .retain(|connection| connection.since.elapsed() < idle_timeout && !connection.sender.is_closed());
    }

    /// When the longest-idle connection times out, if any connection is idle.
    pub(super) fn next_expiry(&self, idle_timeout: std::time::Duration) -> Option<Instant> {
        let idle = istio_runtime::sync::lock(&self.idle);
        idle.iter().map(|connection| connection.since + idle_timeout).min()
    }

    pub(super) fn claim_sweeper(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.sweeper_running.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Takes a live idle connection: one driven by `worker` when `worker_only`, else any
    /// (the most recently returned first). Expired and dead ones met on the way are dropped.
    pub(super) fn take_idle(
        &self,
        idle_timeout: Option<std::time::Duration>,
        worker: Option<usize>,
        worker_only: bool,
    ) -> Option<TakenConnection> {
        let mut idle = istio_runtime::sync::lock(&self.idle);
        let usable = |connection: &IdleConnection| {
            let expired = idle_timeout.is_some_and(|timeout| connection.since.elapsed() >= timeout);
            !expired && connection.sender.is_ready() && !connection.sender.is_closed()
        };
        idle.retain(usable);
        let position = idle.iter().rposition(|connection| !worker_only || connection.worker == worker)?;
        let connection = idle.remove(position);
        Some(TakenConnection { sender: connection.sender, served: connection.served, worker: connection.worker })
    }
}
