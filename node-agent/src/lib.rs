//! Istio 1.4's node agent (`node_agent_k8s`, the `sds` profile's `istio-nodeagent`
//! DaemonSet): per host, an SDS server on a Unix socket (`/var/run/sds/uds_path`) that proxies
//! mount. Each caller gets a certificate for the service account its token names, signed by
//! Citadel's CA API with that token ([`identities`]), as the secret `default`, with Citadel's
//! root as `ROOTCA`; certificates are renewed before they expire and pushed to open streams.
//! Workload keys never leave the node and `/etc/certs` stays empty.
//!
//! The root that Citadel's TLS certificate is checked against comes from the ConfigMap
//! `istio-security` (`caTLSRootCert`) that Citadel publishes in its namespace.
//!
//! In a gateway's pod ([`gateway`], 1.4's `ingress-sds` container) it serves the Secrets of the
//! gateway's namespace instead, by name, for Gateway servers' `credentialName`.

pub mod ca_client;
pub mod gateway;
pub mod identities;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use istio_config::object::ObjectKey;
use istio_config::store::Store;

/// The ConfigMap Citadel publishes its root in, and the key.
pub const SECURITY_CONFIG_MAP: &str = "istio-security";
pub const ROOT_CERT_KEY: &str = "caTLSRootCert";
/// How often to look for the root while it is not published yet.
const ROOT_POLL: Duration = Duration::from_secs(2);

/// The node agent's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The workload SDS socket (`--workloadUDSPath`).
    pub socket: PathBuf,
    /// Citadel's CA API, `host:port` (`CA_ADDR`).
    pub ca_endpoint: String,
    /// The name Citadel's certificate is checked for.
    pub ca_server_name: String,
    /// Citadel's namespace, where `istio-security` is.
    pub citadel_namespace: String,
    pub lifetimes: identities::Lifetimes,
}

/// Citadel's root, waiting until it is published.
pub async fn citadel_root(store: &dyn Store, namespace: &str) -> String {
    let key = ObjectKey {
        group: String::new(),
        kind: "ConfigMap".into(),
        namespace: namespace.to_string(),
        name: SECURITY_CONFIG_MAP.into(),
    };
    let mut told = false;
    loop {
        let found = store.get(&key).await;
        let encoded = found
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .and_then(|config_map| config_map.body.get("data")?.get(ROOT_CERT_KEY)?.as_str().map(str::to_string));
        if let Some(root) = encoded
            .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
        {
            return root;
        }
        if !told {
            tracing::info!("waiting for ConfigMap {namespace}/{SECURITY_CONFIG_MAP} ({ROOT_CERT_KEY}) from Citadel");
            told = true;
        }
        tokio::time::sleep(ROOT_POLL).await;
    }
}

/// The ingress-gateway mode's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The gateway's SDS socket (`--gatewayUdsPath`).
    pub socket: PathBuf,
    /// Whose Secrets are served (`INGRESS_GATEWAY_NAMESPACE`).
    pub namespace: String,
}

/// Runs the enabled modes until a shutdown signal, or until one of them fails.
pub async fn run_modes(
    workload: Option<Config>,
    gateway: Option<GatewayConfig>,
    store: &dyn Store,
) -> anyhow::Result<()> {
    let workloads = async {
        match workload {
            Some(config) => run(config, store, istio_runtime::shutdown_signal()).await,
            None => Ok(()),
        }
    };
    let gateways = async {
        match &gateway {
            Some(config) => {
                gateway::run(&config.socket, &config.namespace, store, istio_runtime::shutdown_signal()).await
            }
            None => Ok(()),
        }
    };
    tokio::try_join!(workloads, gateways)?;
    Ok(())
}

/// Serves workloads on the socket until `shutdown` resolves.
pub async fn run(
    config: Config,
    store: &dyn Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let root = citadel_root(store, &config.citadel_namespace).await;
    let ca = ca_client::CitadelClient::new(&config.ca_endpoint, &config.ca_server_name, &root)?;
    let provider = identities::Identities::new(ca, config.lifetimes.clone());
    let server = istio_sds::server::serve_unix(&config.socket, provider, shutdown).await?;
    println!("node-agent: SDS on {}", config.socket.display());
    tracing::info!("serving workload certificates on {} (CA {})", config.socket.display(), config.ca_endpoint);
    server.await?;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
