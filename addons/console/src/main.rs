//! `istio-console`: parse flags, start the mesh console, wait for a signal.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "istio-console",
    version,
    about = "The mesh console: service graph, dashboards, traces, config status."
)]
struct Args {
    /// Address to bind.
    #[arg(long = "address", default_value = "0.0.0.0")]
    address: String,
    /// Port to serve on (Kiali's).
    #[arg(long = "port", default_value_t = 20001)]
    port: u16,
    /// Prometheus' URL (`http://prometheus.istio-system:9090`).
    #[arg(long = "prometheus")]
    prometheus: Option<String>,
    /// The trace collector's Zipkin URL (`http://zipkin.istio-system:9411`).
    #[arg(long = "zipkin")]
    zipkin: Option<String>,
    /// Pilot's debug URL (`http://istio-pilot.istio-system:8080`).
    #[arg(long = "pilot")]
    pilot: Option<String>,
    /// Log as JSON lines.
    #[arg(long = "log_as_json", default_value_t = false)]
    log_as_json: bool,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let address: IpAddr =
        args.address.parse().with_context(|| format!("--address {:?} is not an IP address", args.address))?;
    let sources = istio_console::sources::Sources::new(args.prometheus, args.zipkin, args.pilot);
    let running = istio_console::start(SocketAddr::new(address, args.port), sources).await?;
    println!("istio-console: serving on http://{}", running.address);
    istio_runtime::shutdown_signal().await;
    running.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    istio_runtime::init_logging(args.log_as_json);
    istio_runtime::exit_on_error(run(args).await);
}
