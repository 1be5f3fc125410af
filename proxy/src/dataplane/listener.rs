//! Listeners at run time: binds the listeners that bind, accepts connections, finds where each
//! connection was going (`SO_ORIGINAL_DST` after iptables' REDIRECT, or the local address),
//! hands captured connections to the listener owning that address (`use_original_dst`), runs
//! the listener filters, picks the filter chain, terminates TLS if the chain says so, and
//! starts the chain's HTTP connection manager or TCP proxy. Config updates swap the listener
//! table; sockets of listeners whose address stays are kept. Each socket is served by an
//! accept loop on every worker (`workers`), and a connection stays on the worker that took it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

use super::config::listener::{ConnectionFacts, ListenerConfig, NetworkFilter};
use super::context::TrafficContext;
use super::http::downstream::{Downstream, PeerIdentity};
use super::listener_table::ListenerTable;
use super::upstream::pool::BoxStream;

/// A listener address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: cannot bind {address}: {source}")]
pub(crate) struct BindError {
    pub listener: String,
    pub address: SocketAddr,
    pub source: std::io::Error,
}

/// Owns the bound sockets: per address, an accept loop on each worker, which serves whichever
/// listener has that address in the context's current table (so renaming a listener keeps its
/// socket).
pub(crate) struct ListenerManager {
    workers: super::workers::Workers,
    bound: Mutex<HashMap<SocketAddr, Vec<tokio::task::JoinHandle<()>>>>,
    /// What the admin API's `drain_listeners` stopped, for good: nothing, the inbound
    /// listeners, or every listener.
    stopped: Mutex<Stopped>,
}

/// Listeners stopped by `drain_listeners`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Stopped {
    #[default]
    None,
    Inbound,
    All,
}

impl Stopped {
    fn covers(self, listener: &ListenerConfig) -> bool {
        match self {
            Stopped::None => false,
            Stopped::Inbound => listener.inbound,
            Stopped::All => true,
        }
    }
}

impl ListenerManager {
    pub(crate) fn new(workers: super::workers::Workers) -> ListenerManager {
        ListenerManager { workers, bound: Mutex::default(), stopped: Mutex::default() }
    }

    /// Envoy's `drain_listeners`: the listeners `scope` covers stop accepting now, and stay
    /// stopped through later updates (the server itself stays live).
    pub(crate) fn stop(&self, context: &TrafficContext, scope: Stopped) {
        {
            let mut stopped = istio_runtime::sync::lock(&self.stopped);
            if *stopped != Stopped::All {
                *stopped = scope;
            }
        }
        let table = context.listeners.load();
        let addresses: std::collections::HashSet<SocketAddr> =
            table.by_name.values().filter(|listener| scope.covers(listener)).map(|listener| listener.address).collect();
        istio_runtime::sync::lock(&self.bound).retain(|address, tasks| {
            let stops = scope == Stopped::All || addresses.contains(address);
            if stops {
                tasks.iter().for_each(tokio::task::JoinHandle::abort);
            }
            !stops
        });
    }

    /// Installs a new set of listeners: binds the new addresses first — if one cannot be bound,
    /// nothing changes and the error says which — then swaps the table and closes the
    /// addresses no listener has any more.
    pub(crate) async fn update(
        &self,
        context: &Arc<TrafficContext>,
        listeners: Vec<Arc<ListenerConfig>>,
    ) -> Result<(), BindError> {
        let stopped = *istio_runtime::sync::lock(&self.stopped);
        let wanted: Vec<&Arc<ListenerConfig>> =
            listeners.iter().filter(|listener| listener.bind_to_port && !stopped.covers(listener)).collect();
        let already: std::collections::HashSet<SocketAddr> =
            istio_runtime::sync::lock(&self.bound).keys().copied().collect();
        let mut opened: Vec<(SocketAddr, std::net::TcpListener)> = Vec::new();
        for listener in &wanted {
            if already.contains(&listener.address) || opened.iter().any(|(address, _)| *address == listener.address) {
                continue;
            }
            match bind(listener.address) {
                Ok(socket) => opened.push((listener.address, socket)),
                Err(source) => {
                    return Err(BindError { listener: listener.name.clone(), address: listener.address, source })
                }
            }
        }
        let keep: std::collections::HashSet<SocketAddr> = wanted.iter().map(|listener| listener.address).collect();
        context.listeners.store(Arc::new(ListenerTable::new(listeners, &context.stats)));
        let mut bound = istio_runtime::sync::lock(&self.bound);
        for (address, socket) in opened {
            let loops = self
                .workers
                .handles()
                .iter()
                .filter_map(|worker| match socket.try_clone() {
                    Ok(socket) => Some(worker.spawn(accept_loop(context.clone(), address, socket))),
                    Err(error) => {
                        tracing::warn!("listener on {address}: a worker cannot share the socket: {error}");
                        None
                    }
                })
                .collect();
            bound.insert(address, loops);
        }
        bound.retain(|address, tasks| {
            let stays = keep.contains(address);
            if !stays {
                tasks.iter().for_each(tokio::task::JoinHandle::abort);
            }
            stays
        });
        context.stats.gauge("listener_manager.total_listeners_active").set(bound.len() as i64);
        Ok(())
    }
}

/// A listening socket, not yet tied to any runtime (each worker registers its own copy).
fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let std_socket: std::net::TcpListener = socket.listen(1024)?.into_std()?;
    std_socket.set_nonblocking(true)?;
    Ok(std_socket)
}

/// Accepts on `socket` for as long as the task lives, on the worker it was spawned on.
async fn accept_loop(context: Arc<TrafficContext>, address: SocketAddr, socket: std::net::TcpListener) {
    let socket = match TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!("listener on {address}: {error}");
            return;
        }
    };
    loop {
        match socket.accept().await {
            Ok((stream, remote)) => {
                let context = context.clone();
                tokio::spawn(async move { handle_connection(context, address, stream, remote).await });
            }
            Err(error) => {
                tracing::warn!("listener on {address}: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a connection was going before iptables redirected it, if it was redirected.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let local = stream.local_addr().ok()?;
    let original = if local.is_ipv4() { socket.original_dst_v4() } else { socket.original_dst_v6() };
    original.ok().and_then(|address| address.as_socket())
}

/// Completes a TLS handshake with the config that suits the client's ALPN offer, and says who
/// the client's certificate names. A client
/// that does not speak TLS (`is_tls`, when the listener inspected; else looked at here) is
/// closed without an answer, as Envoy closes it, rather than sent a TLS alert it cannot read.
async fn accept_tls(
    configs: &super::tls::ServerConfigs,
    stream: BoxStream,
    is_tls: Option<bool>,
) -> std::io::Result<(BoxStream, PeerIdentity)> {
    let (is_tls, stream) = match is_tls {
        Some(is_tls) => (is_tls, stream),
        None => {
            let (inspection, stream) = super::inspect::inspect(stream, true, false).await;
            (inspection.tls, stream)
        }
    };
    if !is_tls {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the client does not speak TLS"));
    }
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = configs.for_client(start.client_hello().alpn());
    let stream = start.into_stream(config).await?;
    let peer = PeerIdentity::from_certificates(stream.get_ref().1.peer_certificates());
    Ok((Box::pin(stream), peer))
}

async fn handle_connection(context: Arc<TrafficContext>, address: SocketAddr, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let table = context.listeners.load_full();
    let Some(accepting) = table.by_address.get(&address).filter(|listener| listener.bind_to_port).cloned() else {
        return;
    };
    let local = stream.local_addr().unwrap_or(accepting.address);
    let wants_destination = accepting.use_original_dst || accepting.original_dst_filter;
    let destination = if wants_destination { original_destination(&stream).unwrap_or(local) } else { local };
    // Hand-off: a captured connection is served by the listener that owns its destination.
    let listener = if accepting.use_original_dst {
        table.for_destination(destination).filter(|target| target.name != accepting.name).cloned().unwrap_or(accepting)
    } else {
        accepting
    };
    let stats = table.listener_stats(listener.address);
    stats.downstream_cx_total.inc();
    let _active = stats.downstream_cx_active.track();

    let stream: BoxStream = Box::pin(stream);
    let (inspection, stream) = if listener.tls_inspector || listener.http_inspector {
        super::inspect::inspect(stream, listener.tls_inspector, listener.http_inspector).await
    } else {
        (super::inspect::Inspection::default(), stream)
    };
    let facts = ConnectionFacts {
        destination: Some(destination),
        source: Some(remote),
        server_name: inspection.server_name.clone(),
        transport_protocol: if inspection.tls { "tls" } else { "raw_buffer" },
        application_protocols: inspection.application_protocols.clone(),
    };
    let Some(chain) = listener.select_chain(&facts) else {
        stats.no_filter_chain_match.inc();
        return;
    };
    let (stream, peer) = match &chain.tls {
        None => (stream, None),
        Some(settings) => match context.tls.server_config(settings) {
            Ok(configs) => match accept_tls(&configs, stream, listener.tls_inspector.then_some(inspection.tls)).await {
                Ok((tls, peer)) => (tls, Some(Arc::new(peer))),
                Err(error) => {
                    stats.ssl_connection_error.inc();
                    tracing::debug!("listener {}: TLS handshake failed: {error}", listener.name);
                    return;
                }
            },
            Err(error) => {
                tracing::warn!("listener {}: {error}", listener.name);
                return;
            }
        },
    };
    let downstream = Downstream {
        remote,
        local: destination,
        tls: peer.is_some(),
        peer,
        server_name: inspection.server_name,
        inbound: listener.inbound,
    };
    // istio-proxy's sni_verifier: the chain's first filter wherever 1.4's EnvoyFilters put it.
    let stream = if chain.sni_verifier {
        match super::sni_verifier::verify(stream, downstream.server_name.as_deref(), &context.stats).await {
            Ok(stream) => stream,
            Err(refusal) => {
                tracing::debug!(
                    "listener {}: connection from {remote} closed by sni_verifier: {refusal}",
                    listener.name
                );
                return;
            }
        }
    } else {
        stream
    };
    // The chain's RBAC network filters: a denied connection is closed before its terminal
    // filter sees it.
    for (rules, stat_prefix) in &chain.rbac {
        let subject = super::rbac::engine::Subject {
            source: downstream.remote,
            destination: downstream.local,
            peer: downstream.peer.as_deref(),
            server_name: downstream.server_name.as_deref(),
            header: None,
            path: None,
            metadata: None,
        };
        let decision = rules.decide(&subject, &context.stats, || stat_prefix.clone());
        if !decision.allowed {
            tracing::debug!(
                "listener {}: connection from {remote} closed: rbac_access_denied_matched_policy[{}]",
                listener.name,
                decision.policy.as_deref().unwrap_or("none")
            );
            return;
        }
    }
    // Istio 1.4's mixer network filter: Mixer checks the connection before it is proxied, and
    // hears of it as it opens, lasts and closes.
    let mut connection_report = None;
    if let Some(mixer) = chain.mixer.as_ref() {
        let reporter = if mixer.disable_report {
            None
        } else {
            super::mixer::report::Reporter::shared(&context.clusters, &mixer.transport)
        };
        if !mixer.disable_check || reporter.is_some() {
            let checked = super::mixer::attributes::Checked::of(&mixer.attributes, false);
            let mut attributes = super::mixer::attributes::connection(&downstream, checked);
            attributes.set("context.protocol", istio_attribute::Value::String("tcp".into()));
            attributes.merge(&mixer.attributes);
            if !mixer.disable_check {
                let client = super::mixer::client::MixerClient::shared(&mixer.transport, mixer.scope);
                let decision = client.check(&context.clusters, &attributes, &[]).await;
                if !decision.status.is_ok() {
                    tracing::debug!(
                        "listener {}: connection from {remote} closed: {}",
                        listener.name,
                        decision.status.body()
                    );
                    return;
                }
            }
            connection_report = reporter.map(|reporter| {
                super::mixer::report::ConnectionReport::new(
                    reporter,
                    attributes,
                    mixer.report_interval,
                    checked.outbound,
                )
            });
        }
    }
    match &chain.filter {
        NetworkFilter::Http(manager) => {
            let stats = table.http_stats(manager);
            drop(table);
            let retired = chain.retired.subscribe();
            super::http::connection::serve_connection(
                context,
                manager.clone(),
                stats,
                Arc::new(downstream),
                stream,
                retired,
            )
            .await
        }
        NetworkFilter::Tcp(proxy) => {
            let stats = table.tcp_stats(proxy);
            drop(table);
            super::tcp::proxy(&context, proxy, &stats, &downstream, stream, connection_report).await
        }
    }
}
