//! Pieces every istio-rs component shares: logging setup, the monitoring HTTP server
//! (`/metrics`, `/version` on 15014), TLS server configs from PEM files, Istio's well-known
//! ports, and waiting for a shutdown signal. No component logic lives here.

pub mod monitoring;
pub mod ports;
pub mod tls;

/// Starts logging to stderr; `RUST_LOG` selects levels (default `info`). `json` selects JSON lines.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests, embedded use) is harmless; keep the first.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The version string components report at `/version` and in `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
