//! Config analysis, as 1.4's `istioctl x analyze` and Galley's `--enableAnalysis` did it: a
//! set of analyzers reads a snapshot of the mesh's config (and, with service discovery, its
//! namespaces, services and pods) and reports messages from 1.4's catalogue. Analyzers whose
//! inputs need service discovery are skipped without it; messages can be limited to some
//! namespaces, and come out in 1.4's order.

mod analyzer;
mod annotations;
mod auth;
mod deprecation;
mod gateway;
mod injection;
pub mod messages;
mod schema;
mod sidecar;
pub mod snapshot;
mod virtualservice;

#[cfg(test)]
mod tests;

pub use analyzer::Analyzer;
pub use messages::{Level, Message, MessageType, Origin};
pub use snapshot::{Collection, Entry, Snapshot};

/// Every analyzer 1.4 shipped, in its order, then one schema validation analyzer per Istio kind.
pub fn all() -> Vec<Analyzer> {
    let mut analyzers = vec![
        annotations::analyzer(),
        auth::jwt_analyzer(),
        auth::service_role_binding_analyzer(),
        auth::service_role_services_analyzer(),
        deprecation::analyzer(),
        gateway::analyzer(),
        injection::analyzer(),
        injection::version_analyzer(),
        sidecar::default_selector_analyzer(),
        sidecar::selector_analyzer(),
        virtualservice::conflicting_mesh_gateway_hosts_analyzer(),
        virtualservice::destination_host_analyzer(),
        virtualservice::destination_rule_analyzer(),
        virtualservice::gateway_analyzer(),
    ];
    analyzers.extend(schema::analyzers());
    analyzers
}

/// How to run an analysis.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Whether service discovery is on: without it, analyzers that read namespaces, services
    /// or pods are skipped.
    pub discovery: bool,
    /// Keep only messages about objects in these namespaces (messages without an origin are
    /// kept); empty keeps everything.
    pub namespaces: Vec<String>,
}

/// What an analysis found, and which analyzers ran.
#[derive(Debug, Default)]
pub struct AnalysisResult {
    pub messages: Vec<Message>,
    pub executed: Vec<String>,
    pub skipped: Vec<String>,
}

/// Runs `analyzers` over `snapshot`.
pub fn analyze(analyzers: &[Analyzer], snapshot: &Snapshot, options: &Options) -> AnalysisResult {
    let mut result = AnalysisResult::default();
    let mut messages = Vec::new();
    for analyzer in analyzers {
        if !options.discovery && analyzer.inputs.iter().any(|input| input.needs_discovery()) {
            result.skipped.push(analyzer.name.clone());
            continue;
        }
        result.executed.push(analyzer.name.clone());
        messages.extend(analyzer.analyze(snapshot));
    }
    messages.retain(|message| {
        options.namespaces.is_empty()
            || message
                .origin
                .as_ref()
                .is_none_or(|origin| options.namespaces.iter().any(|ns| ns == origin.analysis_namespace()))
    });
    messages.sort_by(Message::compare);
    result.messages = messages;
    result
}
