//! `proxy` entry point: parse flags and run the chosen command.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "proxy", version, about = "The istio-rs sidecar and gateway proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the traffic-capture rules (what 1.4's istio-init container runs).
    Iptables(Box<proxy::iptables::IptablesArgs>),
    /// Remove the rules `iptables` installed.
    #[command(name = "clean-iptables")]
    CleanIptables(proxy::iptables::CleanArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Iptables(args) => proxy::iptables::install(&args),
        Command::CleanIptables(args) => proxy::iptables::clean(&args),
    };
    if let Err(error) = result {
        eprintln!("Error: {error:#}");
        std::process::exit(1);
    }
}
