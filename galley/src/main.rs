//! `galley server`: parse flags (named as in Istio 1.4), start Galley, wait for a signal.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use galley::{Config, Registration, SnapshotSettings, Source, WebhookConfig};

#[derive(Debug, Parser)]
#[command(name = "galley", version, about = "Galley: config validation and distribution (MCP) for istio-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Galley server.
    Server(ServerArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Directory of Istio config YAML to serve (the file-system config source).
    #[arg(long = "configPath")]
    config_path: Option<PathBuf>,
    /// Kubeconfig of the cluster to read config from (without --configPath). Inside a pod,
    /// the in-cluster service account is used when this is not given.
    #[arg(long = "kubeconfig")]
    kubeconfig: Option<PathBuf>,
    /// Mesh config file (the `mesh` key of the `istio` ConfigMap, as YAML).
    #[arg(long = "meshConfigFile")]
    mesh_config_file: Option<PathBuf>,
    /// MCP server address, `tcp://HOST:PORT` or `HOST:PORT`.
    #[arg(long = "server-address", default_value = "tcp://0.0.0.0:9901")]
    server_address: String,
    /// Serve the validation webhook.
    #[arg(long = "enable-validation", default_value_t = true, action = clap::ArgAction::Set)]
    enable_validation: bool,
    /// Port of the validation webhook (HTTPS).
    #[arg(long = "validation-port", default_value_t = istio_runtime::ports::WEBHOOK)]
    validation_port: u16,
    /// Address the webhook and monitoring servers bind.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Certificate chain the webhook presents (PEM).
    #[arg(long = "tlsCertFile", default_value = "/etc/certs/cert-chain.pem")]
    tls_cert_file: PathBuf,
    /// Private key of the webhook certificate (PEM).
    #[arg(long = "tlsKeyFile", default_value = "/etc/certs/key.pem")]
    tls_key_file: PathBuf,
    /// Port of the monitoring server (`/metrics`, `/version`).
    #[arg(long = "monitoringPort", default_value_t = istio_runtime::ports::MONITORING)]
    monitoring_port: u16,
    /// DNS suffix of services (synthetic ServiceEntry hosts).
    #[arg(long = "domain", default_value = "cluster.local")]
    domain: String,
    /// The ValidatingWebhookConfiguration template to register (on Kubernetes); none: Galley
    /// does not register the webhook.
    #[arg(long = "validation-webhook-config-file")]
    validation_webhook_config_file: Option<PathBuf>,
    /// The CA certificate that signed the webhook's certificate: the configuration's caBundle.
    #[arg(long = "caCertFile", default_value = "/etc/certs/root-cert.pem")]
    ca_cert_file: PathBuf,
    /// Galley's namespace, which owns the webhook configuration.
    #[arg(long = "deployment-namespace", default_value = "istio-system")]
    deployment_namespace: String,
    /// Galley's Deployment (1.4's flag; the configuration is owned by the namespace).
    #[arg(long = "deployment-name", default_value = "istio-galley")]
    deployment_name: String,
    /// The ValidatingWebhookConfiguration's name.
    #[arg(long = "webhook-name", default_value = "istio-galley")]
    webhook_name: String,
    /// Keep the webhook configuration registered (and put it back when it is edited).
    #[arg(long = "enable-reconcileWebhookConfiguration", default_value_t = true, action = clap::ArgAction::Set)]
    reconcile_webhook_configuration: bool,
    /// Analyse the config continuously, as `istioctl x analyze` does, logging the messages and
    /// serving them at the monitoring port's `/debug/analysis`.
    #[arg(long = "enableAnalysis", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    enable_analysis: bool,
    /// Log as JSON lines.
    #[arg(long = "log_as_json")]
    log_as_json: bool,
}

fn parse_address(text: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = text.strip_prefix("tcp://").unwrap_or(text);
    trimmed.parse().with_context(|| format!("--server-address {text:?} is not HOST:PORT"))
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let source = match &args.config_path {
        Some(path) => Source::Directory(path.clone()),
        None => {
            Source::Kubernetes(istio_config::store::kubernetes::client(args.kubeconfig.as_deref()).await.with_context(
                || "galley needs a config source: --configPath DIR, --kubeconfig FILE, or to run inside a cluster",
            )?)
        }
    };
    let mesh_config = match &args.mesh_config_file {
        Some(path) => istio_config::mesh::load(path)?,
        None => serde_json::json!({}),
    };
    let trust_domain = mesh_config
        .get("trustDomain")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("cluster.local")
        .to_string();
    let webhook = args.enable_validation.then(|| WebhookConfig {
        address: SocketAddr::new(args.bind_address, args.validation_port),
        cert_chain: args.tls_cert_file.clone(),
        key: args.tls_key_file.clone(),
    });
    let registration = args
        .validation_webhook_config_file
        .clone()
        .filter(|_| args.reconcile_webhook_configuration && matches!(source, Source::Kubernetes(_)))
        .map(|config_file| Registration {
            config_file,
            ca_cert_file: args.ca_cert_file.clone(),
            namespace: args.deployment_namespace.clone(),
            webhook_name: args.webhook_name.clone(),
            enabled: args.enable_validation,
        });
    tracing::debug!(deployment = %args.deployment_name, "galley deployment");
    let config = Config {
        registration,
        source,
        enable_analysis: args.enable_analysis,
        mcp_address: parse_address(&args.server_address)?,
        monitoring_address: SocketAddr::new(args.bind_address, args.monitoring_port),
        webhook,
        snapshot: SnapshotSettings {
            domain_suffix: args.domain,
            trust_domain,
            mesh_config,
            ..SnapshotSettings::default()
        },
    };
    let running = galley::start(config).await?;
    println!(
        "galley: MCP on {}, webhook on {}, monitoring on {}",
        running.mcp_address,
        running.webhook_address.map_or_else(|| "(disabled)".to_string(), |a| a.to_string()),
        running.monitoring_address
    );
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
