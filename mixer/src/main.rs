//! `mixs`: parse flags (named as Istio 1.4's `mixs server`'s), start Mixer, wait for a signal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgAction, Parser, Subcommand};
use istio_config::object::TypeKey;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::kubernetes::KubernetesStore;
use istio_config::store::Store;
use mixer::source::ConfigStore;
use mixer::{Config, Environment};

#[derive(Debug, Parser)]
#[command(name = "mixs", version, about = "Mixer is Istio's abstraction on top of infrastructure backends.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts Mixer as a server.
    Server(ServerArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// URL of the config store: fs://DIRECTORY, mcp://HOST:PORT (Galley) or k8s://.
    #[arg(long = "configStoreURL", default_value = "")]
    config_store_url: String,
    /// Namespace whose rules apply to every namespace.
    #[arg(long = "configDefaultNamespace", default_value = "istio-system")]
    config_default_namespace: String,
    /// TCP port for Mixer's gRPC API.
    #[arg(long = "port", short = 'p', default_value_t = istio_runtime::ports::MIXER)]
    port: u16,
    /// HTTP port for /metrics.
    #[arg(long = "monitoringPort", default_value_t = istio_runtime::ports::MONITORING)]
    monitoring_port: u16,
    /// HTTP port the `prometheus` adapter serves its metrics on (1.4 fixed it at 42422); 0 picks
    /// a free one.
    #[arg(long = "prometheusAdapterPort", default_value_t = 42422)]
    prometheus_adapter_port: u16,
    /// Address to bind (1.4 also took a unix socket here; a TCP host is expected).
    #[arg(long = "address", default_value = "0.0.0.0")]
    address: String,
    /// Entries of Mixer's own check cache (1.4 forced it off; kept for its flag).
    #[arg(long = "numCheckCacheEntries", default_value_t = 1_500_000)]
    num_check_cache_entries: i64,
    /// Most goroutines 1.4 ran for API requests; requests here run on the async runtime.
    #[arg(long = "apiWorkerPoolSize", default_value_t = 1024)]
    api_worker_pool_size: usize,
    /// Most goroutines 1.4 ran for adapters; adapters run on the async runtime.
    #[arg(long = "adapterWorkerPoolSize", default_value_t = 1024)]
    adapter_worker_pool_size: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long = "maxMessageSize", default_value_t = 1024 * 1024)]
    max_message_size: usize,
    /// Most concurrent gRPC streams per connection.
    #[arg(long = "maxConcurrentStreams", default_value_t = 1024)]
    max_concurrent_streams: u32,
    /// Read the legacy per-adapter kinds (`kind: memquota`, …).
    #[arg(long = "useAdapterCRDs", num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    use_adapter_crds: bool,
    /// Read the legacy per-template kinds (`kind: quota`, …).
    #[arg(long = "useTemplateCRDs", num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    use_template_crds: bool,
    /// Kubeconfig for k8s:// and for kubernetesenv's pods (inside a cluster, the in-cluster account).
    #[arg(long = "kubeconfig", env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The local platform's store: kubernetesenv reads pods from it.
    #[arg(long = "podStore", env = "ISTIO_LOCAL_STORE")]
    pod_store: Option<PathBuf>,
    /// Log levels (`default:info`, `info`, …).
    #[arg(long = "log_output_level", default_value = "")]
    log_output_level: String,
    /// Log as JSON lines.
    #[arg(long = "log_as_json", default_value_t = false)]
    log_as_json: bool,
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    if !args.log_output_level.is_empty() {
        let directives = args.log_output_level.replace("default:", "");
        istio_runtime::set_log_levels(&directives)
            .with_context(|| format!("--log_output_level {:?}", args.log_output_level))?;
    }
    if args.config_store_url.is_empty() {
        anyhow::bail!("mixs needs --configStoreURL: fs://DIRECTORY, mcp://HOST:PORT (Galley) or k8s://");
    }
    let store = ConfigStore::parse(&args.config_store_url)?;
    let address: IpAddr = if args.address.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        args.address.parse().with_context(|| format!("--address {:?} is not an IP address", args.address))?
    };
    let kubernetes = if store == ConfigStore::Kubernetes || (args.pod_store.is_none() && args.kubeconfig.is_some()) {
        Some(
            istio_config::store::kubernetes::client(args.kubeconfig.as_deref())
                .await
                .context("connecting to Kubernetes")?,
        )
    } else {
        None
    };
    let environment = match (&args.pod_store, &kubernetes) {
        (Some(path), _) => {
            let store: Arc<dyn Store> =
                Arc::new(DirectoryStore::open(path.clone()).with_context(|| format!("--podStore {}", path.display()))?);
            Environment::with_pods(store)
        }
        (None, Some(client)) => {
            let kinds = vec![TypeKey::new("", "Pod"), TypeKey::new("apps", "ReplicaSet")];
            Environment::with_pods(Arc::new(KubernetesStore::new(client.clone(), kinds)?))
        }
        (None, None) => Environment::default(),
    }
    .serving_prometheus_on(SocketAddr::new(address, args.prometheus_adapter_port));
    let config = Config {
        store,
        api_address: SocketAddr::new(address, args.port),
        monitoring_address: SocketAddr::new(address, args.monitoring_port),
        default_namespace: args.config_default_namespace.clone(),
        legacy_kinds: args.use_adapter_crds || args.use_template_crds,
        environment,
        kubernetes,
        max_message_size: args.max_message_size,
        max_concurrent_streams: args.max_concurrent_streams,
    };
    let running = mixer::start(config).await?;
    println!("mixer: API on {}, monitoring on {}", running.api_address, running.monitoring_address);
    istio_runtime::shutdown_signal().await;
    running.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() {
    let Command::Server(args) = Cli::parse().command;
    istio_runtime::init_logging(args.log_as_json);
    istio_runtime::exit_on_error(server(args).await);
}
