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

/// A file changed a moment ago is left for a later scan unless its writer is known to be done
/// with it (closed or renamed into place, and not modified since).
#[test]
fn a_file_its_writer_finished_is_read_without_settling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(dir.path()).expect("open");
    let file = dir.path().join("reviews.yaml");
    // Modification times an hour ahead count as "a moment ago" however slow the machine is, and
    // a different one for each write makes each a new version of the file.
    let later = SystemTime::now() + Duration::from_secs(3600);
    let write_at = |port: u16, seconds: u64| {
        std::fs::write(&file, serde_yaml::to_string(&service("reviews", port)).expect("yaml")).expect("write");
        let modified = later + Duration::from_secs(seconds);
        std::fs::File::options().write(true).open(&file).expect("open").set_modified(modified).expect("mtime");
        modified
    };
    let inner = &store.inner;
    write_at(9080, 0);
    assert!(inner.refresh(false), "just written, nothing says it is complete: left to settle");
    assert!(inner.lock_state().objects.is_empty());

    // A close noticed before the file's last modification says nothing about that write.
    let modified = write_at(9081, 1);
    istio_runtime::sync::lock(&inner.finished_writes).insert(file.clone(), modified - Duration::from_millis(1));
    assert!(inner.refresh(false), "modified after the close it was told of");
    assert!(inner.lock_state().objects.is_empty());

    let modified = write_at(9082, 2);
    istio_runtime::sync::lock(&inner.finished_writes).insert(file.clone(), modified);
    assert!(!inner.refresh(false), "closed after its last write: read at once");
    let state = inner.lock_state();
    let (object, _) = state.objects.values().next().expect("the service");
    assert_eq!(object.spec()["ports"][0]["port"], 9082);
}

#[test]
fn closes_after_writing_and_renames_finish_a_write() {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    let finished = Mutex::new(HashMap::new());
    let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
    note_finished_write(&finished, &event(EventKind::Access(AccessKind::Close(AccessMode::Write)), "/c/a.yaml"));
    note_finished_write(&finished, &event(EventKind::Modify(ModifyKind::Name(RenameMode::To)), "/c/b.yaml"));
    note_finished_write(&finished, &event(EventKind::Access(AccessKind::Close(AccessMode::Read)), "/c/c.yaml"));
    note_finished_write(&finished, &event(EventKind::Modify(ModifyKind::Any), "/c/d.yaml"));
    let finished = finished.into_inner().expect("lock");
    let mut paths: Vec<&PathBuf> = finished.keys().collect();
    paths.sort();
    assert_eq!(paths, [&PathBuf::from("/c/a.yaml"), &PathBuf::from("/c/b.yaml")]);
}
