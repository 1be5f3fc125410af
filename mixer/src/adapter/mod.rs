//! Adapters: what a handler does with the instances routed to it. Each adapter is built from
//! its handler's params (over the adapter's defaults) and the instances it will receive, and
//! checks its config then, so a bad handler is refused when config arrives, not per request.
//!
//! The adapters are 1.4's in-process ones for policy (`denier`, `listchecker`, `memquota`,
//! `redisquota`), telemetry (`prometheus`, `stdio`), `noop`, and the attribute generator
//! `kubernetesenv`.

pub mod api;
pub mod denier;
pub mod kubernetesenv;
pub mod list;
pub mod memquota;
pub mod noop;
pub mod prometheus;
pub mod redisquota;
pub mod stdio;

use std::sync::Arc;

use self::api::{BuildContext, BuildError, Handler};
use crate::template::Template;

/// The adapters Mixer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Adapter {
    Denier,
    ListChecker,
    MemQuota,
    RedisQuota,
    Prometheus,
    Stdio,
    Noop,
    KubernetesEnv,
}

impl Adapter {
    pub const ALL: [Adapter; 8] = [
        Adapter::Denier,
        Adapter::ListChecker,
        Adapter::MemQuota,
        Adapter::RedisQuota,
        Adapter::Prometheus,
        Adapter::Stdio,
        Adapter::Noop,
        Adapter::KubernetesEnv,
    ];

    /// By `compiledAdapter` name (also the legacy per-adapter kind).
    pub fn by_name(name: &str) -> Option<Adapter> {
        Adapter::ALL.into_iter().find(|adapter| adapter.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Adapter::Denier => "denier",
            Adapter::ListChecker => "listchecker",
            Adapter::MemQuota => "memquota",
            Adapter::RedisQuota => "redisquota",
            Adapter::Prometheus => "prometheus",
            Adapter::Stdio => "stdio",
            Adapter::Noop => "noop",
            Adapter::KubernetesEnv => "kubernetesenv",
        }
    }

    pub fn templates(self) -> &'static [Template] {
        match self {
            Adapter::Denier => &[Template::CheckNothing, Template::ListEntry, Template::Quota],
            Adapter::ListChecker => &[Template::ListEntry],
            Adapter::MemQuota | Adapter::RedisQuota => &[Template::Quota],
            Adapter::Prometheus => &[Template::Metric],
            Adapter::Stdio => &[Template::LogEntry, Template::Metric],
            Adapter::Noop => &[
                Template::Authorization,
                Template::CheckNothing,
                Template::ReportNothing,
                Template::ListEntry,
                Template::LogEntry,
                Template::Metric,
                Template::Quota,
                Template::TraceSpan,
            ],
            Adapter::KubernetesEnv => &[Template::Kubernetes],
        }
    }

    /// The proto an adapter's params decode into (for errors on unknown fields).
    pub fn params_proto(self) -> &'static str {
        match self {
            Adapter::Denier => "adapter.denier.config.Params",
            Adapter::ListChecker => "adapter.list.config.Params",
            Adapter::MemQuota => "adapter.memquota.config.Params",
            Adapter::RedisQuota => "adapter.redisquota.config.Params",
            Adapter::Prometheus => "adapter.prometheus.config.Params",
            Adapter::Stdio => "adapter.stdio.config.Params",
            Adapter::Noop => "google.protobuf.Struct",
            Adapter::KubernetesEnv => "adapter.kubernetesenv.config.Params",
        }
    }

    /// Checks the config and builds the handler.
    pub async fn build(self, context: &BuildContext<'_>) -> Result<Arc<dyn Handler>, BuildError> {
        match self {
            Adapter::Denier => denier::build(context).map(|handler| Arc::new(handler) as Arc<dyn Handler>),
            Adapter::ListChecker => list::build(context).await.map(|handler| handler as Arc<dyn Handler>),
            Adapter::MemQuota => memquota::build(context).map(|handler| handler as Arc<dyn Handler>),
            Adapter::RedisQuota => {
                redisquota::build(context).await.map(|handler| Arc::new(handler) as Arc<dyn Handler>)
            }
            Adapter::Prometheus => prometheus::build(context).await.map(|handler| handler as Arc<dyn Handler>),
            Adapter::Stdio => stdio::build(context).map(|handler| handler as Arc<dyn Handler>),
            Adapter::Noop => Ok(Arc::new(noop::Noop)),
            Adapter::KubernetesEnv => {
                kubernetesenv::build(context).await.map(|handler| Arc::new(handler) as Arc<dyn Handler>)
            }
        }
    }
}
