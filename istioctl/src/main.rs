//! istioctl entry point: parse flags, run the command, exit with its code.

use clap::Parser;

fn main() {
    // Output piped into a reader that stops early (`| head`) ends the program quietly, with
    // the status a shell gives a process killed by SIGPIPE, as other command-line tools do.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = istioctl::Cli::parse();
    match istioctl::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::exit(2);
        }
    }
}
