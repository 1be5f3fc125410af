//! istioctl: the command line of istio-rs. Each subcommand lives in its own module; `main.rs`
//! only parses flags and runs the chosen command.

pub mod validate;

use clap::{Parser, Subcommand};

/// Command-line interface of istioctl.
#[derive(Debug, Parser)]
#[command(name = "istioctl", version, about = "Istio control interface (istio-rs)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate Istio config files offline, with the same rules Galley's webhook applies.
    Validate(validate::ValidateArgs),
}

/// Runs a parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
    }
}
