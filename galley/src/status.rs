//! The analysis findings written back to the objects on Kubernetes, as 1.4's status controller
//! did with `--enableAnalysis`: each Istio object with messages gets
//! `status.validationMessages`, a list of `{code, level, message}` (the origin is the object
//! itself), and an object whose messages are gone loses the field (and its status, when
//! nothing else is in it). Each write reads the object and updates its status subresource,
//! as 1.4's did (so Galley's ClusterRole needs only `update` on `*/status`); writes are made
//! in order by one task, and one that fails is logged and made again with the next change of
//! findings.

use std::collections::BTreeMap;

use istio_config::analysis::{Message, Origin};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc;

/// The status subfield the findings live in, as 1.4's.
pub(crate) const SUBFIELD: &str = "validationMessages";

/// An object messages are about: its kind, namespace (empty when cluster-scoped) and name.
type Target = (String, String, String);

/// Sends the findings to the task that writes them.
pub(crate) struct StatusWriter {
    desired: mpsc::UnboundedSender<BTreeMap<Target, Value>>,
}

impl StatusWriter {
    /// Starts the writing task on `client`.
    pub(crate) fn start(client: Client) -> StatusWriter {
        let (desired, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_statuses(client, receiver));
        StatusWriter { desired }
    }

    /// Reports the latest findings; objects not named lose their messages.
    pub(crate) fn report(&self, messages: &[Message]) {
        let _ = self.desired.send(desired_statuses(messages));
    }
}

/// The Istio kind of an origin, which the status can be written to.
fn istio_kind(kind: &str) -> Option<&'static istio_api::kinds::Kind> {
    istio_api::kinds::all().iter().find(|candidate| !candidate.legacy && candidate.kind == kind)
}

/// Each Istio object's messages, as 1.4's `validationMessages` value.
pub(crate) fn desired_statuses(messages: &[Message]) -> BTreeMap<Target, Value> {
    let mut desired: BTreeMap<Target, Vec<Value>> = BTreeMap::new();
    for message in messages {
        let Some(Origin { kind, namespace, name }) = &message.origin else { continue };
        if istio_kind(kind).is_none() {
            continue;
        }
        let mut entry = message.to_json();
        entry.as_object_mut().map(|entry| entry.remove("origin"));
        desired.entry((kind.clone(), namespace.clone(), name.clone())).or_default().push(entry);
    }
    desired.into_iter().map(|(target, entries)| (target, Value::Array(entries))).collect()
}

/// The writes that take the objects from `written` to `desired`: the new list, or `null`
/// (which removes the field) for an object with no messages left.
pub(crate) fn changes(written: &BTreeMap<Target, Value>, desired: &BTreeMap<Target, Value>) -> Vec<(Target, Value)> {
    let mut changes: Vec<(Target, Value)> = desired
        .iter()
        .filter(|(target, value)| written.get(*target) != Some(*value))
        .map(|(target, value)| (target.clone(), value.clone()))
        .collect();
    changes.extend(written.keys().filter(|target| !desired.contains_key(*target)).map(|t| (t.clone(), Value::Null)));
    changes
}

async fn write_statuses(client: Client, mut receiver: mpsc::UnboundedReceiver<BTreeMap<Target, Value>>) {
    let mut written: BTreeMap<Target, Value> = BTreeMap::new();
    while let Some(mut desired) = receiver.recv().await {
        // Only the latest findings matter.
        while let Ok(newer) = receiver.try_recv() {
            desired = newer;
        }
        for (target, value) in changes(&written, &desired) {
            match write_status(&client, &target, &value).await {
                Ok(()) if value.is_null() => {
                    written.remove(&target);
                }
                Ok(()) => {
                    written.insert(target, value);
                }
                Err(error) => {
                    let (kind, namespace, name) = &target;
                    tracing::warn!(%error, "analysis: cannot write status.{SUBFIELD} of {kind} {namespace}/{name}");
                }
            }
        }
    }
}

async fn write_status(client: &Client, (kind, namespace, name): &Target, value: &Value) -> Result<(), kube::Error> {
    let Some(istio) = istio_kind(kind) else { return Ok(()) };
    let resource = ApiResource {
        group: istio.group.to_string(),
        version: istio.version.to_string(),
        api_version: istio.api_version(),
        kind: istio.kind.to_string(),
        plural: istio.plural.to_string(),
    };
    let api: Api<DynamicObject> = if istio.namespaced {
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let mut object = api.get_status(name).await?;
    set_subfield(&mut object.data, value);
    api.replace_status(name, &PostParams::default(), &object).await.map(|_| ())
}

/// Sets (or, for `null`, removes) the subfield in an object's status, dropping a status left
/// empty, as 1.4's controller did.
fn set_subfield(data: &mut Value, value: &Value) {
    let Some(object) = data.as_object_mut() else { return };
    let mut status = match object.remove("status") {
        Some(Value::Object(status)) => status,
        _ => serde_json::Map::new(),
    };
    if value.is_null() {
        status.remove(SUBFIELD);
    } else {
        status.insert(SUBFIELD.to_string(), value.clone());
    }
    if !status.is_empty() {
        object.insert("status".to_string(), Value::Object(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_config::analysis::messages::REFERENCED_RESOURCE_NOT_FOUND;
    use serde_json::json;

    fn message(kind: &str, name: &str, text: &str) -> Message {
        Message {
            kind: &REFERENCED_RESOURCE_NOT_FOUND,
            origin: Some(Origin { kind: kind.into(), namespace: "default".into(), name: name.into() }),
            text: text.into(),
        }
    }

    #[test]
    fn istio_objects_get_their_messages_and_lose_them_when_fixed() {
        let first = desired_statuses(&[
            message("VirtualService", "reviews", "Referenced gateway not found: \"g\""),
            message("VirtualService", "reviews", "Referenced host not found: \"h\""),
            message("Pod", "p", "not an Istio object"),
        ]);
        let target = ("VirtualService".to_string(), "default".to_string(), "reviews".to_string());
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            first[&target][0],
            json!({"code": "IST0101", "level": "Error",
            "message": "Referenced gateway not found: \"g\""})
        );
        let written = BTreeMap::new();
        assert_eq!(changes(&written, &first), vec![(target.clone(), first[&target].clone())]);
        assert!(changes(&first, &first).is_empty(), "nothing changed, nothing written");
        assert_eq!(changes(&first, &BTreeMap::new()), vec![(target, Value::Null)]);
    }

    #[test]
    fn the_subfield_is_set_and_removed_with_the_rest_of_the_status_kept() {
        let mut data = json!({"spec": {}, "status": {"other": 1}});
        set_subfield(&mut data, &json!([{"code": "IST0101"}]));
        assert_eq!(data["status"], json!({"other": 1, "validationMessages": [{"code": "IST0101"}]}));
        set_subfield(&mut data, &Value::Null);
        assert_eq!(data["status"], json!({"other": 1}));
        let mut alone = json!({"spec": {}, "status": {"validationMessages": []}});
        set_subfield(&mut alone, &Value::Null);
        assert!(alone.get("status").is_none(), "{alone}");
    }
}
