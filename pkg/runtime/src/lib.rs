//! Pieces every istio-rs component shares: logging setup, Go-style durations, the monitoring HTTP server
//! (`/metrics`, `/version` on 15014), TLS server configs from PEM files, Istio's well-known
//! ports, and waiting for a shutdown signal. No component logic lives here.

pub mod duration;
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

/// Stops a component's servers and tasks: `trigger` once, and every `wait` resolves.
#[derive(Debug)]
pub struct Shutdown {
    sender: tokio::sync::watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { sender: tokio::sync::watch::channel(false).0 }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once `trigger` has been called (at once if it already was).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}
