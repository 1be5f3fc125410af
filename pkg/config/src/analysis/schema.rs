//! `schema.ValidationAnalyzer.<Kind>`: every Istio object is checked with the rules Galley's
//! webhook applies, one message per problem.

use super::analyzer::Analyzer;
use super::messages::schema_validation_error;
use super::snapshot::Collection;
use crate::validation::object_violations;

/// One analyzer per Istio kind, named as 1.4 named its schemas.
pub(super) fn analyzers() -> Vec<Analyzer> {
    istio_api::kinds::all()
        .iter()
        .filter(|kind| !kind.legacy)
        .map(|kind| {
            let collection = Collection { group: kind.group, kind: kind.kind };
            let name = format!("schema.ValidationAnalyzer.{}", schema_name(kind.group, kind.kind));
            Analyzer::new(&name, &[collection], move |snapshot, messages| {
                for entry in snapshot.entries(collection) {
                    for violation in object_violations(&entry.object) {
                        messages.push(schema_validation_error(&entry.origin, &violation.to_string()));
                    }
                }
            })
        })
        .collect()
}

/// 1.4's schema variable names, where they differ from the kind.
fn schema_name(group: &str, kind: &str) -> String {
    match (group, kind) {
        ("authentication.istio.io", "Policy") => "AuthenticationPolicy".to_string(),
        ("authentication.istio.io", "MeshPolicy") => "AuthenticationMeshPolicy".to_string(),
        _ => kind.to_string(),
    }
}
