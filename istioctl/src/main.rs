//! istioctl entry point: parse flags, run the command, exit with its code.

use clap::Parser;

fn main() {
    let cli = istioctl::Cli::parse();
    match istioctl::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::exit(2);
        }
    }
}
