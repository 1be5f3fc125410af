//! Tests of the directory store: round trips, multi-document files, atomic canonical writes, and
//! watching changes made by another writer, including an invalid edit that keeps the last good
//! version.

use std::time::Duration;

use super::*;

fn service(name: &str, port: u16) -> Object {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": port}]}
    }))
    .expect("service")
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .expect("an event within a second")
        .expect("channel open")
}

#[tokio::test]
async fn apply_get_list_delete_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(dir.path()).expect("open");
    let stored = store.apply(service("reviews", 9080)).await.expect("apply");
    assert!(!stored.resource_version().is_empty());
    let path = store.canonical_path(&stored.key());
    assert!(path.ends_with("objects/default/service/reviews.yaml"), "{}", path.display());
    let leftovers: Vec<_> =
        std::fs::read_dir(path.parent().expect("dir")).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");

    let fetched = store.get(&stored.key()).await.expect("get").expect("present");
    assert_eq!(fetched, stored);
    let updated = store.apply(service("reviews", 9081)).await.expect("update");
    assert_ne!(updated.resource_version(), stored.resource_version());
    assert_eq!(store.list(&TypeKey::new("", "Service")).await.expect("list").len(), 1);

    assert!(store.delete(&stored.key()).await.expect("delete"));
    assert!(!store.delete(&stored.key()).await.expect("delete again"));
    assert!(store.get(&stored.key()).await.expect("get").is_none());
    assert!(!path.exists());
}

#[tokio::test]
async fn multi_document_files_are_read_and_edited_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bookinfo.yaml");
    let text = format!(
        "{}---\n{}",
        serde_yaml::to_string(&service("details", 9080)).expect("yaml"),
        serde_yaml::to_string(&service("ratings", 9080)).expect("yaml")
    );
    std::fs::write(&bundle, text).expect("write");
    let store = DirectoryStore::open(dir.path()).expect("open");
    assert_eq!(store.list(&TypeKey::new("", "Service")).await.expect("list").len(), 2);
    // Applying one of them moves it to its canonical file; the bundle keeps the other.
    store.apply(service("details", 9090)).await.expect("apply");
    let services = store.list(&TypeKey::new("", "Service")).await.expect("list");
    assert_eq!(services.len(), 2);
    let bundle_text = std::fs::read_to_string(&bundle).expect("read");
    assert!(bundle_text.contains("ratings") && !bundle_text.contains("details"), "{bundle_text}");
    assert!(store.delete(&service("ratings", 0).key()).await.expect("delete"));
    assert!(!bundle.exists(), "a file left empty is removed");
}

#[tokio::test]
async fn watch_sees_other_writers_and_keeps_last_good_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("reviews.yaml");
    std::fs::write(&file, serde_yaml::to_string(&service("reviews", 9080)).expect("yaml")).expect("write");
    let store = DirectoryStore::open(dir.path()).expect("open");
    let mut events = store.watch();
    assert!(matches!(next_event(&mut events).await, Event::Added(object) if object.name() == "reviews"));
    assert_eq!(next_event(&mut events).await, Event::Synced);

    // Another process rewrites the file.
    std::fs::write(&file, serde_yaml::to_string(&service("reviews", 9091)).expect("yaml")).expect("write");
    let Event::Modified(object) = next_event(&mut events).await else { panic!("expected a modification") };
    assert_eq!(object.spec()["ports"][0]["port"], 9091);

    // A broken edit is reported and the last good object stays.
    std::fs::write(&file, "apiVersion: v1\nkind: [broken\n").expect("write");
    let Event::SourceError { source, message, .. } = next_event(&mut events).await else {
        panic!("expected a source error")
    };
    assert!(source.ends_with("reviews.yaml") && message.contains("invalid YAML"), "{source}: {message}");
    let kept = store.get(&object.key()).await.expect("get").expect("still there");
    assert_eq!(kept.spec()["ports"][0]["port"], 9091);
    assert_eq!(store.source_errors().len(), 1);

    // Removing the file deletes the object.
    std::fs::remove_file(&file).expect("remove");
    assert!(matches!(next_event(&mut events).await, Event::Deleted(object) if object.name() == "reviews"));
}

#[tokio::test]
async fn a_file_caught_empty_mid_write_keeps_its_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("reviews.yaml");
    std::fs::write(&file, serde_yaml::to_string(&service("reviews", 9080)).expect("yaml")).expect("write");
    let store = DirectoryStore::open(dir.path()).expect("open");
    let mut events = store.watch();
    assert!(matches!(next_event(&mut events).await, Event::Added(_)));
    assert_eq!(next_event(&mut events).await, Event::Synced);

    // A writer truncates the file and stalls well past the normal settle time before writing.
    std::fs::File::create(&file).expect("truncate");
    let stalled = tokio::time::timeout(Duration::from_millis(600), events.recv()).await;
    assert!(stalled.is_err(), "a briefly empty file must not delete its objects: {stalled:?}");
    std::fs::write(&file, serde_yaml::to_string(&service("reviews", 9091)).expect("yaml")).expect("write");
    let Event::Modified(object) = next_event(&mut events).await else { panic!("expected a modification") };
    assert_eq!(object.spec()["ports"][0]["port"], 9091);

    // A file that stays empty does give up its objects, after the longer settle time.
    std::fs::File::create(&file).expect("truncate");
    let deleted = tokio::time::timeout(EMPTIED_SETTLE_TIME + Duration::from_secs(2), events.recv())
        .await
        .expect("deleted once the file stayed empty")
        .expect("channel open");
    assert!(matches!(deleted, Event::Deleted(object) if object.name() == "reviews"));
}

#[test]
fn only_changes_wake_the_watcher_not_reads() {
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
    let event = |kind| notify::Event::new(kind);
    assert!(is_read_only(&event(EventKind::Access(AccessKind::Open(AccessMode::Any)))));
    assert!(is_read_only(&event(EventKind::Access(AccessKind::Close(AccessMode::Read)))));
    assert!(!is_read_only(&event(EventKind::Access(AccessKind::Close(AccessMode::Write)))));
    assert!(!is_read_only(&event(EventKind::Modify(ModifyKind::Any))));
    assert!(!is_read_only(&event(EventKind::Create(CreateKind::File))));
}
