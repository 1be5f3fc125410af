//! Per-host connection pools under the cluster's circuit breakers, as Envoy runs them: HTTP/1.1
//! keeps idle keep-alive connections and opens new ones up to `max_connections`; a request
//! that finds none free waits as *pending* (up to `max_pending_requests`, beyond which it
//! overflows with 503 `UO`). HTTP/2 multiplexes every request over one connection per host.
//! Connections honour `max_requests_per_connection`, and idle ones close after the idle
//! timeout (an hour unless the cluster says otherwise).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

use super::cluster::UpstreamCluster;
use super::host::Host;
pub(crate) use super::host_pool::{BoxStream, PoolError};
use super::host_pool::{IdleConnection, TakenConnection};
use crate::dataplane::body::Body;
use crate::dataplane::config::cluster::UpstreamTls;
use crate::dataplane::stats::GaugeGuard;
use crate::dataplane::workers::current_worker;

/// Envoy's default idle timeout for upstream HTTP connections.
const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Returns a connection to the pool, and makes sure a sweeper will close it if nobody
/// takes it within `idle_timeout`.
fn put_idle(host: &Arc<Host>, connection: IdleConnection, idle_timeout: std::time::Duration) {
    istio_runtime::sync::lock(&host.pool.idle).push(connection);
    if host.pool.claim_sweeper() {
        tokio::spawn(sweep_while_idle(Arc::downgrade(host), idle_timeout));
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

/// Closes `host`'s idle connections as they time out, for as long as any is idle. Only a weak
/// reference waits, so a removed host (or its cluster) is not kept alive.
async fn sweep_while_idle(host: std::sync::Weak<Host>, idle_timeout: std::time::Duration) {
    loop {
        let Some(next) = host.upgrade().and_then(|host| host.pool.next_expiry(idle_timeout)) else {
            let Some(live) = host.upgrade() else { return };
            live.pool.sweeper_running.store(false, std::sync::atomic::Ordering::Release);
            // A connection returned between the check and the release would have found the
            // sweeper still running: look once more, and take the job back if so.
            if live.pool.next_expiry(idle_timeout).is_some() && live.pool.claim_sweeper() {
                continue;
            }
            return;
        };
        tokio::time::sleep_until(next.into()).await;
        if let Some(host) = host.upgrade() {
            host.pool.sweep(idle_timeout);
        }
    }
}

/// A connection ready for one request.
pub(crate) enum Lease {
    /// An HTTP/1.1 connection, the requests it served, and the worker that drives it.
    Http1 {
        sender: http1::SendRequest<Body>,
        served: u32,
        worker: Option<usize>,
    },
    Http2(http2::SendRequest<Body>),
}

impl Lease {
    /// Whether the connection served a request before this one (a pooled HTTP/1.1 connection
    /// the server may close at any moment, as a server closing idle connections does).
    pub(crate) fn reused(&self) -> bool {
        matches!(self, Lease::Http1 { served, .. } if *served > 0)
    }
}

impl From<TakenConnection> for Lease {
    fn from(taken: TakenConnection) -> Lease {
        Lease::Http1 { sender: taken.sender, served: taken.served, worker: taken.worker }
    }
}

/// Gets a connection to `host`, waiting as a pending request if the pool is full, until `deadline`.
/// As with Envoy's per-worker pools, a worker reuses the idle connections it drives and opens
/// its own while the cluster's limits allow; only at the limit does it borrow another worker's.
pub(crate) async fn checkout(
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
        let worker = current_worker();
        if let Some(taken) = host.pool.take_idle(cluster.config.idle_timeout, worker, true) {
            return Ok(taken.into());
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
            let stream = connect(cluster, host).await?;
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
            return Ok(Lease::Http1 { sender, served: 0, worker });
        }
        if let Some(taken) = host.pool.take_idle(cluster.config.idle_timeout, worker, false) {
            return Ok(taken.into());
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
    let stream = connect(cluster, host).await?;
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

/// Why a request got no response on its lease.
pub(crate) enum SendError {
    /// The connection closed before the request was written (a pooled connection the server
    /// had just closed, as a draining listener does): the request comes back to be sent on
    /// another connection, as Envoy's and hyper's pools do.
    Unsent(Box<http::Request<Body>>, hyper::Error),
    Failed(hyper::Error),
}

impl From<hyper::client::conn::TrySendError<http::Request<Body>>> for SendError {
    fn from(mut error: hyper::client::conn::TrySendError<http::Request<Body>>) -> SendError {
        match error.take_message() {
            Some(request) => SendError::Unsent(Box::new(request), error.into_error()),
            None => SendError::Failed(error.into_error()),
        }
    }
}

impl Lease {
    /// Sends the request; an HTTP/1.1 connection goes back to the pool once the response has
    /// been read, unless it served `max_requests_per_connection`.
    pub(crate) async fn send(
        self,
        cluster: &Arc<UpstreamCluster>,
        host: &Arc<Host>,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        self.try_send(cluster, host, request).await.map_err(|error| match error {
            SendError::Unsent(_, error) | SendError::Failed(error) => error,
        })
    }

    /// As [`Lease::send`], but a request the connection never took is handed back.
    pub(crate) async fn try_send(
        self,
        cluster: &Arc<UpstreamCluster>,
        host: &Arc<Host>,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        match self {
            Lease::Http2(mut sender) => Ok(sender.try_send_request(request).await?),
            Lease::Http1 { mut sender, served, worker } => {
                let response = sender.try_send_request(request).await?;
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
                        let connection = IdleConnection { sender, served, since: Instant::now(), worker };
                        put_idle(&host, connection, idle_timeout);
                        cluster.connection_freed.notify_waiters();
                    });
                }
                Ok(response)
            }
        }
    }
}

/// Opens a connection for `cluster` to `host`: the cluster's source address, connect timeout
/// and upstream TLS (the host's transport socket match, else the cluster's) apply. Counts
/// `upstream_cx_total` and connect failures.
pub(crate) async fn connect(cluster: &UpstreamCluster, host: &Host) -> Result<BoxStream, PoolError> {
    let tls = cluster.tls_for(host);
    connect_to(cluster, host.address, tls).await
}

/// As [`connect`], with `server_name` (when given) as the TLS SNI in place of the cluster's:
/// istio-proxy's `forward_downstream_sni`. The TLS config is the cluster's own (it does not
/// depend on the name), so any number of names share it. A plaintext cluster is connected as
/// it is.
pub(crate) async fn connect_with_sni(
    cluster: &UpstreamCluster,
    host: &Host,
    server_name: Option<&str>,
) -> Result<BoxStream, PoolError> {
    connect_named(cluster, host.address, cluster.tls_for(host), server_name).await
}

/// Opens a connection for `cluster` to `address` with `tls` (none: plaintext).
pub(crate) async fn connect_to(
    cluster: &UpstreamCluster,
    address: SocketAddr,
    tls: Option<&UpstreamTls>,
) -> Result<BoxStream, PoolError> {
    connect_named(cluster, address, tls, None).await
}

/// [`connect_to`], the TLS SNI being `server_name` when given, else the settings' own.
async fn connect_named(
    cluster: &UpstreamCluster,
    address: SocketAddr,
    tls: Option<&UpstreamTls>,
    server_name: Option<&str>,
) -> Result<BoxStream, PoolError> {
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
    match (&cluster.tls, tls) {
        (Some(configs), Some(settings)) => {
            let config = configs.client_config(settings).map_err(|error| {
                stats.upstream_cx_connect_fail.inc();
                PoolError::ConnectFailure(format!("TLS configuration: {error}"))
            })?;
            let server_name = server_name
                .map(str::to_string)
                .or_else(|| settings.sni.clone())
                .unwrap_or_else(|| address.ip().to_string());
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
        _ => Ok(Box::pin(stream)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::dataplane::config::cluster::{ClusterConfig, Discovery, EndpointConfig, LbPolicy, Limits};
    use crate::dataplane::stats::Stats;

    /// An HTTP/1.1 server that answers every request on a connection with a small 200.
    async fn keep_alive_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        while let Some(end) = seen.windows(4).position(|window| window == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        address
    }

    fn cluster_for(address: SocketAddr, idle_timeout: Duration) -> Arc<UpstreamCluster> {
        let config = ClusterConfig {
            name: "backend".into(),
            discovery: Discovery::Static,
            lb_policy: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            limits: Limits::default(),
            outlier: None,
            http2: false,
            max_requests_per_connection: None,
            idle_timeout: Some(idle_timeout),
            tls: None,
            tls_matches: Vec::new(),
            bind_address: None,
            load_assignment: vec![EndpointConfig {
                host: address.ip().to_string(),
                port: address.port(),
                weight: 1,
                healthy: true,
                priority: 0,
                socket_match: Default::default(),
                locality: String::new(),
                locality_weight: 0,
            }],
            healthy_panic_threshold: crate::dataplane::config::cluster::DEFAULT_PANIC_THRESHOLD,
            locality_weighted: false,
        };
        UpstreamCluster::new(config, &Stats::default(), None)
    }

    async fn get(cluster: &Arc<UpstreamCluster>, host: &Arc<Host>) {
        use http_body_util::BodyExt;
        let lease = checkout(cluster, host, None).await.expect("a connection");
        let request = http::Request::get("/").body(crate::dataplane::body::empty()).unwrap();
        let response = lease.send(cluster, host, request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }

    /// However many requests a connection serves, returning it to the pool leaves no task
    /// behind but the connection's own and one sweeper; and the sweeper closes it once idle.
    #[tokio::test]
    async fn reused_connections_leave_no_tasks_behind_and_close_when_idle() {
        let cluster = cluster_for(keep_alive_server().await, Duration::from_millis(300));
        let host = cluster.hosts().hosts[0].clone();
        let metrics = tokio::runtime::Handle::current().metrics();
        for _ in 0..200 {
            get(&cluster, &host).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A request may overtake the previous one's connection on its way back to the pool, so
        // two keep-alive connections can share the work; never one per request.
        let connections = cluster.stats.upstream_cx_total.value();
        assert!(connections <= 2, "{connections} connections for 200 sequential requests");
        // The server's accept loop and a task per connection, our side of each connection,
        // and the sweeper.
        let expected = 1 + 2 * connections as usize + 1;
        assert!(metrics.num_alive_tasks() <= expected, "{} tasks alive", metrics.num_alive_tasks());

        let deadline = Instant::now() + Duration::from_secs(3);
        while host.pool.connection_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(host.pool.connection_count(), 0, "the idle connection was closed");
        assert!(!host.pool.sweeper_running.load(std::sync::atomic::Ordering::Acquire), "the sweeper stopped");

        // A later request opens a new connection and starts a new sweeper.
        get(&cluster, &host).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cluster.stats.upstream_cx_total.value(), connections + 1);
        assert!(host.pool.sweeper_running.load(std::sync::atomic::Ordering::Acquire));
    }
}
