//! The object store: list / get / watch / apply / delete over Kubernetes-shaped objects, with two
//! backends: a directory of YAML files (the local platform, and Galley's `--configPath`) and the
//! Kubernetes API (through kube-rs).
//!
//! A watcher first receives every existing object as `Added`, then changes as they happen, so a
//! consumer never needs a separate list call to build its view.

pub mod directory;
pub mod kubernetes;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::object::{Object, ObjectKey, TypeKey};

/// What happened to an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Added(Object),
    Modified(Object),
    Deleted(Object),
    /// A source could not be read (a file with bad YAML). Objects it held before keep their
    /// last good version until it reads again.
    SourceError {
        source: String,
        line: usize,
        message: String,
    },
    /// Every object that existed when the watch started has been delivered.
    Synced,
}

/// Passes a watch's events on unchanged, showing each to `observe` first (to count them).
pub fn tap(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut observe: impl FnMut(&Event) + Send + 'static,
) -> mpsc::UnboundedReceiver<Event> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            observe(&event);
            if sender.send(event).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: object needs a name")]
    MissingName(String),
    #[error("{key}: {message}")]
    Conflict { key: String, message: String },
    #[error("{kind}: not a kind this store knows how to address")]
    UnknownKind { kind: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Encode(String),
}

/// A store of objects.
#[async_trait]
pub trait Store: Send + Sync {
    /// Every object of a kind, across namespaces, in key order.
    async fn list(&self, kind: &TypeKey) -> Result<Vec<Object>, StoreError>;
    /// One object, if present.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError>;
    /// Creates or replaces an object; returns it as stored (with its resource version).
    async fn apply(&self, object: Object) -> Result<Object, StoreError>;
    /// Deletes an object; returns whether it existed.
    async fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError>;
    /// Starts a watch over every kind the store holds.
    fn watch(&self) -> mpsc::UnboundedReceiver<Event>;
}

/// A resource version derived from an object's content, so every process that reads the same
/// object computes the same version.
pub fn content_version(object: &Object) -> String {
    let mut without_version = object.clone();
    without_version.metadata.resource_version = None;
    let text = serde_json::to_string(&without_version).unwrap_or_default();
    crate::hash::fnv1a64_hex(text.bytes())
}
