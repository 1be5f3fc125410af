//! Pieces every istio-rs component shares: logging setup, the monitoring HTTP server
//! (`/metrics`, `/version` on 15014), TLS server configs from PEM files, Istio's well-known
//! ports, and waiting for a shutdown signal. No component logic lives here.

pub mod backoff;
pub mod grpc_metrics;
pub mod https;
pub mod listen;
pub mod metrics;
pub mod monitoring;
pub mod ports;
pub mod sync;
pub mod tls;

/// Starts logging to stderr; `RUST_LOG` selects levels (default `info`). `json` selects JSON lines.
/// The levels can be changed later through [`set_log_levels`].
pub fn init_logging(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("RUST_LOG").ok().filter(|text| !text.is_empty()).unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // A second initialisation (tests, embedded use) is harmless; keep the first.
    let initialised = if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
    } else {
        // Colours only on a terminal; logs written to files stay plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()
    };
    if initialised.is_ok() {
        let _ = LOG_LEVELS.set(LogLevels { handle, current: std::sync::Mutex::new(directives) });
    }
}

type FilterHandle = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

struct LogLevels {
    handle: FilterHandle,
    current: std::sync::Mutex<String>,
}

static LOG_LEVELS: std::sync::OnceLock<LogLevels> = std::sync::OnceLock::new();

/// The log directives in force (`RUST_LOG` syntax), if logging was set up by [`init_logging`].
pub fn log_levels() -> Option<String> {
    LOG_LEVELS.get().map(|levels| sync::lock(&levels.current).clone())
}

/// Why log levels could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    #[error("logging was not set up")]
    NotSetUp,
    #[error("{directives:?}: {source}")]
    Directives { directives: String, source: tracing_subscriber::filter::ParseError },
    #[error(transparent)]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Replaces the log directives at run time (`info`, `warn,proxy::dataplane::http=debug`, …).
pub fn set_log_levels(directives: &str) -> Result<(), LogLevelError> {
    let levels = LOG_LEVELS.get().ok_or(LogLevelError::NotSetUp)?;
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .map_err(|source| LogLevelError::Directives { directives: directives.to_string(), source })?;
    levels.handle.reload(filter)?;
    *sync::lock(&levels.current) = directives.to_string();
    Ok(())
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

/// Ends a command-line program on failure: prints `Error: ` and the error with its causes to
/// stderr and exits with status 1. Success returns.
pub fn exit_on_error<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(error) = result {
        eprintln!("Error: {error:#}");
        std::process::exit(1);
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
