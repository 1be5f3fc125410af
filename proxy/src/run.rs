//! `proxy run --config-file FILE`: the built-in data plane on a static Envoy v3 bootstrap
//! (YAML or JSON, the same file `envoy -c` takes), with no agent and, unless the file names an
//! ADS server, no control plane.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

use crate::dataplane::DataPlane;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The bootstrap file.
    #[arg(long = "config-file", short = 'c')]
    pub config_file: PathBuf,
    /// Worker threads; 0 means one per core.
    #[arg(long = "concurrency", default_value_t = 0)]
    pub concurrency: usize,
    /// How long to drain on SIGTERM.
    #[arg(long = "drain-time-s", default_value_t = 5)]
    pub drain_time_seconds: u64,
}

/// Reads a bootstrap file; errors name the file and the field.
pub fn read_bootstrap(path: &std::path::Path) -> anyhow::Result<Bootstrap> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|extension| extension == "json") {
        serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display())).and_then(|value| {
            istio_xds::json::message_from_json(&value).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
        })
    } else {
        istio_xds::json::message_from_yaml(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
    };
    parsed
}

pub async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let bootstrap = crate::dataplane::config_dump::with_descriptors(|| {
        read_bootstrap(&args.config_file).map_err(|e| format!("{e:#}"))
    })
    .map_err(anyhow::Error::msg)?;
    let data_plane = DataPlane::start(bootstrap, args.concurrency)
        .await
        .with_context(|| format!("{}", args.config_file.display()))?;
    // The banner tests and scripts read to find the admin port.
    println!("proxy: admin on {}", data_plane.admin_address);
    let quit = data_plane.shared.clone();
    tokio::select! {
        () = istio_runtime::shutdown_signal() => {}
        () = quit.quit.notified() => {}
    }
    data_plane.drain_and_stop(Duration::from_secs(args.drain_time_seconds)).await;
    Ok(())
}
