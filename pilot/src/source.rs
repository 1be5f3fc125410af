//! Pilot's config sources: objects arrive from a store (a config directory, or Kubernetes
//! CRDs), are validated (an invalid object is logged, counted, and its last good version kept),
//! and are turned into a new `PushContext` after changes settle (100 ms quiet, 10 s at most,
//! like `PILOT_DEBOUNCE_AFTER` / `PILOT_DEBOUNCE_MAX`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use istio_config::object::{Object, ObjectKey};
use istio_config::store::Event;
use istio_config::validation::object_violations;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::model::{MeshSettings, Named, PushContext, Service};

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub mesh: MeshSettings,
    /// Validate objects before using them (off for MCP, whose server validated them).
    pub validate: bool,
    pub debounce_after: Duration,
    pub debounce_max: Duration,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            mesh: MeshSettings::default(),
            validate: true,
            debounce_after: Duration::from_millis(100),
            debounce_max: Duration::from_secs(10),
        }
    }
}

fn named<T: prost::Message + Default>(object: &Object) -> Option<Named<T>> {
    let kind = object.istio_kind()?;
    let spec = if object.spec().is_null() { serde_json::json!({}) } else { object.spec().clone() };
    match istio_api::json::decode::<T>(kind.proto, &spec) {
        Ok(spec) => Some(Named { name: object.name().to_string(), namespace: object.namespace().to_string(), spec }),
        Err(error) => {
            tracing::warn!(object = %object.display_name(), %error, "cannot decode accepted config");
            None
        }
    }
}

/// Builds a push context from accepted objects.
pub fn build(objects: &BTreeMap<ObjectKey, Object>, mesh: &MeshSettings, version: String) -> PushContext {
    let mut push =
        PushContext { version, mesh: mesh.clone(), created: Some(std::time::Instant::now()), ..Default::default() };
    for object in objects.values() {
        match (object.group(), object.kind.as_str()) {
            ("networking.istio.io", "ServiceEntry") => {
                if let Some(entry) = named::<istio_api::pb::istio::networking::v1alpha3::ServiceEntry>(object) {
                    for service in Service::from_service_entry(&entry.spec, &entry.namespace) {
                        let hostname = push.qualify(&service.hostname, &entry.namespace);
                        push.services.insert(hostname.clone(), Arc::new(Service { hostname, ..service }));
                    }
                }
            }
            ("networking.istio.io", "VirtualService") => push.virtual_services.extend(named(object)),
            ("networking.istio.io", "DestinationRule") => push.destination_rules.extend(named(object)),
            ("networking.istio.io", "Gateway") => push.gateways.extend(named(object)),
            ("networking.istio.io", "Sidecar") => push.sidecars.extend(named(object)),
            _ => {}
        }
    }
    push
}

/// Consumes store events, publishing a new push context after each settled batch of changes.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    publish: watch::Sender<Arc<PushContext>>,
    settings: SourceSettings,
    metrics: Metrics,
) {
    let mut objects: BTreeMap<ObjectKey, Object> = BTreeMap::new();
    let mut synced = false;
    let mut generation = 0_u64;
    let apply = |event: Event, objects: &mut BTreeMap<ObjectKey, Object>, synced: &mut bool| -> bool {
        match event {
            Event::Added(mut object) | Event::Modified(mut object) => {
                object.default_namespace("default");
                if object.istio_kind().is_none() {
                    return false;
                }
                let violations = if settings.validate { object_violations(&object) } else { Vec::new() };
                if !violations.is_empty() {
                    let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
                    tracing::warn!(object = %object.display_name(), reasons = %reasons.join("; "), "invalid config ignored; keeping the last good version");
                    metrics.invalid_config.inc();
                    return false;
                }
                objects.insert(object.key(), object);
                true
            }
            Event::Deleted(mut object) => {
                object.default_namespace("default");
                objects.remove(&object.key()).is_some()
            }
            Event::SourceError { source, message, .. } => {
                tracing::warn!(%source, %message, "config source cannot be read; keeping what it held");
                false
            }
            Event::Synced => {
                let first = !*synced;
                *synced = true;
                first
            }
        }
    };
    while let Some(event) = events.recv().await {
        let mut changed = apply(event, &mut objects, &mut synced);
        let first_change = Instant::now();
        loop {
            let deadline = (Instant::now() + settings.debounce_after).min(first_change + settings.debounce_max);
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => changed |= apply(event, &mut objects, &mut synced),
                Ok(None) | Err(_) => break,
            }
        }
        if changed && synced {
            generation += 1;
            let push = build(&objects, &settings.mesh, generation.to_string());
            tracing::info!(version = %push.version, services = push.services.len(), virtual_services = push.virtual_services.len(), "new push context");
            metrics.push_contexts.inc();
            publish.send_replace(Arc::new(push));
        }
    }
}
