//! Listeners at run time: binds the listeners that bind, accepts connections, finds where each
//! connection was going (`SO_ORIGINAL_DST` after iptables' REDIRECT, or the local address),
//! hands captured connections to the listener owning that address (`use_original_dst`), runs
//! the listener filters, picks the filter chain, terminates TLS if the chain says so, and
//! starts the chain's HTTP connection manager or TCP proxy. Config updates swap the listener
//! table; sockets of listeners whose address stays are kept.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};

use super::config::listener::{ConnectionFacts, ListenerConfig, NetworkFilter};
use super::http::Downstream;
use super::upstream::pool::BoxStream;
use super::Shared;

/// Listeners by name, and by address for the original-destination hand-off.
#[derive(Debug, Default)]
pub struct ListenerTable {
    pub by_name: HashMap<String, Arc<ListenerConfig>>,
    by_address: HashMap<SocketAddr, Arc<ListenerConfig>>,
}

impl ListenerTable {
    pub fn new(listeners: Vec<Arc<ListenerConfig>>) -> ListenerTable {
        let mut table = ListenerTable::default();
        for listener in listeners {
            table.by_address.insert(listener.address, listener.clone());
            table.by_name.insert(listener.name.clone(), listener);
        }
        table
    }

    /// The listener for a captured connection's original destination: exact address first,
    /// then the wildcard address on that port.
    fn for_destination(&self, destination: SocketAddr) -> Option<&Arc<ListenerConfig>> {
        let wildcard = match destination.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.by_address
            .get(&destination)
            .or_else(|| self.by_address.get(&SocketAddr::new(wildcard, destination.port())))
    }
}

/// Owns the bound sockets: one accept loop per address, which serves whichever listener has
/// that address in the current table (so renaming a listener keeps its socket).
#[derive(Default)]
pub struct ListenerManager {
    pub table: ArcSwap<ListenerTable>,
    bound: Mutex<HashMap<SocketAddr, tokio::task::JoinHandle<()>>>,
}

impl ListenerManager {
    /// Installs a new set of listeners: binds the new addresses first — if one cannot be bound,
    /// nothing changes and the error says which — then swaps the table and closes the
    /// addresses no listener has any more.
    pub async fn update(&self, shared: &Arc<Shared>, listeners: Vec<Arc<ListenerConfig>>) -> Result<(), String> {
        let wanted: Vec<&Arc<ListenerConfig>> = listeners.iter().filter(|listener| listener.bind_to_port).collect();
        let already: std::collections::HashSet<SocketAddr> =
            self.bound.lock().unwrap_or_else(|poison| poison.into_inner()).keys().copied().collect();
        let mut opened: Vec<(SocketAddr, TcpListener)> = Vec::new();
        for listener in &wanted {
            if already.contains(&listener.address) || opened.iter().any(|(address, _)| *address == listener.address) {
                continue;
            }
            match bind(listener.address) {
                Ok(socket) => opened.push((listener.address, socket)),
                Err(error) => {
                    return Err(format!("listener {}: cannot bind {}: {error}", listener.name, listener.address))
                }
            }
        }
        let keep: std::collections::HashSet<SocketAddr> = wanted.iter().map(|listener| listener.address).collect();
        self.table.store(Arc::new(ListenerTable::new(listeners.clone())));
        let mut bound = self.bound.lock().unwrap_or_else(|poison| poison.into_inner());
        for (address, socket) in opened {
            bound.insert(address, tokio::spawn(accept_loop(shared.clone(), address, socket)));
        }
        bound.retain(|address, task| {
            let stays = keep.contains(address);
            if !stays {
                task.abort();
            }
            stays
        });
        shared.stats.gauge("listener_manager.total_listeners_active").set(bound.len() as i64);
        Ok(())
    }

    /// Stops accepting new connections on every listener (draining).
    pub fn stop_accepting(&self) {
        for (_, task) in self.bound.lock().unwrap_or_else(|poison| poison.into_inner()).drain() {
            task.abort();
        }
    }
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn accept_loop(shared: Arc<Shared>, address: SocketAddr, socket: TcpListener) {
    loop {
        match socket.accept().await {
            Ok((stream, remote)) => {
                let shared = shared.clone();
                tokio::spawn(async move { handle_connection(shared, address, stream, remote).await });
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

async fn handle_connection(shared: Arc<Shared>, address: SocketAddr, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let table = shared.listeners.table.load_full();
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
    let stat = format!("listener.{}_{}.", listener.address.ip(), listener.address.port());
    shared.stats.counter(&format!("{stat}downstream_cx_total")).inc();
    let _active = shared.stats.gauge(&format!("{stat}downstream_cx_active")).track();

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
        shared.stats.counter(&format!("{stat}no_filter_chain_match")).inc();
        return;
    };
    let (stream, tls) = match &chain.tls {
        None => (stream, false),
        Some(settings) => match shared.tls.server_config(settings) {
            Ok(config) => match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(tls) => (Box::pin(tls) as BoxStream, true),
                Err(error) => {
                    shared.stats.counter(&format!("{stat}ssl.connection_error")).inc();
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
    let downstream =
        Downstream { remote, local: destination, tls, server_name: inspection.server_name, inbound: listener.inbound };
    match &chain.filter {
        NetworkFilter::Http(manager) => {
            super::http::serve_connection(shared.clone(), manager.clone(), Arc::new(downstream), stream).await
        }
        NetworkFilter::Tcp(proxy) => super::tcp::proxy(shared.clone(), proxy, &downstream, stream).await,
    }
}
