//! `pilot discovery`: parse flags (named as in Istio 1.4), start Pilot, wait for a signal.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use pilot::{Config, ConfigSource, SourceSettings};

#[derive(Debug, Parser)]
#[command(name = "pilot", version, about = "Pilot: service discovery and traffic config (Envoy xDS v3) for istio-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the discovery service.
    Discovery(DiscoveryArgs),
}

#[derive(Debug, clap::Args)]
struct DiscoveryArgs {
    /// Directory of Istio config (ServiceEntries, VirtualServices, …) to serve.
    #[arg(long = "configDir")]
    config_dir: Option<PathBuf>,
    /// Service registries, comma-separated: `Kubernetes` (Services, Endpoints, Pods and Nodes,
    /// with the Istio CRDs, read from the API server when no other config source is given) and
    /// `MCP` (Galley's synthetic ServiceEntries, with `configSources`). ServiceEntries are always on.
    #[arg(long = "registries", value_delimiter = ',', default_value = "Kubernetes")]
    registries: Vec<String>,
    /// Kubeconfig for the Kubernetes registry; inside a cluster the pod's service account is used.
    #[arg(long = "kubeconfig")]
    kubeconfig: Option<PathBuf>,
    /// Mesh config file (YAML).
    #[arg(long = "meshConfig")]
    mesh_config: Option<PathBuf>,
    /// DNS suffix of services.
    #[arg(long = "domain", default_value = "cluster.local")]
    domain: String,
    /// xDS gRPC address.
    #[arg(long = "grpcAddr", default_value = ":15010")]
    grpc_addr: String,
    /// xDS over mutual TLS (1.4's `:15011`); off when empty. Uses the certificates in `--certDir`.
    #[arg(long = "secureGrpcAddr", default_value = "")]
    secure_grpc_addr: String,
    /// Pilot's own certificates for `--secureGrpcAddr`: cert-chain.pem, key.pem, root-cert.pem.
    #[arg(long = "certDir", default_value = "/etc/certs")]
    cert_dir: PathBuf,
    /// Debug HTTP address.
    #[arg(long = "httpAddr", default_value = ":8080")]
    http_addr: String,
    /// Monitoring (/metrics, /version) address.
    #[arg(long = "monitoringAddr", default_value = ":15014")]
    monitoring_addr: String,
    /// Responses built and queued at once across all proxies.
    #[arg(long = "pushThrottle", env = "PILOT_PUSH_THROTTLE", default_value_t = pilot::xds::ads::DEFAULT_PUSH_THROTTLE)]
    push_throttle: usize,
    /// How long config must be quiet before it is pushed (Go duration).
    #[arg(long = "debounceAfter", env = "PILOT_DEBOUNCE_AFTER", default_value = "100ms",
          value_parser = |text: &str| istio_duration::parse(text).map_err(|error| error.to_string()))]
    debounce_after: std::time::Duration,
    /// The longest a push waits for config to be quiet (Go duration).
    #[arg(long = "debounceMax", env = "PILOT_DEBOUNCE_MAX", default_value = "10s",
          value_parser = |text: &str| istio_duration::parse(text).map_err(|error| error.to_string()))]
    debounce_max: std::time::Duration,
    /// Whether endpoint changes wait for the quiet period too; `false` pushes them at once.
    #[arg(long = "enableEdsDebounce", env = "PILOT_ENABLE_EDS_DEBOUNCE", default_value_t = true,
          action = clap::ArgAction::Set)]
    enable_eds_debounce: bool,
    /// Log as JSON lines.
    #[arg(long = "log_as_json")]
    log_as_json: bool,
    /// CA certificates (PEM) to trust for HTTPS `jwksUri`s, besides the system's roots.
    #[arg(long = "jwksCaFile", env = "PILOT_JWKS_CA_FILE")]
    jwks_ca_file: Option<PathBuf>,
    /// How often Pilot fetches the JWKS of authentication policies again (Go duration).
    #[arg(long = "jwksRefreshInterval", env = "PILOT_JWKS_REFRESH_INTERVAL", default_value = "20m",
          value_parser = |text: &str| istio_duration::parse(text).map_err(|error| error.to_string()))]
    jwks_refresh_interval: std::time::Duration,
}

/// Accepts Go-style `:15010` (all interfaces) as well as `HOST:PORT`.
fn parse_address(flag: &str, text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    full.parse().with_context(|| format!("--{flag} {text:?} is not [HOST]:PORT"))
}

async fn discovery(args: DiscoveryArgs) -> anyhow::Result<()> {
    for registry in &args.registries {
        if !matches!(registry.as_str(), "Kubernetes" | "MCP" | "ServiceEntry") {
            bail!("--registries: {registry:?} is not a supported registry (Kubernetes, MCP)");
        }
    }
    let kubernetes = args.registries.iter().any(|r| r == "Kubernetes");
    let source = match (&args.config_dir, pilot::meshconfig::mcp_source(args.mesh_config.as_deref())?) {
        (Some(dir), _) => ConfigSource::Directory(dir.clone()),
        (None, Some(address)) => ConfigSource::Mcp(address),
        (None, None) if kubernetes => ConfigSource::Kubernetes(
            istio_config::store::kubernetes::client(args.kubeconfig.as_deref()).await.context(
                "the Kubernetes registry needs a cluster (--kubeconfig FILE, or run inside one); \
                 without one, give --configDir DIR or configSources (Galley's MCP address) in --meshConfig",
            )?,
        ),
        (None, None) => bail!(
            "pilot needs a config source: --configDir DIR, configSources (Galley's MCP address) in --meshConfig, \
             or --registries Kubernetes with a cluster"
        ),
    };
    let mesh = pilot::meshconfig::load(args.mesh_config.as_deref(), &args.domain)?;
    if let Some(path) = &args.jwks_ca_file {
        std::fs::read(path).with_context(|| format!("--jwksCaFile {}", path.display()))?;
    }
    let config = Config {
        source,
        grpc_address: parse_address("grpcAddr", &args.grpc_addr)?,
        http_address: parse_address("httpAddr", &args.http_addr)?,
        monitoring_address: parse_address("monitoringAddr", &args.monitoring_addr)?,
        settings: SourceSettings {
            mesh: mesh.clone(),
            mesh_updates: args
                .mesh_config
                .clone()
                .map(|path| pilot::meshconfig::watch(path, args.domain.clone(), mesh.clone())),
            jwks_ca_file: args.jwks_ca_file.clone(),
            jwks_refresh_interval: args.jwks_refresh_interval,
            debounce_after: args.debounce_after,
            debounce_max: args.debounce_max,
            eds_debounce: args.enable_eds_debounce,
            ..SourceSettings::default()
        },
        push_throttle: args.push_throttle,
        secure_grpc: if args.secure_grpc_addr.is_empty() {
            None
        } else {
            Some(pilot::SecureGrpc {
                address: parse_address("secureGrpcAddr", &args.secure_grpc_addr)?,
                cert_dir: args.cert_dir.clone(),
            })
        },
    };
    let running = pilot::start(config).await?;
    let secure = running.secure_grpc_address.map(|address| format!(", secure xDS on {address}")).unwrap_or_default();
    println!(
        "pilot: xDS on {}, debug on {}, monitoring on {}{secure}",
        running.grpc_address, running.http_address, running.monitoring_address
    );
    istio_runtime::shutdown_signal().await;
    running.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() {
    let Command::Discovery(args) = Cli::parse().command;
    istio_runtime::init_logging(args.log_as_json);
    istio_runtime::exit_on_error(discovery(args).await);
}
