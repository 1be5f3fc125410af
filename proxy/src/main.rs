//! `proxy` entry point: parse flags and run the chosen command.

use clap::{Parser, Subcommand};
use proxy::agent::args::AgentArgs;
use proxy::agent::node::Role;

#[derive(Debug, Parser)]
#[command(name = "proxy", version, about = "The istio-rs sidecar and gateway proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as a workload's sidecar (what the injector's istio-proxy container runs).
    Sidecar(Box<AgentArgs>),
    /// Run as a gateway (ingress or egress).
    Router(Box<AgentArgs>),
    /// Run the built-in data plane on a static Envoy v3 bootstrap (YAML or JSON), without the agent.
    Run(proxy::run::RunArgs),
    /// Send a request to the local admin API and print the answer, e.g. `proxy request GET config_dump`.
    Request(proxy::request::RequestArgs),
    /// Install the traffic-capture rules (what 1.4's istio-init container runs).
    Iptables(Box<proxy::iptables::IptablesArgs>),
    /// Remove the rules `iptables` installed.
    #[command(name = "clean-iptables")]
    CleanIptables(proxy::iptables::CleanArgs),
}

fn main() {
    // pilot-agent took `proxy sidecar|router`; the injected args keep that word, so
    // `proxy proxy sidecar …` means `proxy sidecar …`.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|word| word == "proxy") {
        argv.remove(1);
    }
    let cli = Cli::parse_from(argv);
    // The proxy only reads and shows the parts of Envoy's API a data plane uses.
    istio_xds::json::use_data_plane_subset();
    let result = match cli.command {
        Command::Sidecar(args) => run_agent(Role::Sidecar, *args),
        Command::Router(args) => run_agent(Role::Router, *args),
        Command::Run(args) => {
            istio_runtime::init_logging(false);
            runtime().and_then(|runtime| runtime.block_on(proxy::run::run(&args)))
        }
        Command::Request(args) => {
            runtime().and_then(|runtime| runtime.block_on(proxy::request::run(&args))).map(|body| {
                print!("{body}");
            })
        }
        Command::Iptables(args) => proxy::iptables::install(&args),
        Command::CleanIptables(args) => proxy::iptables::clean(&args),
    };
    istio_runtime::exit_on_error(result);
}

fn run_agent(role: Role, args: AgentArgs) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", proxy::agent::log_filter(&args.log_output_level));
    }
    istio_runtime::init_logging(false);
    runtime()?.block_on(proxy::agent::run(role, args))
}

/// The runtime of everything but traffic (the agent, xDS, SDS, the admin API): one thread.
/// `--concurrency` sizes the built-in data plane's workers instead, as it sizes Envoy's.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}
