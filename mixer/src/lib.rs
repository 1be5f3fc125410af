//! Mixer: the component that decides whether a request may proceed and hears what happened.
//! Proxies send it bags of attributes (`Check` before a request, `Report` after); operators
//! program it with handlers (configured adapters), instances (what to build from the attributes)
//! and rules (when to send which instances to which handler).
//!
//! This crate is 1.4's `mixs server`: config from a directory, Galley over MCP or Kubernetes is
//! compiled into a routing table ([`table`]) that requests are dispatched against
//! ([`dispatch`]), served over gRPC ([`api`]; for stock Envoys, Envoy's external authorization,
//! [`ext_authz`], and its access log service for reports, [`access_log`]) with metrics on the
//! monitoring port.

pub mod access_log;
pub mod adapter;
pub mod api;
pub mod dispatch;
pub mod env;
pub mod ext_authz;
pub mod metrics;
pub mod pods;
pub mod source;
pub mod status;
pub mod table;
pub mod template;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use istio_config::accepted::{next_batch, AcceptedObjects, Applied};
use istio_config::store::Event;

pub use crate::env::Environment;
use crate::metrics::Metrics;
use crate::source::ConfigStore;
use crate::table::{SharedTable, Table};

/// How Mixer runs.
#[derive(Clone)]
pub struct Config {
    pub store: ConfigStore,
    pub api_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    /// Rules in this namespace apply to every namespace.
    pub default_namespace: String,
    /// Read the legacy per-adapter and per-template kinds.
    pub legacy_kinds: bool,
    pub environment: Environment,
    pub kubernetes: Option<kube::Client>,
    pub max_message_size: usize,
    pub max_concurrent_streams: u32,
}

/// A started Mixer.
pub struct Running {
    pub api_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    pub table: SharedTable,
    shutdown: tokio::sync::broadcast::Sender<()>,
}

impl Running {
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(());
    }
}

/// How long config must be quiet before a new table is built, and the longest wait.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(100);
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// A handler that could not be built (a Redis not up yet) is tried again this often.
const REBUILD_FAILED_AFTER: Duration = Duration::from_secs(5);

/// Starts Mixer: the config loop, the gRPC API and the monitoring server.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let registry = istio_runtime::monitoring::registry();
    metrics.register(&mut istio_runtime::sync::lock(&registry));
    let grpc_metrics = istio_runtime::grpc_metrics::GrpcServerMetrics::register(
        &mut istio_runtime::sync::lock(&registry),
        istio_runtime::grpc_metrics::Naming::OpenCensus,
        &[],
    );
    let table: SharedTable = Arc::new(arc_swap::ArcSwap::from_pointee(Table::default()));
    let (shutdown, _) = tokio::sync::broadcast::channel(1);

    let sink_metrics = istio_mcp::sink::SinkMetrics::register(&mut istio_runtime::sync::lock(&registry), "mixer");
    let followed = source::follow(&config.store, config.legacy_kinds, config.kubernetes.clone(), sink_metrics).await?;
    tokio::spawn(config_loop(
        followed,
        config.store.validates(),
        config.legacy_kinds,
        table.clone(),
        metrics.clone(),
        config.environment.clone(),
        config.default_namespace.clone(),
    ));

    let service = api::MixerService { table: table.clone(), metrics: metrics.clone() };
    let (listener, api_address) = istio_runtime::listen::bind(config.api_address).await?;
    let mut stop = shutdown.subscribe();
    let mixer_server = istio_api::pb::istio::mixer::v1::mixer_server::MixerServer::new(service)
        .max_decoding_message_size(config.max_message_size);
    let ext_authz =
        envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer::new(api::MixerService {
            table: table.clone(),
            metrics: metrics.clone(),
        })
        .max_decoding_message_size(config.max_message_size);
    let access_logs =
        envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer::new(
            api::MixerService { table: table.clone(), metrics: metrics.clone() },
        )
        .max_decoding_message_size(config.max_message_size);
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(config.max_concurrent_streams)
        .layer(grpc_metrics)
        .add_service(mixer_server)
        .add_service(ext_authz)
        .add_service(access_logs);
    tokio::spawn(async move {
        // Checks are small request/response exchanges: without TCP_NODELAY an answer can wait
        // for the caller's delayed ACK.
        let incoming =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |stream| {
                if let Ok(stream) = &stream {
                    let _ = stream.set_nodelay(true);
                }
                stream
            });
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.recv().await;
            })
            .await
        {
            tracing::warn!(%error, "mixer API stopped");
        }
    });

    let mut stop = shutdown.subscribe();
    let monitoring_address = istio_runtime::monitoring::serve(
        config.monitoring_address,
        istio_runtime::monitoring::router(registry, "mixer"),
        async move {
            let _ = stop.recv().await;
        },
    )
    .await?;
    Ok(Running { api_address, monitoring_address, table, shutdown })
}

/// Keeps the table current: accepted objects, debounced, compiled, swapped in.
async fn config_loop(
    followed: source::Followed,
    validate: bool,
    legacy: bool,
    table: SharedTable,
    metrics: Arc<Metrics>,
    environment: Environment,
    default_namespace: String,
) {
    let source::Followed { mut events, store: _store } = followed;
    let mut accepted = AcceptedObjects::new(validate, |_| false);
    let mut next_id = 1;
    let mut retry_failed = false;
    loop {
        let relevant = |event: &Event| match event {
            Event::Added(object) | Event::Modified(object) | Event::Deleted(object) => {
                object.istio_kind().is_some_and(|kind| kind.group == "config.istio.io" && (legacy || !kind.legacy))
            }
            Event::Synced | Event::SourceError { .. } => true,
        };
        let batch = next_batch(&mut events, DEBOUNCE_QUIET, DEBOUNCE_MAX, |event| {
            relevant(&event) && matches!(accepted.apply(event), Applied::Changed)
        });
        let changed = if retry_failed {
            match tokio::time::timeout(REBUILD_FAILED_AFTER, batch).await {
                Ok(None) => return,
                Ok(Some(changed)) => changed,
                Err(_) => true,
            }
        } else {
            match batch.await {
                None => return,
                Some(changed) => changed,
            }
        };
        if !changed || !accepted.synced() {
            continue;
        }
        let previous = table.load_full();
        let compiled =
            table::compile(next_id, accepted.objects(), Some(&previous), &environment, &default_namespace).await;
        next_id += 1;
        tracing::info!(
            id = compiled.id,
            rules = compiled.counts.rules,
            handlers = compiled.counts.handlers,
            instances = compiled.counts.instances,
            errors = compiled.errors.len(),
            "mixer config installed"
        );
        retry_failed = compiled.has_build_failures();
        metrics.table_installed(&compiled, &previous);
        table.store(Arc::new(compiled));
    }
}
