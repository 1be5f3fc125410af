//! `sidecar-injector`: parse flags (named as in Istio 1.4), start the webhook, wait for a signal.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use istio_inject::ConfigFiles;
use sidecar_injector::{CaBundlePatching, Settings};

#[derive(Debug, Parser)]
#[command(name = "sidecar-injector", version, about = "The istio-rs sidecar injector (mutating admission webhook)")]
struct Cli {
    /// Injector config: the `config` key of the istio-sidecar-injector ConfigMap (YAML).
    #[arg(long = "injectConfig", default_value = "/etc/istio/inject/config")]
    inject_config: PathBuf,
    /// Helm values: the `values` key of the ConfigMap (JSON or YAML).
    #[arg(long = "valuesFile")]
    values_file: Option<PathBuf>,
    /// Mesh config file (the `mesh` key of the `istio` ConfigMap).
    #[arg(long = "meshConfig")]
    mesh_config: Option<PathBuf>,
    /// Certificate chain the webhook presents (PEM).
    #[arg(long = "tlsCertFile", default_value = "/etc/istio/certs/cert-chain.pem")]
    tls_cert_file: PathBuf,
    /// Private key of the webhook certificate (PEM).
    #[arg(long = "tlsKeyFile", default_value = "/etc/istio/certs/key.pem")]
    tls_key_file: PathBuf,
    /// Webhook port (HTTPS).
    #[arg(long = "port", default_value_t = istio_runtime::ports::WEBHOOK)]
    port: u16,
    /// Address the webhook and monitoring servers bind.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the monitoring server (`/metrics`, `/version`).
    #[arg(long = "monitoringPort", default_value_t = istio_runtime::ports::MONITORING)]
    monitoring_port: u16,
    /// How often the config files are checked for changes (Go duration).
    #[arg(long = "reloadInterval", default_value = "1s", value_parser = istio_duration::parse)]
    reload_interval: Duration,
    /// The MutatingWebhookConfiguration whose CA bundle the injector keeps (on Kubernetes:
    /// inside a cluster, or with --kubeconfig); empty: none.
    #[arg(long = "webhookConfigName", default_value = "istio-sidecar-injector")]
    webhook_config_name: String,
    /// The CA certificate that signed the webhook's certificate: the configuration's caBundle.
    #[arg(long = "caCertFile", default_value = "/etc/istio/certs/root-cert.pem")]
    ca_cert_file: PathBuf,
    /// Kubeconfig of the cluster (outside it); inside, the pod's service account is used.
    #[arg(long = "kubeconfig")]
    kubeconfig: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long = "log_as_json")]
    log_as_json: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    istio_runtime::init_logging(cli.log_as_json);
    let settings = Settings {
        files: ConfigFiles {
            inject_config: Some(cli.inject_config),
            values: cli.values_file,
            mesh_config: cli.mesh_config,
        },
        webhook_address: SocketAddr::new(cli.bind_address, cli.port),
        cert_chain: cli.tls_cert_file,
        key: cli.tls_key_file,
        monitoring_address: SocketAddr::new(cli.bind_address, cli.monitoring_port),
        reload_interval: cli.reload_interval,
        // Only on Kubernetes: inside a cluster, or pointed at one.
        ca_bundle: (!cli.webhook_config_name.is_empty()
            && (cli.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()))
        .then_some(CaBundlePatching { webhook_config_name: cli.webhook_config_name, ca_cert_file: cli.ca_cert_file }),
        kubeconfig: cli.kubeconfig,
    };
    let started = sidecar_injector::start(settings).await;
    if let Ok(running) = &started {
        println!(
            "sidecar-injector: webhook on {}, monitoring on {}",
            running.webhook_address, running.monitoring_address
        );
        istio_runtime::shutdown_signal().await;
        running.shutdown();
    }
    istio_runtime::exit_on_error(started.map(drop));
}
