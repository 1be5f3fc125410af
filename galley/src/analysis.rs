//! Galley's continuous analysis (`--enableAnalysis`): after each published snapshot the
//! analyzers `istioctl x analyze` uses run over the accepted config and the cluster's
//! namespaces, services and pods. When the findings change, Galley logs each message (as
//! `istioctl x analyze` prints it) and serves the current list as JSON at `/debug/analysis`
//! on its monitoring port. On Kubernetes it also writes them to the objects'
//! `status.validationMessages`, as 1.4's did (`status.rs`).

use std::sync::{Arc, RwLock};

use axum::routing::get;
use axum::{Json, Router};
use istio_config::analysis::{self, Analyzer, Message, Options, Snapshot};
use istio_config::object::Object;

use crate::status::StatusWriter;

/// The analyzers and the latest findings.
pub(crate) struct Analysis {
    analyzers: Vec<Analyzer>,
    latest: RwLock<Vec<Message>>,
    /// On Kubernetes, where the findings are written back.
    status: Option<StatusWriter>,
}

impl Analysis {
    pub(crate) fn new(status: Option<StatusWriter>) -> Arc<Analysis> {
        Arc::new(Analysis { analyzers: analysis::all(), latest: RwLock::new(Vec::new()), status })
    }

    /// Analyses `objects`; logs and keeps the findings when they differ from the last ones.
    pub(crate) fn run<'a>(&self, objects: impl Iterator<Item = &'a Object>) {
        let snapshot = Snapshot::new(objects.cloned(), true);
        let result =
            analysis::analyze(&self.analyzers, &snapshot, &Options { discovery: true, namespaces: Vec::new() });
        let mut latest = self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *latest == result.messages {
            return;
        }
        if result.messages.is_empty() {
            tracing::info!("analysis: no validation issues found");
        }
        for message in &result.messages {
            tracing::warn!(code = message.kind.code, "analysis: {message}");
        }
        if let Some(status) = &self.status {
            status.report(&result.messages);
        }
        *latest = result.messages;
    }

    /// `/debug/analysis`: the current findings, as `istioctl x analyze -o json` prints them.
    pub(crate) fn router(self: &Arc<Self>) -> Router {
        let analysis = Arc::clone(self);
        Router::new().route(
            "/debug/analysis",
            get(move || {
                let analysis = Arc::clone(&analysis);
                async move {
                    let latest = analysis.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    Json(latest.iter().map(Message::to_json).collect::<Vec<_>>())
                }
            }),
        )
    }
}
