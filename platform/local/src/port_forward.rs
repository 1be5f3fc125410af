//! `kubectl port-forward` for the local platform: a listener on the host whose connections are
//! opened inside a pod's network namespace (so a port the pod serves only on its loopback, such
//! as the proxy's admin port, can be reached), with bytes copied both ways. A dedicated thread
//! enters the pod's namespace once and dials there; a socket keeps the namespace it was made
//! in, so the copying runs on the async runtime as usual.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use nix::sched::{setns, CloneFlags};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a dial inside the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

type DialRequest = (SocketAddr, oneshot::Sender<std::io::Result<TcpStream>>);

/// Opens connections from inside one pod's network namespace.
#[derive(Debug, Clone)]
pub struct PodDialer {
    requests: mpsc::Sender<DialRequest>,
}

impl PodDialer {
    /// Starts a thread inside the network namespace `netns` (a name under `/var/run/netns`).
    pub fn enter(netns: &str) -> anyhow::Result<PodDialer> {
        let path = Path::new("/var/run/netns").join(netns);
        let namespace = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let (requests, incoming) = mpsc::channel::<DialRequest>();
        let (entered, entered_result) = mpsc::channel();
        let name = netns.to_string();
        std::thread::Builder::new().name(format!("dial-{name}")).spawn(move || {
            // setns changes only this thread's namespace.
            let result = setns(&namespace, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {name}"));
            let failed = result.is_err();
            let _ = entered.send(result);
            if failed {
                return;
            }
            for (target, answer) in incoming {
                let _ = answer.send(TcpStream::connect_timeout(&target, DIAL_TIMEOUT));
            }
        })?;
        entered_result.recv().context("the dialing thread ended early")??;
        Ok(PodDialer { requests })
    }

    /// A connection to `target`, made inside the pod.
    pub async fn dial(&self, target: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let (answer, answered) = oneshot::channel();
        self.requests.send((target, answer)).map_err(|_| std::io::Error::other("the dialing thread is gone"))?;
        let stream = answered.await.map_err(|_| std::io::Error::other("the dialing thread is gone"))??;
        stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(stream)
    }
}

/// Serves `listener` until the future is dropped: each connection is joined to a new
/// connection to `target` inside the pod.
pub async fn forward(listener: TcpListener, dialer: PodDialer, target: SocketAddr) -> anyhow::Result<()> {
    loop {
        let (mut downstream, peer) = listener.accept().await.context("accepting a forwarded connection")?;
        let dialer = dialer.clone();
        tokio::spawn(async move {
            match dialer.dial(target).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                }
                Err(error) => tracing::warn!(%peer, %target, "forwarding into the pod: {error}"),
            }
        });
    }
}
