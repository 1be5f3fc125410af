//! `istio-tracing`: parse flags, start the trace collector, wait for a signal.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "istio-tracing", version, about = "Collects spans (Zipkin v2, OTLP) and answers Zipkin's query API.")]
struct Args {
    /// Address every server binds.
    #[arg(long = "address", default_value = "0.0.0.0")]
    address: String,
    /// Zipkin's port: span collection and the v2 query API.
    #[arg(long = "zipkinPort", default_value_t = 9411)]
    zipkin_port: u16,
    /// OTLP over gRPC.
    #[arg(long = "otlpGrpcPort", default_value_t = 4317)]
    otlp_grpc_port: u16,
    /// OTLP over HTTP.
    #[arg(long = "otlpHttpPort", default_value_t = 4318)]
    otlp_http_port: u16,
    /// Spans kept in memory before the oldest traces are dropped (Zipkin's MEM_MAX_SPANS).
    #[arg(long = "maxSpans", default_value_t = 500_000)]
    max_spans: usize,
    /// Log as JSON lines.
    #[arg(long = "log_as_json", default_value_t = false)]
    log_as_json: bool,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let address: IpAddr =
        args.address.parse().with_context(|| format!("--address {:?} is not an IP address", args.address))?;
    let running = istio_tracing::start(istio_tracing::Config {
        zipkin_address: SocketAddr::new(address, args.zipkin_port),
        otlp_grpc_address: SocketAddr::new(address, args.otlp_grpc_port),
        otlp_http_address: SocketAddr::new(address, args.otlp_http_port),
        max_spans: args.max_spans,
    })
    .await?;
    println!(
        "istio-tracing: Zipkin on {}, OTLP gRPC on {}, OTLP HTTP on {}",
        running.zipkin_address, running.otlp_grpc_address, running.otlp_http_address
    );
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
