//! Per-host connection pools under the cluster's circuit breakers, as Envoy runs them: HTTP/1.1
//! keeps idle keep-alive connections and opens new ones up to `max_connections`; a request
//! that finds none free waits as *pending* (up to `max_pending_requests`, beyond which it
//! overflows with 503 `UO`). HTTP/2 multiplexes every request over one connection per host.
//! Connections honour `max_requests_per_connection`, and idle ones close after the idle
//! timeout (an hour unless the cluster says otherwise).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use super::{Host, UpstreamCluster};
use crate::dataplane::body::Body;
use crate::dataplane::stats::GaugeGuard;

/// Envoy's default idle timeout for upstream HTTP connections.
const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A byte stream to an upstream host (plain TCP or TLS).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub type BoxStream = Pin<Box<dyn Stream>>;

/// Why no connection could be had.
#[derive(Debug)]
pub enum PoolError {
    /// A circuit breaker is open (`UO`).
    Overflow,
    /// The connection failed (`UF`), with the reason.
    ConnectFailure(String),
    /// The request's deadline passed while waiting (`UT`).
    Timeout,
}

#[derive(Debug, Default)]
pub struct HostPool {
    /// Open (or opening) connections to this host.
    connections: std::sync::atomic::AtomicUsize,
    idle: Mutex<Vec<IdleConnection>>,
    http2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
}

#[derive(Debug)]
struct IdleConnection {
    sender: http1::SendRequest<Body>,
    served: u32,
    since: Instant,
}

impl HostPool {
    /// Whether the pool still holds a live connection.
    pub fn has_idle(&self) -> bool {
        self.idle.lock().unwrap_or_else(|poison| poison.into_inner()).iter().any(|idle| !idle.sender.is_closed())
    }

    fn connection_count(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops idle connections older than `idle_timeout`, and dead ones.
    fn sweep(&self, idle_timeout: std::time::Duration) {
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|connection| connection.since.elapsed() < idle_timeout && !connection.sender.is_closed());
    }

    fn take_idle(&self, idle_timeout: Option<std::time::Duration>) -> Option<(http1::SendRequest<Body>, u32)> {
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        while let Some(connection) = idle.pop() {
            let expired = idle_timeout.is_some_and(|timeout| connection.since.elapsed() >= timeout);
            if !expired && connection.sender.is_ready() && !connection.sender.is_closed() {
                return Some((connection.sender, connection.served));
            }
        }
        None
    }
}

/// Counts an open connection on its host while it lives.
struct HostConnection(Arc<Host>);

impl HostConnection {
    fn new(host: &Arc<Host>) -> HostConnection {
        host.pool.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HostConnection(host.clone())
    }
}

impl Drop for HostConnection {
    fn drop(&mut self) {
        self.0.pool.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A connection ready for one request.
pub enum Lease {
    Http1 { sender: http1::SendRequest<Body>, served: u32 },
    Http2(http2::SendRequest<Body>),
}

/// Gets a connection to `host`, waiting as a pending request if the pool is full, until `deadline`.
pub async fn checkout(
    cluster: &Arc<UpstreamCluster>,
    host: &Arc<Host>,
    deadline: Option<Instant>,
) -> Result<Lease, PoolError> {
    if cluster.config.http2 {
        return checkout_http2(cluster, host).await;
    }
    let limits = cluster.config.limits;
    let mut pending: Option<GaugeGuard> = None;
    loop {
        let freed = cluster.connection_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some((sender, served)) = host.pool.take_idle(cluster.config.idle_timeout) {
            return Ok(Lease::Http1 { sender, served });
        }
        // From here the request waits for a connection: it is pending (Envoy counts requests
        // waiting for a new connection as pending too).
        if pending.is_none() {
            match cluster.stats.upstream_rq_pending_active.try_track(limits.max_pending_requests) {
                Some(guard) => {
                    cluster.stats.upstream_rq_pending_total.inc();
                    pending = Some(guard);
                }
                None => {
                    cluster.stats.upstream_rq_pending_overflow.inc();
                    return Err(PoolError::Overflow);
                }
            }
        }
        // Envoy's rule against starvation: a host with no connection may always open one, even
        // when other hosts' connections hold every slot of the cluster's limit.
        let slot = cluster
            .stats
            .upstream_cx_active
            .try_track(limits.max_connections)
            .or_else(|| (host.pool.connection_count() == 0).then(|| cluster.stats.upstream_cx_active.track()));
        if let Some(slot) = slot {
            let opened = HostConnection::new(host);
            let stream = connect(cluster, host.address).await?;
            let (sender, connection) = http1::Builder::new()
                .handshake::<_, Body>(TokioIo::new(stream))
                .await
                .map_err(|error| PoolError::ConnectFailure(error.to_string()))?;
            let watcher = cluster.clone();
            tokio::spawn(async move {
                let _ = connection.with_upgrades().await;
                drop(slot);
                drop(opened);
                watcher.connection_freed.notify_waiters();
            });
            return Ok(Lease::Http1 { sender, served: 0 });
        }
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline.into(), freed).await.is_err() {
                    return Err(PoolError::Timeout);
                }
            }
            None => freed.await,
        }
    }
}

async fn checkout_http2(cluster: &Arc<UpstreamCluster>, host: &Arc<Host>) -> Result<Lease, PoolError> {
    let mut slot = host.pool.http2.lock().await;
    if let Some(sender) = slot.as_ref().filter(|sender| !sender.is_closed()) {
        return Ok(Lease::Http2(sender.clone()));
    }
    let slot_taken = cluster
        .stats
        .upstream_cx_active
        .try_track(cluster.config.limits.max_connections)
        .or_else(|| (host.pool.connection_count() == 0).then(|| cluster.stats.upstream_cx_active.track()));
    let Some(connection_slot) = slot_taken else {
        cluster.stats.upstream_rq_pending_overflow.inc();
        return Err(PoolError::Overflow);
    };
    let opened = HostConnection::new(host);
    let stream = connect(cluster, host.address).await?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Body>(TokioIo::new(stream))
        .await
        .map_err(|error| PoolError::ConnectFailure(error.to_string()))?;
    let watcher = cluster.clone();
    tokio::spawn(async move {
        let _ = connection.await;
        drop(connection_slot);
        drop(opened);
        watcher.connection_freed.notify_waiters();
    });
    *slot = Some(sender.clone());
    Ok(Lease::Http2(sender))
}

impl Lease {
    /// Sends the request; an HTTP/1.1 connection goes back to the pool once the response has
    /// been read, unless it served `max_requests_per_connection`.
    pub async fn send(
        self,
        cluster: &Arc<UpstreamCluster>,
        host: &Arc<Host>,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Lease::Http2(mut sender) => sender.send_request(request).await,
            Lease::Http1 { mut sender, served } => {
                let response = sender.send_request(request).await?;
                let served = served + 1;
                let reusable = cluster.config.max_requests_per_connection.is_none_or(|limit| served < limit)
                    && response.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                if reusable {
                    let (cluster, host) = (cluster.clone(), host.clone());
                    let idle_timeout = cluster.config.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
                    tokio::spawn(async move {
                        if sender.ready().await.is_err() {
                            return;
                        }
                        host.pool.idle.lock().unwrap_or_else(|poison| poison.into_inner()).push(IdleConnection {
                            sender,
                            served,
                            since: Instant::now(),
                        });
                        cluster.connection_freed.notify_waiters();
                        // Close it if nobody takes it within the idle timeout. Only a weak
                        // reference waits, so a removed host or cluster is not kept alive.
                        let host = Arc::downgrade(&host);
                        drop(cluster);
                        tokio::time::sleep(idle_timeout).await;
                        if let Some(host) = host.upgrade() {
                            host.pool.sweep(idle_timeout);
                        }
                    });
                }
                Ok(response)
            }
        }
    }
}

/// Opens a connection for `cluster` to `address`: the cluster's source address, connect
/// timeout and upstream TLS apply. Counts `upstream_cx_total` and connect failures.
pub async fn connect(cluster: &UpstreamCluster, address: SocketAddr) -> Result<BoxStream, PoolError> {
    let stats = &cluster.stats;
    stats.upstream_cx_total.inc();
    let attempt = async {
        let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|error| format!("socket: {error}"))?;
        if let Some(source) = cluster.config.bind_address {
            // Binding a non-local source address (127.0.0.6 for inbound passthrough) needs
            // IP_FREEBIND-like leniency on some kernels; loopback addresses always work.
            socket.bind(SocketAddr::new(source, 0)).map_err(|error| format!("binding {source}: {error}"))?;
        }
        let stream: TcpStream = socket.connect(address).await.map_err(|error| error.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok::<TcpStream, String>(stream)
    };
    let stream = match tokio::time::timeout(cluster.config.connect_timeout, attempt).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(reason)) => {
            stats.upstream_cx_connect_fail.inc();
            return Err(PoolError::ConnectFailure(reason));
        }
        Err(_) => {
            stats.upstream_cx_connect_fail.inc();
            stats.upstream_cx_connect_timeout.inc();
            return Err(PoolError::ConnectFailure("connect timeout".to_string()));
        }
    };
    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    match &cluster.tls {
        None => Ok(Box::pin(stream)),
        Some(config) => {
            let server_name =
                cluster.config.tls.as_ref().and_then(|tls| tls.sni.clone()).unwrap_or_else(|| address.ip().to_string());
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|_| PoolError::ConnectFailure(format!("{server_name:?} is not a valid TLS server name")))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            // As in Envoy, the connect timeout covers the TLS handshake too.
            match tokio::time::timeout(cluster.config.connect_timeout, connector.connect(name, stream)).await {
                Ok(Ok(tls)) => Ok(Box::pin(tls)),
                Ok(Err(error)) => {
                    stats.upstream_cx_connect_fail.inc();
                    Err(PoolError::ConnectFailure(format!("TLS error: {error}")))
                }
                Err(_) => {
                    stats.upstream_cx_connect_fail.inc();
                    stats.upstream_cx_connect_timeout.inc();
                    Err(PoolError::ConnectFailure("TLS handshake timeout".to_string()))
                }
            }
        }
    }
}
