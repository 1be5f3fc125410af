//! `istioctl dashboard prometheus|grafana|kiali|jaeger|zipkin|envoy POD` (aliases `dash`, `d`),
//! as 1.4's: print the web UI's URL and open it where there is a display. On the local platform
//! the addons have their own bridge addresses, so their URLs are printed as they are, with no
//! port-forward: Prometheus, the trace collector for jaeger and zipkin, and the mesh console for
//! grafana and kiali. A proxy's admin API listens on its pod's loopback only, so `envoy POD`
//! forwards a local port into the pod (as `kubectl port-forward`) until interrupted.
//! `x local port-forward` is the same forwarding as a kubectl verb.
//!
//! On a cluster (`--kubeconfig`, `--context`, or no mesh on this host and a kubeconfig
//! configured) it does what 1.4's did: finds the addon's pod by label in the Istio namespace
//! (`app=prometheus`, `app=grafana`, `app=kiali`, `app=jaeger`, `app=zipkin`), forwards a local
//! port to it through the API server and prints `http://localhost:PORT` (Kiali's with `/kiali`),
//! forwarding until interrupted.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use istio_local::install::{Component, Plan, CONSOLE, CONSOLE_PORT, PROMETHEUS, PROMETHEUS_PORT, TRACING, ZIPKIN_PORT};
use istio_local::Layout;

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[command(subcommand)]
    pub dashboard: Dashboard,
    /// Open the URL in a browser when there is a display (`--browser=false` only prints it).
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub browser: bool,
    /// Local port for a forwarded dashboard (0: any free port).
    #[arg(short = 'p', long, global = true, default_value_t = 0)]
    pub port: u16,
    /// Local address a forwarded dashboard listens on.
    #[arg(long, global = true, default_value = "localhost")]
    pub address: String,
    #[command(flatten)]
    pub kube: crate::kube::KubeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Dashboard {
    /// Open Prometheus web UI.
    Prometheus,
    /// Open Grafana web UI (the mesh console's dashboards).
    Grafana,
    /// Open Kiali web UI (the mesh console's service graph).
    Kiali,
    /// Open Jaeger web UI (the trace collector).
    Jaeger,
    /// Open Zipkin web UI (the trace collector).
    Zipkin,
    /// Open Envoy admin web UI: `istioctl dashboard envoy productpage-123-456.default`.
    Envoy {
        /// `pod-name[.namespace]`.
        pod: String,
        #[arg(short = 'n', long = "namespace", default_value = "default")]
        namespace: String,
    },
}

/// The proxy's admin port, on the pod's loopback.
const ENVOY_ADMIN_PORT: u16 = 15000;

/// Prints the URL and opens a browser on it when there is a display, as 1.4's `openBrowser`.
fn open(url: &str, browser: bool) {
    println!("{url}");
    let display =
        ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !browser || !display {
        return;
    }
    if std::process::Command::new("xdg-open").arg(url).spawn().is_err() {
        println!("Failed to open browser; open {url} in your browser.");
    }
}

/// Whether an addon is part of the installation and answering.
fn addon_url(plan: &Plan, addon: Component, port: u16, what: &str, enable: &str) -> anyhow::Result<String> {
    if !plan.components().contains(&addon) {
        bail!("no {what} in this installation (install with --set {enable}=true; the demo profile has it)");
    }
    let address = SocketAddr::from((addon.address, port));
    if TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err() {
        bail!("{what} is not answering on {address} (is the mesh running? `istioctl x local logs` shows its log)");
    }
    Ok(format!("http://{address}"))
}

pub(crate) fn run(args: &DashboardArgs) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    if args.kube.wants_cluster(&layout) {
        return on_cluster(args);
    }
    let plan = Plan::load(&layout)?;
    let url = match &args.dashboard {
        Dashboard::Prometheus => {
            addon_url(&plan, PROMETHEUS, PROMETHEUS_PORT, "Prometheus", "values.prometheus.enabled")?
        }
        Dashboard::Jaeger | Dashboard::Zipkin => {
            addon_url(&plan, TRACING, ZIPKIN_PORT, "trace collector", "values.tracing.enabled")? + "/"
        }
        Dashboard::Grafana => {
            addon_url(&plan, CONSOLE, CONSOLE_PORT, "mesh console", "values.grafana.enabled")? + "/dashboards"
        }
        Dashboard::Kiali => addon_url(&plan, CONSOLE, CONSOLE_PORT, "mesh console", "values.kiali.enabled")? + "/graph",
        Dashboard::Envoy { pod, namespace } => return envoy(&layout, args, pod, namespace),
    };
    open(&url, args.browser);
    Ok(0)
}

/// Forwards a local port to `pod`'s admin port until Ctrl-C.
fn envoy(layout: &Layout, args: &DashboardArgs, pod: &str, namespace: &str) -> anyhow::Result<i32> {
    let (name, namespace) = pod.split_once('.').unwrap_or((pod, namespace));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let (forward, bound) = forward_to(layout, name, namespace, ENVOY_ADMIN_PORT, &args.address, args.port).await?;
        open(&format!("http://{bound}"), args.browser);
        serve_until_interrupted(vec![forward]).await
    })?;
    Ok(0)
}

/// An addon on a cluster as 1.4 found it: the pod label's app, the name in messages, the port
/// and the URL's path.
struct ClusterAddon {
    app: &'static str,
    what: &'static str,
    port: u16,
    path: &'static str,
}

fn cluster_addon(dashboard: &Dashboard) -> Option<ClusterAddon> {
    let addon = |app, what, port, path| Some(ClusterAddon { app, what, port, path });
    match dashboard {
        Dashboard::Prometheus => addon("prometheus", "Prometheus", 9090, ""),
        Dashboard::Grafana => addon("grafana", "Grafana", 3000, ""),
        Dashboard::Kiali => addon("kiali", "Kiali", 20001, "/kiali"),
        Dashboard::Jaeger => addon("jaeger", "Jaeger", 16686, ""),
        Dashboard::Zipkin => addon("zipkin", "Zipkin", 9411, ""),
        Dashboard::Envoy { .. } => None,
    }
}

/// The dashboard on a cluster: a port-forward through the API server until Ctrl-C.
fn on_cluster(args: &DashboardArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let client = args.kube.client().await?;
        let (namespace, pod, port, path) = match &args.dashboard {
            Dashboard::Envoy { pod, namespace } => {
                let (name, namespace) = pod.split_once('.').unwrap_or((pod, namespace));
                (namespace.to_string(), name.to_string(), ENVOY_ADMIN_PORT, "")
            }
            addon => {
                let Some(addon) = cluster_addon(addon) else { bail!("no addon for {addon:?}") };
                let namespace = args.kube.istio_namespace.clone();
                let selector = format!("app={}", addon.app);
                let pod = crate::kube::first_pod(&client, &namespace, &selector, addon.what).await?;
                (namespace, pod, addon.port, addon.path)
            }
        };
        let forward = crate::kube::ClusterForward::new(&client, &namespace, &pod, port).await?;
        let local = if args.address == "localhost" { "127.0.0.1" } else { &args.address };
        let listener = tokio::net::TcpListener::bind((local, args.port))
            .await
            .with_context(|| format!("cannot listen on {local}:{}", args.port))?;
        let bound = listener.local_addr()?;
        open(&format!("http://{}:{}{path}", args.address, bound.port()), args.browser);
        tokio::select! {
            served = forward.serve(listener) => served.context("failure running port forward process"),
            () = istio_runtime::shutdown_signal() => Ok(()),
        }
    })?;
    Ok(0)
}

/// A port forward into a pod: the listener and what it is bound to.
pub(crate) struct Forward {
    listener: tokio::net::TcpListener,
    dialer: istio_local::port_forward::PodDialer,
    target: SocketAddr,
}

/// Binds `address:port` locally for a forward to `remote` on `pod`'s loopback.
pub(crate) async fn forward_to(
    layout: &Layout,
    pod: &str,
    namespace: &str,
    remote: u16,
    address: &str,
    port: u16,
) -> anyhow::Result<(Forward, SocketAddr)> {
    let pod = istio_local::kubectl::find_pod(layout, pod, namespace).await?;
    let netns = istio_local::net::netns_name(pod.namespace(), pod.name());
    let dialer = istio_local::port_forward::PodDialer::enter(&netns)
        .with_context(|| format!("reaching pod {}.{}", pod.name(), pod.namespace()))?;
    let local = if address == "localhost" { "127.0.0.1" } else { address };
    let listener = tokio::net::TcpListener::bind((local, port))
        .await
        .with_context(|| format!("cannot listen on {local}:{port}"))?;
    let bound = listener.local_addr()?;
    Ok((Forward { listener, dialer, target: SocketAddr::from((Ipv4Addr::LOCALHOST, remote)) }, bound))
}

/// Forwards connections until Ctrl-C or SIGTERM.
pub(crate) async fn serve_until_interrupted(forwards: Vec<Forward>) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for forward in forwards {
        tasks.spawn(istio_local::port_forward::forward(forward.listener, forward.dialer, forward.target));
    }
    tokio::select! {
        Some(ended) = tasks.join_next() => ended.context("a forward stopped")?,
        () = istio_runtime::shutdown_signal() => Ok(()),
    }
}
