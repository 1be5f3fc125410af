//! `citadel`: parse flags (named as Istio 1.4's `istio_ca`'s), start Citadel, wait for a signal.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use citadel::authenticate::Authenticator;
use citadel::ca_server::CaServerSettings;
use citadel::dns_names::DnsNames;
use citadel::targeting::Targeting;
use citadel::workload_secret::Rotation;
use citadel::{CaSource, Config, ControllerSettings, StoreSource};
use clap::{ArgAction, Parser};
use istio_pki::token::{TokenVerifier, CITADEL_AUDIENCE, LOCAL_ISSUER};

#[derive(Debug, Parser)]
#[command(name = "citadel", version, about = "Istio Certificate Authority (CA).")]
struct Cli {
    /// Make (or reuse) a self-signed root kept in the Secret istio-ca-secret.
    #[arg(long = "self-signed-ca", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    self_signed_ca: bool,
    /// With --self-signed-ca: wait for istio-ca-secret instead of making it.
    #[arg(long = "read-signing-cert-only", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    read_signing_cert_only: bool,
    /// Plugged-in CA: the signing certificate (PEM).
    #[arg(long = "signing-cert")]
    signing_cert: Option<PathBuf>,
    /// Plugged-in CA: the signing key (PEM, PKCS#8 or PKCS#1).
    #[arg(long = "signing-key")]
    signing_key: Option<PathBuf>,
    /// Plugged-in CA: the certificates from the signing certificate towards the root.
    #[arg(long = "cert-chain")]
    cert_chain: Option<PathBuf>,
    /// The root certificate(s); with --self-signed-ca, more roots to trust.
    #[arg(long = "root-cert")]
    root_cert: Option<PathBuf>,
    /// Namespace of istio-ca-secret and istio-security, and the one ca.istio.io/env names.
    #[arg(long = "citadel-storage-namespace", default_value = "istio-system")]
    storage_namespace: String,
    /// Trust domain of the workload identities (spiffe://TRUST-DOMAIN/ns/NS/sa/SA).
    #[arg(long = "trust-domain", default_value = "")]
    trust_domain: String,
    /// Kubeconfig of the cluster (inside a pod the in-cluster account is used).
    #[arg(long = "kube-config")]
    kube_config: Option<PathBuf>,
    /// A directory store (the local platform's) instead of the Kubernetes API.
    #[arg(long = "configPath")]
    config_path: Option<PathBuf>,
    /// Namespaces always managed, comma-separated (default: the NAMESPACE variable).
    #[arg(long = "listened-namespaces", env = "NAMESPACE", default_value = "")]
    listened_namespaces: String,
    /// Lifetime of workload certificates.
    #[arg(long = "workload-cert-ttl", default_value = "2160h", value_parser = istio_duration::parse)]
    workload_cert_ttl: Duration,
    /// Longest lifetime a workload certificate may have.
    #[arg(long = "max-workload-cert-ttl", default_value = "2160h", value_parser = istio_duration::parse)]
    max_workload_cert_ttl: Duration,
    /// Share of a workload certificate's lifetime left when it is renewed, in [0, 1].
    #[arg(long = "workload-cert-grace-period-ratio", default_value_t = 0.5)]
    grace_period_ratio: f32,
    /// Renew workload certificates at least this long before they expire.
    #[arg(long = "workload-cert-min-grace-period", env = "CITADEL_WORKLOAD_CERT_MIN_GRACE_PERIOD", default_value = "10m", value_parser = istio_duration::parse)]
    min_grace_period: Duration,
    /// Lifetime of a new self-signed root.
    #[arg(long = "self-signed-ca-cert-ttl", env = "CITADEL_SELF_SIGNED_CA_CERT_TTL", default_value = "87600h", value_parser = istio_duration::parse)]
    self_signed_ca_cert_ttl: Duration,
    /// Manage namespaces that carry no ca.istio.io labels.
    #[arg(long = "enable-namespaces-by-default", env = "CITADEL_ENABLE_NAMESPACES_BY_DEFAULT", default_value_t = true, action = ArgAction::Set)]
    enable_namespaces_by_default: bool,
    /// Add the webhook services' DNS names to the injector's and Galley's certificates.
    #[arg(long = "append-dns-names", num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    append_dns_names: bool,
    /// More DNS names: ACCOUNT.NAMESPACE:DOMAIN, comma-separated.
    #[arg(long = "custom-dns-names", default_value = "")]
    custom_dns_names: String,
    /// Port of the CA API (gRPC over TLS); 0 serves none.
    #[arg(long = "grpc-port", default_value_t = istio_runtime::ports::CITADEL_GRPC)]
    grpc_port: u16,
    /// Names the CA API's own certificate carries, comma-separated (with istio-citadel.NS.svc.cluster.local).
    #[arg(long = "grpc-host-identities", default_value = "istio-ca,istio-citadel")]
    grpc_host_identities: String,
    /// Accept Kubernetes service-account tokens (TokenReview, audience istio-ca) on the CA API.
    #[arg(long = "sds-enabled", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    sds_enabled: bool,
    /// Serve the CA API only; write no workload Secrets.
    #[arg(long = "server-only", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    server_only: bool,
    /// Accept service-account tokens signed by this public key (PEM), as the local platform
    /// signs pods' tokens, on the CA API.
    #[arg(long = "service-account-key-file")]
    service_account_key_file: Option<PathBuf>,
    /// Port of the monitoring server (/metrics, /version, /ready).
    #[arg(long = "monitoring-port", default_value_t = istio_runtime::ports::MONITORING)]
    monitoring_port: u16,
    /// Address the servers bind.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Log as JSON lines.
    #[arg(long = "log_as_json")]
    log_as_json: bool,
}

/// The CA source the flags name, with Istio 1.4's messages for what is missing.
fn ca_source(cli: &Cli) -> anyhow::Result<CaSource> {
    if cli.self_signed_ca {
        return Ok(CaSource::SelfSigned {
            root_ttl: cli.self_signed_ca_cert_ttl,
            read_only: cli.read_signing_cert_only,
            extra_roots: cli.root_cert.clone(),
        });
    }
    let signing_cert = cli.signing_cert.clone().context(
        "No signing cert has been specified. Either specify a cert file via '-signing-cert' option or use '-self-signed-ca'",
    )?;
    let signing_key = cli.signing_key.clone().context(
        "No signing key has been specified. Either specify a key file via '-signing-key' option or use '-self-signed-ca'",
    )?;
    let root_cert = cli.root_cert.clone().context(
        "No root cert has been specified. Either specify a root cert file via '-root-cert' option or use '-self-signed-ca'",
    )?;
    Ok(CaSource::Plugged { signing_cert, signing_key, cert_chain: cli.cert_chain.clone(), root_cert })
}

/// The CA API's settings: its names, lifetimes and the ways callers may authenticate
/// (a client certificate always; tokens as the flags say).
fn ca_server_settings(cli: &Cli, store: &StoreSource, trust_domain: &str) -> anyhow::Result<Option<CaServerSettings>> {
    if cli.grpc_port == 0 {
        return Ok(None);
    }
    let mut hostnames: Vec<String> = cli
        .grpc_host_identities
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    hostnames.push(format!("istio-citadel.{}.svc.cluster.local", cli.storage_namespace));
    let mut authenticators = vec![Authenticator::ClientCertificate];
    if let Some(path) = &cli.service_account_key_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading --service-account-key-file {}", path.display()))?;
        let verifier = TokenVerifier::new(&pem, LOCAL_ISSUER, CITADEL_AUDIENCE)
            .with_context(|| format!("--service-account-key-file {}", path.display()))?;
        authenticators.push(Authenticator::LocalToken { verifier, trust_domain: trust_domain.to_string() });
    }
    if cli.sds_enabled {
        match store {
            StoreSource::Kubernetes(client) => authenticators
                .push(Authenticator::TokenReview { client: client.clone(), trust_domain: trust_domain.to_string() }),
            StoreSource::Directory(_) => tracing::warn!(
                "--sds-enabled: there is no API server to review tokens with a directory store; \
                 use --service-account-key-file"
            ),
        }
    }
    Ok(Some(CaServerSettings {
        address: SocketAddr::new(cli.bind_address, cli.grpc_port),
        hostnames,
        default_ttl: cli.workload_cert_ttl,
        max_ttl: cli.max_workload_cert_ttl,
        authenticators,
    }))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&cli.grace_period_ratio) {
        bail!("Workload cert grace period ratio {} is invalid. It should be within [0, 1]", cli.grace_period_ratio);
    }
    if !(0.2..=0.8).contains(&cli.grace_period_ratio) {
        tracing::warn!("grace period ratio {} is out of the recommended window [0.20, 0.80]", cli.grace_period_ratio);
    }
    if cli.workload_cert_ttl > cli.max_workload_cert_ttl {
        bail!(
            "--workload-cert-ttl {} is greater than --max-workload-cert-ttl {}",
            istio_duration::format(cli.workload_cert_ttl),
            istio_duration::format(cli.max_workload_cert_ttl)
        );
    }
    let ca = ca_source(&cli)?;
    let store = match &cli.config_path {
        Some(path) => StoreSource::Directory(path.clone()),
        None => StoreSource::Kubernetes(
            istio_config::store::kubernetes::client(cli.kube_config.as_deref())
                .await
                .context("citadel needs a store: --configPath DIR, --kube-config FILE, or to run inside a cluster")?,
        ),
    };
    let dns_names = if cli.append_dns_names {
        let (names, invalid) = DnsNames::new(&cli.storage_namespace, &cli.custom_dns_names);
        for entry in invalid {
            tracing::warn!("{entry}");
        }
        names
    } else {
        DnsNames::none()
    };
    let trust_domain = if cli.trust_domain.is_empty() { "cluster.local".to_string() } else { cli.trust_domain.clone() };
    let extra_roots = match (&ca, &cli.root_cert) {
        (CaSource::SelfSigned { .. }, Some(path)) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading --root-cert {}", path.display()))?)
        }
        _ => None,
    };
    let self_signed = matches!(ca, CaSource::SelfSigned { .. });
    let ca_server = ca_server_settings(&cli, &store, &trust_domain)?;
    let config = Config {
        store,
        ca,
        controller: ControllerSettings {
            targeting: Targeting {
                storage_namespace: cli.storage_namespace.clone(),
                enabled_by_default: cli.enable_namespaces_by_default,
                listened: cli
                    .listened_namespaces
                    .split(',')
                    .map(str::trim)
                    .filter(|namespace| !namespace.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
            dns_names,
            trust_domain,
            rotation: Rotation {
                ttl: cli.workload_cert_ttl,
                grace_ratio: cli.grace_period_ratio,
                min_grace: cli.min_grace_period,
            },
            self_signed,
            extra_roots,
        },
        monitoring_address: SocketAddr::new(cli.bind_address, cli.monitoring_port),
        ca_server,
        server_only: cli.server_only,
    };
    let running = citadel::start(config).await?;
    println!("citadel: monitoring on {}", running.monitoring_address);
    if let Some(address) = running.grpc_address {
        println!("citadel: CA API on {address}");
    }
    istio_runtime::shutdown_signal().await;
    running.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    istio_runtime::init_logging(cli.log_as_json);
    istio_runtime::exit_on_error(run(cli).await);
}
