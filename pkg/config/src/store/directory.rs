//! The directory backend of the store. It reads every `.yaml`, `.yml` and `.json` file under a
//! root, in any layout and with any number of documents per file, and writes one file per object
//! under `objects/<namespace|_cluster>/<kind>[.<group>]/<name>.yaml`. Writes are atomic: a temp
//! file, then a rename.
//!
//! Changes made by other processes are noticed through inotify (notify): each notification
//! brings a rescan 20 ms later, and after a change the tree is rescanned again at growing
//! intervals (20, 80, 320 ms) for a second (a missed notification is caught; every 20 ms while a
//! file looks half-written), and every second as a safety net when nothing changes (every
//! 500 ms where notifications are unavailable), so a watcher hears about a change within a
//! second. A file that stops parsing keeps its last good objects and is reported as a
//! `SourceError` until it is fixed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{content_version, Event, Store, StoreError};
use crate::object::{Object, ObjectKey, TypeKey};
use crate::yaml::parse_objects;

/// How often the tree is rescanned when file notifications are unavailable.
const RESCAN_INTERVAL: Duration = Duration::from_millis(500);
/// How often it is rescanned anyway when notifications work and nothing is changing.
const NOTIFIED_RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// After a change, the tree is rescanned this soon, then at intervals four times as long each
/// time, for a while: a
/// notification can be missed (a file written into a directory before its watch is added).
/// Each scan stats every file, so a tree of a few thousand files is not scanned every 20 ms
/// while the change it brought is being pushed.
const ACTIVE_RESCAN_INTERVAL: Duration = Duration::from_millis(20);
const ACTIVE_WINDOW: Duration = Duration::from_secs(1);
/// A notification is acted on this long after it came, with any that came meanwhile.
const EVENT_COALESCING: Duration = Duration::from_millis(20);
/// A changed file is read only once it has been still this long (or looked the same on two
/// scans, or its writer closed it), so a writer caught between truncating and writing is not
/// taken as "empty".
const SETTLE_TIME: Duration = Duration::from_millis(100);
/// How long a file that held objects must stay empty before its objects are dropped.
const EMPTIED_SETTLE_TIME: Duration = Duration::from_secs(2);
const CANONICAL_DIR: &str = "objects";

/// A store kept in a directory of YAML files.
#[derive(Clone)]
pub struct DirectoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    state: Mutex<State>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
    watcher_started: Mutex<bool>,
    /// Files whose writer closed them (or renamed them into place) since the last scan, and
    /// when that was noticed: one not modified since is complete, and is read without waiting
    /// for it to settle.
    finished_writes: Arc<Mutex<HashMap<PathBuf, SystemTime>>>,
}

/// What identifies a version of a file on disk without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    length: u64,
    inode: u64,
}

#[derive(Debug, Default)]
struct FileState {
    fingerprint: Option<Fingerprint>,
    /// A newer fingerprint seen on the last scan but not yet read because it had not settled.
    unsettled: Option<Fingerprint>,
    objects: Vec<Object>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// By path; a hash map because every scan looks up every file.
    files: HashMap<PathBuf, FileState>,
    objects: BTreeMap<ObjectKey, (Object, PathBuf)>,
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { path: path.display().to_string(), source }
}

fn fingerprint(metadata: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Fingerprint { modified: metadata.modified().ok(), length: metadata.len(), inode: metadata.ino() }
}

fn is_config_file(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'));
    !hidden && path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
}

fn config_files(dir: &Path, out: &mut Vec<(PathBuf, Fingerprint)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        if metadata.is_dir() {
            let hidden = path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'));
            if !hidden {
                config_files(&path, out);
            }
        } else if is_config_file(&path) {
            out.push((path, fingerprint(&metadata)));
        }
    }
}

impl DirectoryStore {
    /// Opens (creating if needed) a store rooted at `root` and reads what is there.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|error| io_error(&root, error))?;
        let store = DirectoryStore {
            inner: Arc::new(Inner {
                root,
                state: Mutex::new(State::default()),
                subscribers: Mutex::new(Vec::new()),
                watcher_started: Mutex::new(false),
                finished_writes: Arc::default(),
            }),
        };
        store.inner.refresh(true);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file an object is written to.
    pub fn canonical_path(&self, key: &ObjectKey) -> PathBuf {
        let namespace = if key.namespace.is_empty() { "_cluster" } else { key.namespace.as_str() };
        let kind = if key.group.is_empty() {
            key.kind.to_lowercase()
        } else {
            format!("{}.{}", key.kind.to_lowercase(), key.group)
        };
        self.inner.root.join(CANONICAL_DIR).join(namespace).join(kind).join(format!("{}.yaml", key.name))
    }

    /// Sources that currently fail to parse, with their error.
    pub fn source_errors(&self) -> Vec<(PathBuf, String)> {
        let state = self.inner.lock_state();
        let mut errors: Vec<(PathBuf, String)> = state
            .files
            .iter()
            .filter_map(|(path, file)| file.error.clone().map(|error| (path.clone(), error)))
            .collect();
        errors.sort();
        errors
    }

    /// Rescans now and delivers any changes to watchers (the background task does this too).
    /// Files still being written are left for a later scan.
    pub async fn refresh(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.refresh(false)).await;
    }

    /// Rescans, reading every changed file at once: list and get must see another process's
    /// (atomic) write as soon as it is there.
    async fn refresh_now(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.refresh(true)).await;
    }

    fn start_watcher(&self) {
        let mut started = istio_runtime::sync::lock(&self.inner.watcher_started);
        if *started {
            return;
        }
        *started = true;
        let weak = Arc::downgrade(&self.inner);
        let root = self.inner.root.clone();
        tokio::spawn(watch_loop(weak, root, self.inner.finished_writes.clone()));
    }
}

/// Rescans on file-system notifications (debounced) and on a timer, until the store is dropped.
async fn watch_loop(inner: Weak<Inner>, root: PathBuf, finished_writes: Arc<Mutex<HashMap<PathBuf, SystemTime>>>) {
    use notify::Watcher as _;
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = &event {
            note_finished_write(&finished_writes, event);
        }
        // Reading the tree (this store's own scans included) opens files and directories: only
        // changes count, or every scan would set off the next.
        if !event.as_ref().is_ok_and(is_read_only) {
            let _ = notify_tx.send(());
        }
    })
    .and_then(|mut watcher| watcher.watch(&root, notify::RecursiveMode::Recursive).map(|()| watcher));
    if let Err(error) = &watcher {
        tracing::warn!(root = %root.display(), %error, "file notifications unavailable; relying on periodic rescans");
    }
    let mut ticker = tokio::time::interval(if watcher.is_ok() { NOTIFIED_RESCAN_INTERVAL } else { RESCAN_INTERVAL });
    let mut unsettled = false;
    let mut active_until: Option<tokio::time::Instant> = None;
    let mut follow_up_interval = ACTIVE_RESCAN_INTERVAL;
    loop {
        let settle = async {
            if unsettled {
                tokio::time::sleep(SETTLE_TIME).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let follow_up = async {
            match active_until {
                Some(until) if tokio::time::Instant::now() < until => tokio::time::sleep(follow_up_interval).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            Some(()) = notify_rx.recv() => {
                // The notifications of a burst of writes are taken together.
                tokio::time::sleep(EVENT_COALESCING).await;
                while notify_rx.try_recv().is_ok() {}
                active_until = Some(tokio::time::Instant::now() + ACTIVE_WINDOW);
                follow_up_interval = ACTIVE_RESCAN_INTERVAL;
            }
            _ = ticker.tick() => {}
            () = settle => {}
            () = follow_up => follow_up_interval *= 4,
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.subscriber_count() == 0 {
            continue;
        }
        unsettled = tokio::task::spawn_blocking(move || inner.refresh(false)).await.unwrap_or(false);
        if unsettled {
            // A file still being written is looked at again soon: seen the same twice, it is read.
            follow_up_interval = ACTIVE_RESCAN_INTERVAL;
        }
    }
}

/// Records the files an event says a writer is done with: closed after writing, or renamed
/// into place (the atomic write).
fn note_finished_write(finished_writes: &Mutex<HashMap<PathBuf, SystemTime>>, event: &notify::Event) {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    let finished = matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) | EventKind::Modify(ModifyKind::Name(_))
    );
    if finished {
        let now = SystemTime::now();
        let mut finished_writes = istio_runtime::sync::lock(finished_writes);
        for path in &event.paths {
            finished_writes.insert(path.clone(), now);
        }
    }
}

/// Whether a file-system event only says something was opened or read.
fn is_read_only(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        istio_runtime::sync::lock(&self.state)
    }

    fn subscriber_count(&self) -> usize {
        let mut subscribers = istio_runtime::sync::lock(&self.subscribers);
        subscribers.retain(|sender| !sender.is_closed());
        subscribers.len()
    }

    /// Re-reads changed files, rebuilds the object view and sends the differences to watchers.
    /// Without `force`, a file changed in the last moments is left for a later scan; returns
    /// whether any file was left so.
    fn refresh(&self, force: bool) -> bool {
        let mut unsettled = false;
        // Taken before the files are looked at: a write after its close shows as a later
        // modification time.
        let finished_writes = std::mem::take(&mut *istio_runtime::sync::lock(&self.finished_writes));
        let mut found = Vec::new();
        config_files(&self.root, &mut found);
        let mut events = Vec::new();
        // Lock order (subscribers, then state) matches `watch`, so a new watcher sees either the
        // state before this refresh plus its events, or the state after it, never both.
        let mut subscribers = istio_runtime::sync::lock(&self.subscribers);
        let mut state = self.lock_state();
        // Compared as bytes: a scan looks up every file, and `Path`'s own comparison and hash
        // walk the components.
        let present: std::collections::HashSet<&std::ffi::OsStr> =
            found.iter().map(|(path, _)| path.as_os_str()).collect();
        let known = state.files.len();
        state.files.retain(|path, _| present.contains(path.as_os_str()));
        // Whether any file was removed or read again: only then can the objects differ.
        let mut reread = state.files.len() != known;
        for (path, print) in found {
            if let Some(file) = state.files.get_mut(&path) {
                if file.fingerprint.as_ref() == Some(&print) {
                    file.unsettled = None;
                    continue;
                }
            }
            let file = state.files.entry(path.clone()).or_default();
            let age =
                print.modified.and_then(|modified| SystemTime::now().duration_since(modified).ok()).unwrap_or_default();
            let seen_twice = file.unsettled.as_ref() == Some(&print);
            // A writer that truncates and then writes (`echo >`, most editors' "save") leaves a
            // moment where the file is empty; on a busy machine that moment can outlast two
            // scans. Emptying a file that held objects therefore counts only once it has stayed
            // empty for a while; deleting the file is the prompt way to remove its objects.
            let emptied = print.length == 0 && !file.objects.is_empty();
            // A modification time in the future (clock skew) counts as long ago here.
            let emptied_age = print
                .modified
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .unwrap_or(EMPTIED_SETTLE_TIME);
            if !force && emptied && emptied_age < EMPTIED_SETTLE_TIME {
                file.unsettled = Some(print);
                unsettled = true;
                continue;
            }
            let finished_writing = finished_writes
                .get(&path)
                .is_some_and(|closed| print.modified.is_some_and(|modified| modified <= *closed));
            if !force && age < SETTLE_TIME && !seen_twice && !finished_writing {
                file.unsettled = Some(print);
                unsettled = true;
                continue;
            }
            file.unsettled = None;
            file.fingerprint = Some(print);
            reread = true;
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    // Vanished between listing and reading, or unreadable: try again next scan.
                    file.fingerprint = None;
                    tracing::debug!(path = %path.display(), %error, "cannot read config file");
                    continue;
                }
            };
            let (objects, errors) = parse_objects(&path.display().to_string(), &text);
            match errors.first() {
                Some(error) => {
                    let message = error.message.clone();
                    if file.error.as_deref() != Some(message.as_str()) {
                        events.push(Event::SourceError {
                            source: error.source_name.clone(),
                            line: error.line,
                            message: message.clone(),
                        });
                    }
                    file.error = Some(message);
                }
                None => {
                    file.error = None;
                    // Versioned once, when read: every change rebuilds the object map from all
                    // files, and hashing each object's content each time would cost more than
                    // the change.
                    file.objects = objects
                        .into_iter()
                        .map(|source| {
                            let mut object = source.object;
                            object.metadata.resource_version = Some(content_version(&object));
                            object
                        })
                        .collect();
                }
            }
        }
        if !reread {
            // Nothing changed on disk (and nothing was parsed, so there are no events): the
            // objects are as they were; rebuilding them would clone and hash every object on
            // every scan.
            return unsettled;
        }
        let canonical_root = self.root.join(CANONICAL_DIR);
        let mut ordered: Vec<&PathBuf> = state.files.keys().collect();
        ordered.sort_by_key(|path| (path.starts_with(&canonical_root), (*path).clone()));
        let mut objects = BTreeMap::new();
        for path in ordered {
            for object in &state.files[path].objects {
                objects.insert(object.key(), (object.clone(), path.clone()));
            }
        }
        for (key, (old, _)) in &state.objects {
            match objects.get(key) {
                None => events.push(Event::Deleted(old.clone())),
                Some((new, _)) if new.resource_version() != old.resource_version() => {
                    events.push(Event::Modified(new.clone()))
                }
                Some(_) => {}
            }
        }
        for (key, (new, _)) in &objects {
            if !state.objects.contains_key(key) {
                events.push(Event::Added(new.clone()));
            }
        }
        state.objects = objects;
        drop(state);
        if !events.is_empty() {
            subscribers.retain(|sender| events.iter().all(|event| sender.send(event.clone()).is_ok()));
        }
        unsettled
    }

    fn files_holding(&self, key: &ObjectKey) -> Vec<PathBuf> {
        let state = self.lock_state();
        state
            .files
            .iter()
            .filter(|(_, file)| file.objects.iter().any(|object| &object.key() == key))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Removes `key` from a file: deletes a file that held only it, rewrites one that held more.
    fn remove_from_file(&self, path: &Path, key: &ObjectKey) -> Result<(), StoreError> {
        let remaining: Vec<Object> = {
            let state = self.lock_state();
            state
                .files
                .get(path)
                .map(|file| {
                    let others = file.objects.iter().filter(|object| &object.key() != key).cloned();
                    // The version is the store's, not part of what the file said.
                    others
                        .map(|mut object| {
                            object.metadata.resource_version = None;
                            object
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        if remaining.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(io_error(path, error)),
            };
        }
        let mut text = String::new();
        for object in &remaining {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(object).map_err(|error| StoreError::Encode(error.to_string()))?);
        }
        write_atomically(path, &text)
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|error| io_error(dir, error))?;
    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("object");
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&temp, text).map_err(|error| io_error(&temp, error))?;
    std::fs::rename(&temp, path).map_err(|error| io_error(path, error))
}

fn apply_blocking(store: &DirectoryStore, mut object: Object) -> Result<Object, StoreError> {
    if object.name().is_empty() {
        return Err(StoreError::MissingName(format!("{} {}", object.kind, object.namespace())));
    }
    object.metadata.resource_version = None;
    let key = object.key();
    let target = store.canonical_path(&key);
    for path in store.inner.files_holding(&key) {
        if path != target {
            store.inner.remove_from_file(&path, &key)?;
        }
    }
    let text = serde_yaml::to_string(&object).map_err(|error| StoreError::Encode(error.to_string()))?;
    write_atomically(&target, &text)?;
    store.inner.refresh(true);
    let state = store.inner.lock_state();
    Ok(state.objects.get(&key).map(|(stored, _)| stored.clone()).unwrap_or(object))
}

fn delete_blocking(store: &DirectoryStore, key: &ObjectKey) -> Result<bool, StoreError> {
    store.inner.refresh(true);
    let holders = store.inner.files_holding(key);
    for path in &holders {
        store.inner.remove_from_file(path, key)?;
    }
    store.inner.refresh(true);
    Ok(!holders.is_empty())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[async_trait]
impl Store for DirectoryStore {
    async fn list(&self, kind: &TypeKey) -> Result<Vec<Object>, StoreError> {
        self.refresh_now().await;
        let state = self.inner.lock_state();
        Ok(state
            .objects
            .values()
            .filter(|(object, _)| &object.type_key() == kind)
            .map(|(object, _)| object.clone())
            .collect())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        self.refresh_now().await;
        let state = self.inner.lock_state();
        Ok(state.objects.get(key).map(|(object, _)| object.clone()))
    }

    async fn apply(&self, object: Object) -> Result<Object, StoreError> {
        let store = self.clone();
        blocking(move || apply_blocking(&store, object)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let store = self.clone();
        let key = key.clone();
        blocking(move || delete_blocking(&store, &key)).await
    }

    fn watch(&self) -> mpsc::UnboundedReceiver<Event> {
        let (sender, receiver) = mpsc::unbounded_channel();
        {
            // Hold the subscriber list while taking the snapshot so no change slips between them.
            let mut subscribers = istio_runtime::sync::lock(&self.inner.subscribers);
            let state = self.inner.lock_state();
            for (object, _) in state.objects.values() {
                let _ = sender.send(Event::Added(object.clone()));
            }
            let mut failing: Vec<(&PathBuf, &FileState)> = state.files.iter().collect();
            failing.sort_by_key(|(path, _)| *path);
            for (path, file) in failing {
                if let Some(error) = &file.error {
                    let _ = sender.send(Event::SourceError {
                        source: path.display().to_string(),
                        line: 0,
                        message: error.clone(),
                    });
                }
            }
            let _ = sender.send(Event::Synced);
            subscribers.push(sender);
        }
        self.start_watcher();
        receiver
    }
}

#[cfg(test)]
mod tests;
