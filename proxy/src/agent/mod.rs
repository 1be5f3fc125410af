//! `proxy sidecar` and `proxy router`: pilot-agent's job. Works out the node's identity, builds
//! the Envoy bootstrap, serves the status port, and runs the data plane on that bootstrap — the
//! built-in one, or a stock Envoy when `--binaryPath` is given — until SIGTERM or
//! `/quitquitquit`, then drains it.

pub mod args;
pub(crate) mod bootstrap;
pub(crate) mod envoy;
pub mod node;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use istio_runtime::Shutdown;

use crate::http_client::Admin;
use crate::status::{self, StatusConfig};
use args::AgentArgs;
use node::{NodeIdentity, Role};

/// The bootstrap file name 1.4 used (`envoy-rev<epoch>.json`).
pub const BOOTSTRAP_FILE: &str = "envoy-rev0.json";

/// Runs the agent until it is told to stop.
pub async fn run(role: Role, args: AgentArgs) -> anyhow::Result<()> {
    args.validate().map_err(|error| anyhow!(error))?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let node = NodeIdentity::build(role, &args, &env).map_err(|error| anyhow!(error))?;
    tracing::info!(node = %node.id, cluster = %node.cluster, "proxy {} starting", role.as_str());
    let admin = Admin { port: args.proxy_admin_port };

    let shutdown = Arc::new(Shutdown::default());
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        istio_runtime::shutdown_signal().await;
        tracing::info!("received a stop signal; draining");
        signal_shutdown.trigger();
    });

    let status_task = if args.status_port > 0 {
        let probers = status::parse_app_probers(&std::env::var(status::APP_PROBERS_ENV).unwrap_or_default())
            .map_err(|error| anyhow!(error))?;
        let config = StatusConfig {
            role,
            admin,
            application_ports: args.application_ports().map_err(|error| anyhow!(error))?,
            app_probers: probers,
        };
        let quit = shutdown.clone();
        let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.status_port));
        let (bound, task) = status::serve(address, config, move || quit.trigger(), shutdown.wait()).await?;
        tracing::info!("status server on {bound}");
        Some(task)
    } else {
        None
    };

    let result = match &args.binary_path {
        Some(binary) => {
            let (node, args) = certificates_over_sds(node.clone(), &args, shutdown.clone())
                .await?
                .unwrap_or_else(|| (node.clone(), args.clone()));
            let bootstrap = write_bootstrap(&node, &args)?;
            let options = envoy::EnvoyOptions {
                binary: binary.clone(),
                bootstrap,
                admin,
                log_level: args.proxy_log_level.clone(),
                component_log_level: args.proxy_component_log_level.clone(),
                concurrency: args.concurrency,
                drain_duration: args.drain_duration,
                parent_shutdown_duration: args.parent_shutdown_duration,
            };
            envoy::supervise(options, shutdown.wait()).await
        }
        None => run_builtin(&node, &args, shutdown.clone()).await,
    };
    shutdown.trigger();
    if let Some(task) = status_task {
        let _ = task.await;
    }
    result
}

/// Where a pod's workload certificates are mounted (the `istio.<sa>` Secret).
const CERT_DIR: &str = istio_pki::files::DEFAULT_DIR;
/// The agent's own SDS socket, in its config directory.
const AGENT_SDS_SOCKET: &str = "SDS";
/// How often the agent looks at the mounted certificates.
const CERT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// For a stock Envoy with mounted certificates (and no node agent): serves them over SDS from a
/// socket in `--configPath`, following their rotation, and returns the node (marked `SDS` and
/// `AGENT_SDS`, so Pilot names the secrets `default` and `ROOTCA` from `sds-grpc` instead of
/// the files) and the arguments
/// pointing the bootstrap's `sds-grpc` cluster at that socket. Envoy thus gets every new
/// certificate without a restart, where 1.4's agent restarted it. `None` when the node already
/// uses SDS or there is no certificate directory.
async fn certificates_over_sds(
    mut node: NodeIdentity,
    args: &AgentArgs,
    shutdown: Arc<Shutdown>,
) -> anyhow::Result<Option<(NodeIdentity, AgentArgs)>> {
    if node.sds() || !std::path::Path::new(CERT_DIR).is_dir() {
        return Ok(None);
    }
    let socket = args.config_path.join(AGENT_SDS_SOCKET);
    let secrets = istio_sds::files::follow(PathBuf::from(CERT_DIR), CERT_POLL);
    istio_sds::server::serve_unix(&socket, istio_sds::SharedSecrets(secrets), shutdown.wait()).await?;
    tracing::info!("serving {CERT_DIR} to Envoy over SDS on {}", socket.display());
    node.metadata.insert("SDS".to_string(), serde_json::Value::String("true".to_string()));
    // The agent serves them, not a node agent: Pilot keeps to `sds-grpc` even when the mesh
    // names a node agent's socket (a gateway without the node agent's mount).
    node.metadata.insert("AGENT_SDS".to_string(), serde_json::Value::String("true".to_string()));
    let mut args = args.clone();
    args.sds_uds_path = format!("unix:{}", socket.display());
    Ok(Some((node, args)))
}

/// Runs the built-in data plane on the same bootstrap Envoy would get, until told to stop,
/// then drains it for up to `--drainDuration`.
async fn run_builtin(node: &NodeIdentity, args: &AgentArgs, shutdown: Arc<Shutdown>) -> anyhow::Result<()> {
    let bootstrap = bootstrap::bootstrap(node, args).map_err(|error| anyhow!(error))?;
    // Written for whoever debugs the pod, as with Envoy; the data plane reads it from memory.
    if let Err(error) = write_bootstrap(node, args) {
        tracing::warn!("could not write the bootstrap for reference: {error:#}");
    }
    let bootstrap = crate::dataplane::config_dump::with_descriptors(|| {
        istio_xds::json::message_from_json(&bootstrap).map_err(|error| format!("the generated bootstrap: {error}"))
    })
    .map_err(|error| anyhow!(error))?;
    let data_plane = crate::dataplane::DataPlane::start(bootstrap, args.concurrency).await?;
    tracing::info!("data plane admin API on {}", data_plane.admin_address);
    let quit = data_plane.shared.clone();
    tokio::select! {
        () = shutdown.wait() => {}
        () = quit.quit.notified() => shutdown.trigger(),
    }
    tracing::info!("draining for up to {:?}", args.drain_duration);
    data_plane.drain_and_stop(args.drain_duration).await;
    Ok(())
}

/// Writes the Envoy bootstrap into `--configPath` (or uses `--customConfigFile`) and returns its path.
fn write_bootstrap(node: &NodeIdentity, args: &AgentArgs) -> anyhow::Result<PathBuf> {
    if let Some(custom) = &args.custom_config_file {
        return Ok(custom.clone());
    }
    let bootstrap = bootstrap::bootstrap(node, args).map_err(|error| anyhow!(error))?;
    std::fs::create_dir_all(&args.config_path)
        .with_context(|| format!("creating --configPath {}", args.config_path.display()))?;
    let path = args.config_path.join(BOOTSTRAP_FILE);
    let text = serde_json::to_string_pretty(&bootstrap)?;
    std::fs::write(&path, text).with_context(|| format!("writing the bootstrap {}", path.display()))?;
    tracing::info!("wrote the Envoy bootstrap {}", path.display());
    Ok(path)
}

/// Turns 1.4's `--log_output_level` (`default:info,ads:debug`) into a tracing filter: the
/// `default` scope sets the level; Go scope names have no counterpart here and are ignored.
pub fn log_filter(log_output_level: &str) -> String {
    let level = log_output_level
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .find(|(scope, _)| scope.trim() == "default")
        .map(|(_, level)| level.trim())
        .unwrap_or("info");
    match level {
        "warning" => "warn",
        "none" => "off",
        "fatal" => "error",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_map_from_istio_scopes() {
        assert_eq!(log_filter("default:info"), "info");
        assert_eq!(log_filter("ads:debug,default:warning"), "warn");
        assert_eq!(log_filter(""), "info");
    }
}
