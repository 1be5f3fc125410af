//! istioctl's way to a Kubernetes cluster: 1.4's `--kubeconfig`, `--context` and
//! `--istioNamespace` flags, the choice between this host's mesh (the local platform) and a
//! cluster, and port-forwarding into a cluster's pods through the API server (the
//! `portforward` subresource over WebSocket, one stream per local connection, as
//! `kubectl port-forward` does).

use std::path::PathBuf;

use anyhow::{bail, Context};
use istio_local::Layout;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::net::{TcpListener, TcpStream};

/// The flags that point istioctl at a cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Kubernetes configuration file: talk to that cluster instead of this host's mesh.
    #[arg(short = 'c', long = "kubeconfig", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long = "context", global = true)]
    pub context: Option<String>,
    /// Istio system namespace.
    #[arg(short = 'i', long = "istioNamespace", global = true, default_value = "istio-system")]
    pub istio_namespace: String,
}

impl KubeArgs {
    /// Whether the command is for a cluster: when a kubeconfig or context is named, or when
    /// this host has no mesh installed and a kubeconfig is configured (`KUBECONFIG` or
    /// `~/.kube/config`, as kubectl finds it).
    pub fn wants_cluster(&self, layout: &Layout) -> bool {
        if self.kubeconfig.is_some() || self.context.is_some() {
            return true;
        }
        if layout.install_file().exists() {
            return false;
        }
        std::env::var_os("KUBECONFIG").is_some_and(|value| !value.is_empty())
            || std::env::var_os("HOME").is_some_and(|home| PathBuf::from(home).join(".kube/config").is_file())
    }

    /// A client for the chosen kubeconfig and context.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let options = KubeConfigOptions { context: self.context.clone(), ..KubeConfigOptions::default() };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .with_context(|| format!("kubeconfig {}", path.display()))?
            }
            None => Config::from_kubeconfig(&options).await.context("loading the kubeconfig")?,
        };
        Client::try_from(config).context("failed to create k8s client")
    }
}

/// The name of the first pod in `namespace` matching `selector` (`app=prometheus`), as 1.4's
/// `PodsForSelector(...).Items[0]`; `what` names it in errors ("Prometheus").
pub(crate) async fn first_pod(client: &Client, namespace: &str, selector: &str, what: &str) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .with_context(|| format!("not able to locate {what} pod"))?;
    // Prefer a running pod; 1.4 took the first one listed.
    let running = |pod: &&Pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let pod = list.items.iter().find(running).or_else(|| list.items.first());
    match pod.and_then(|pod| pod.metadata.name.clone()) {
        Some(name) => Ok(name),
        None => bail!("no {what} pods found"),
    }
}

/// One HTTP request to `port` of a pod through the API server's port-forward (HTTP/1.0, so the
/// answer ends with the connection); the body of a 200, or an error naming the status or what
/// the pod said.
pub(crate) async fn pod_http(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    method: &str,
    path: &str,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut forwarder =
        pods.portforward(pod, &[port]).await.with_context(|| format!("could not port-forward to {pod}.{namespace}"))?;
    let mut stream = forwarder.take_stream(port).context("the port-forward has no stream for the port")?;
    let pod_error = forwarder.take_error(port);
    let exchange = async {
        stream.write_all(format!("{method} {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = match pod_error {
        None => exchange.await?,
        Some(pod_error) => tokio::select! {
            biased;
            Some(message) = pod_error => {
                forwarder.abort();
                bail!("{pod}.{namespace}:{port}: {message}");
            }
            response = exchange => response?,
        },
    };
    forwarder.abort();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{method} {path} on {pod}.{namespace}:{port}: {}", if status.is_empty() { "no answer" } else { status });
    }
    Ok(body.to_string())
}

/// A port-forward from a local listener to `port` of a pod, through the API server.
pub(crate) struct ClusterForward {
    pods: Api<Pod>,
    pod: String,
    port: u16,
}

impl ClusterForward {
    /// Checks that the pod exists before anything is printed, as the forwarder 1.4 built did.
    pub(crate) async fn new(client: &Client, namespace: &str, pod: &str, port: u16) -> anyhow::Result<ClusterForward> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        pods.get(pod).await.with_context(|| format!("could not build port forwarder for {pod}.{namespace}"))?;
        Ok(ClusterForward { pods, pod: pod.to_string(), port })
    }

    /// Accepts local connections until the listener fails, each forwarded over its own stream.
    pub(crate) async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        loop {
            let (socket, peer) = listener.accept().await.context("accepting a forwarded connection")?;
            let (pods, pod, port) = (self.pods.clone(), self.pod.clone(), self.port);
            tokio::spawn(async move {
                if let Err(error) = forward_connection(socket, &pods, &pod, port).await {
                    eprintln!("port-forward from {peer} to {pod}:{port}: {error:#}");
                }
            });
        }
    }
}

/// Copies one local connection to and from the pod's port until both sides are done, or until
/// the pod says it cannot reach the port (its error channel): then the local connection is
/// dropped at once with the pod's message, as `kubectl port-forward` does.
async fn forward_connection(mut socket: TcpStream, pods: &Api<Pod>, pod: &str, port: u16) -> anyhow::Result<()> {
    let mut forwarder = pods.portforward(pod, &[port]).await.context("opening the port-forward stream")?;
    let mut upstream = forwarder.take_stream(port).context("the port-forward has no stream for the port")?;
    let copied = match forwarder.take_error(port) {
        None => tokio::io::copy_bidirectional(&mut socket, &mut upstream).await,
        Some(pod_error) => tokio::select! {
            // The error comes before the stream ends, so it is looked at first.
            biased;
            Some(message) = pod_error => {
                forwarder.abort();
                bail!("{message}");
            }
            copied = tokio::io::copy_bidirectional(&mut socket, &mut upstream) => copied,
        },
    };
    forwarder.abort();
    copied.context("copying")?;
    Ok(())
}
