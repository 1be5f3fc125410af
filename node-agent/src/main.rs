//! `node-agent`: the node agent's command line, with Istio 1.4's flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use istio_config::store::Store;

#[derive(Debug, Parser)]
#[command(name = "node-agent", about = "Istio node agent: workload certificates over SDS, signed by Citadel")]
struct Cli {
    /// The Unix socket workloads' proxies fetch their secrets from.
    #[arg(long = "workloadUDSPath", default_value = "/var/run/sds/uds_path")]
    workload_uds_path: PathBuf,
    /// The CA that signs: only Citadel.
    #[arg(long = "caProvider", env = "CA_PROVIDER", default_value = "Citadel")]
    ca_provider: String,
    /// Citadel's CA API, host:port.
    #[arg(long = "caEndpoint", env = "CA_ADDR", default_value = "istio-citadel:8060")]
    ca_endpoint: String,
    /// The name Citadel's certificate is checked for (default: the endpoint's host, or
    /// `istio-citadel` when it is an address).
    #[arg(long = "caTlsServerName")]
    ca_tls_server_name: Option<String>,
    #[arg(long = "trustDomain", env = "TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime asked for.
    #[arg(long = "secretTtl", env = "SECRET_TTL", default_value = "24h", value_parser = istio_duration::parse)]
    secret_ttl: Duration,
    /// Renew this long before expiry.
    #[arg(long = "secretRefreshGraceDuration", env = "SECRET_GRACE_DURATION", default_value = "12h", value_parser = istio_duration::parse)]
    secret_refresh_grace_duration: Duration,
    /// Citadel's namespace (where it publishes its root).
    #[arg(long = "citadelNamespace", env = "NAMESPACE", default_value = "istio-system")]
    citadel_namespace: String,
    /// Serve workloads their own certificates on `--workloadUDSPath`.
    #[arg(long = "enableWorkloadSDS", env = "ENABLE_WORKLOAD_SDS", default_value_t = true, action = clap::ArgAction::Set)]
    enable_workload_sds: bool,
    /// Serve the gateway the Secrets of its namespace (`credentialName`) on `--gatewayUdsPath`.
    #[arg(long = "enableIngressGatewaySDS", env = "ENABLE_INGRESS_GATEWAY_SDS", default_value_t = false, action = clap::ArgAction::Set)]
    enable_ingress_gateway_sds: bool,
    /// The Unix socket the gateway's proxy fetches its named certificates from.
    #[arg(long = "gatewayUdsPath", default_value = "/var/run/ingress_gateway/sds")]
    gateway_uds_path: PathBuf,
    /// The namespace whose Secrets the gateway is served (the gateway's own).
    #[arg(long = "ingressGatewayNamespace", env = "INGRESS_GATEWAY_NAMESPACE", default_value = "istio-system")]
    ingress_gateway_namespace: String,
    /// A directory store (the local platform's, which gives its containers `ISTIO_LOCAL_STORE`)
    /// instead of the Kubernetes API.
    #[arg(long = "configPath", env = "ISTIO_LOCAL_STORE")]
    config_path: Option<PathBuf>,
    #[arg(long = "kube-config")]
    kube_config: Option<PathBuf>,
    #[arg(long = "log_as_json")]
    log_as_json: bool,
}

/// The name to check Citadel's certificate for.
fn server_name(cli: &Cli) -> String {
    if let Some(name) = &cli.ca_tls_server_name {
        return name.clone();
    }
    let host = cli.ca_endpoint.rsplit_once(':').map_or(cli.ca_endpoint.as_str(), |(host, _)| host);
    if host.parse::<std::net::IpAddr>().is_ok() {
        "istio-citadel".to_string()
    } else {
        host.to_string()
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.enable_workload_sds || cli.enable_ingress_gateway_sds,
        "nothing to serve: enable --enableWorkloadSDS (ENABLE_WORKLOAD_SDS) or --enableIngressGatewaySDS (ENABLE_INGRESS_GATEWAY_SDS)"
    );
    anyhow::ensure!(
        !(cli.enable_workload_sds && cli.enable_ingress_gateway_sds && cli.workload_uds_path == cli.gateway_uds_path),
        "--gatewayUdsPath and --workloadUDSPath cannot be the same: {}",
        cli.gateway_uds_path.display()
    );
    anyhow::ensure!(
        cli.ca_provider == "Citadel",
        "--caProvider {}: only Citadel is supported (Istio 1.4 also had Google CA and Vault)",
        cli.ca_provider
    );
    let store: Box<dyn Store> = match &cli.config_path {
        Some(path) => Box::new(
            istio_config::store::directory::DirectoryStore::open(path)
                .with_context(|| format!("--configPath {}", path.display()))?,
        ),
        None => {
            let client = istio_config::store::kubernetes::client(cli.kube_config.as_deref()).await.context(
                "node-agent needs a store: --configPath DIR, --kube-config FILE, or to run inside a cluster",
            )?;
            let mut kinds = vec![istio_config::object::TypeKey::new("", "ConfigMap")];
            if cli.enable_ingress_gateway_sds {
                kinds.push(istio_config::object::TypeKey::new("", "Secret"));
            }
            Box::new(istio_config::store::kubernetes::KubernetesStore::new(client, kinds)?)
        }
    };
    let config = node_agent::Config {
        socket: cli.workload_uds_path.clone(),
        ca_endpoint: cli.ca_endpoint.clone(),
        ca_server_name: server_name(&cli),
        citadel_namespace: cli.citadel_namespace.clone(),
        lifetimes: node_agent::identities::Lifetimes {
            trust_domain: cli.trust_domain.clone(),
            ttl: cli.secret_ttl,
            grace: cli.secret_refresh_grace_duration,
        },
    };
    let gateway = cli.enable_ingress_gateway_sds.then(|| node_agent::GatewayConfig {
        socket: cli.gateway_uds_path.clone(),
        namespace: cli.ingress_gateway_namespace.clone(),
    });
    let workload = cli.enable_workload_sds.then_some(config);
    node_agent::run_modes(workload, gateway, store.as_ref()).await
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    istio_runtime::init_logging(cli.log_as_json);
    istio_runtime::exit_on_error(run(cli).await);
}
