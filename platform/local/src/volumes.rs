//! A pod's volumes on the host, the kubelet's part: emptyDir and hostPath, and Secret and
//! ConfigMap volumes whose files follow their object. A Secret or ConfigMap that is created,
//! changed or deleted after the pod started is written into the running pod's volume, as the
//! kubelet does (each file replaced atomically), so a gateway whose certificate Secret is
//! created later sees the files without restarting. Projected volumes combine Secrets,
//! ConfigMaps and service-account tokens ([`crate::tokens`]), renewed as they age.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use istio_config::object::Object;
use serde_json::Value;

use crate::layout::Layout;
use crate::pod_context::PodContext;
use crate::tokens::PodTokens;

/// A volume's files: name and content.
type Files = Vec<(String, Vec<u8>)>;

/// The pod's volumes, as host directories (or host paths), by volume name.
pub(crate) fn prepare(
    context: &PodContext,
    pod: &Object,
    secrets: &[Object],
    config_maps: &[Object],
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let root = context.layout.pod_volumes(pod.namespace(), pod.name());
    let mut volumes = BTreeMap::new();
    for volume in pod.spec().get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = volume.get("name").and_then(Value::as_str) else { continue };
        if let Some(path) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
            ensure_mount_point(context, Path::new(path), true).with_context(|| format!("volume {name}"))?;
            volumes.insert(name.to_string(), PathBuf::from(path));
            continue;
        }
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("volume {name}: creating {}", dir.display()))?;
        match projected_files(&context.layout, volume, pod, secrets, config_maps, &dir)
            .with_context(|| format!("volume {name}"))?
        {
            Some((files, mode)) => {
                sync_files(&dir, &files, mode).with_context(|| format!("volume {name}"))?;
            }
            // An emptyDir: writable by whatever user the containers run as.
            None => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?,
        }
        volumes.insert(name.to_string(), dir);
    }
    Ok(volumes)
}

/// Brings a running pod's Secret and ConfigMap volumes up to date with the objects as they
/// are now; returns the names of the volumes whose files changed.
pub(crate) fn refresh(
    layout: &Layout,
    pod: &Object,
    secrets: &[Object],
    config_maps: &[Object],
) -> anyhow::Result<Vec<String>> {
    let root = layout.pod_volumes(pod.namespace(), pod.name());
    let mut changed = Vec::new();
    for volume in pod.spec().get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = volume.get("name").and_then(Value::as_str) else { continue };
        let dir = root.join(name);
        if !dir.is_dir() {
            // The pod has not set its volumes up yet (or is going away).
            continue;
        }
        let files = projected_files(layout, volume, pod, secrets, config_maps, &dir)
            .with_context(|| format!("volume {name}"))?;
        let Some((files, mode)) = files else { continue };
        if sync_files(&dir, &files, mode).with_context(|| format!("volume {name}"))? {
            changed.push(name.to_string());
        }
    }
    Ok(changed)
}

/// A Secret, ConfigMap or projected volume's files and file mode; `None` for other kinds of
/// volume. `dir` is where the volume's files are now (a token there is kept while it is fresh).
fn projected_files(
    layout: &Layout,
    volume: &Value,
    pod: &Object,
    secrets: &[Object],
    config_maps: &[Object],
    dir: &Path,
) -> anyhow::Result<Option<(Files, u32)>> {
    let namespace = pod.namespace();
    let (files, mode) = if let Some(secret) = volume.pointer("/secret/secretName").and_then(Value::as_str) {
        (object_files(secrets, namespace, secret, true), volume.pointer("/secret/defaultMode"))
    } else if let Some(map) = volume.pointer("/configMap/name").and_then(Value::as_str) {
        (object_files(config_maps, namespace, map, false), volume.pointer("/configMap/defaultMode"))
    } else if let Some(sources) = volume.pointer("/projected/sources").and_then(Value::as_array) {
        let mut files = Vec::new();
        let mut tokens = None;
        for source in sources {
            if let Some(secret) = source.pointer("/secret/name").and_then(Value::as_str) {
                files.extend(object_files(secrets, namespace, secret, true));
            } else if let Some(map) = source.pointer("/configMap/name").and_then(Value::as_str) {
                files.extend(object_files(config_maps, namespace, map, false));
            } else if let Some(token) = source.get("serviceAccountToken") {
                let path = token.get("path").and_then(Value::as_str).unwrap_or("token");
                if !crate::objects::is_data_key(path) {
                    anyhow::bail!("serviceAccountToken.path {path:?} is not a file name");
                }
                let existing = std::fs::read(dir.join(path)).ok();
                let tokens = tokens.get_or_insert_with(|| PodTokens::load(layout));
                files.push((path.to_string(), tokens.token(pod, token, existing.as_deref())?));
            }
        }
        (files, volume.pointer("/projected/defaultMode"))
    } else {
        return Ok(None);
    };
    let mode = mode.and_then(Value::as_u64).and_then(|mode| u32::try_from(mode).ok()).unwrap_or(0o644);
    Ok(Some((files, mode & 0o777)))
}

/// Staging files of writes in progress: `..NAME.N.tmp`, never taken for a volume's file.
const STAGING_PREFIX: &str = "..";

/// Makes `dir` hold exactly `files`: changed files are replaced atomically (written beside and
/// renamed over), files no longer in the object are removed. Returns whether anything changed.
/// Two writers may sync one directory at once (a starting pod sets its volumes up while the
/// controller refreshes them): each stages under a name of its own and leaves the other's
/// staging files alone.
fn sync_files(dir: &Path, files: &[(String, Vec<u8>)], mode: u32) -> anyhow::Result<bool> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut changed = false;
    for (file, content) in files {
        let path = dir.join(file);
        let same_content = std::fs::read(&path).is_ok_and(|current| &current == content);
        let same_mode = std::fs::metadata(&path).is_ok_and(|meta| meta.permissions().mode() & 0o777 == mode);
        if same_content && same_mode {
            continue;
        }
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let staging = dir.join(format!("{STAGING_PREFIX}{file}.{write}.tmp"));
        std::fs::write(&staging, content).with_context(|| format!("writing {file}"))?;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staging, &path).with_context(|| format!("replacing {file}"))?;
        changed = true;
    }
    let wanted: std::collections::BTreeSet<&str> = files.iter().map(|(file, _)| file.as_str()).collect();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGING_PREFIX) {
            // Another writer's, unless a crash left it behind long ago.
            let stale = entry.metadata().ok().and_then(|meta| meta.modified().ok()).and_then(|at| at.elapsed().ok());
            if stale.is_some_and(|age| age > std::time::Duration::from_secs(60)) {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        if wanted.contains(name.as_str()) || !entry.file_type()?.is_file() {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => changed = true,
            // The other writer removed it first.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("removing {name}")),
        }
    }
    Ok(changed)
}

/// Keeps `dir` holding the files of Secret `namespace/name` (none while there is no such
/// Secret, as an optional Secret volume); true if a file changed. A control-plane component's
/// volume, as Citadel's `cacerts`.
pub(crate) fn sync_secret_volume(dir: &Path, secrets: &[Object], namespace: &str, name: &str) -> anyhow::Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = object_files(secrets, namespace, name, true);
    sync_files(dir, &files, 0o644).with_context(|| format!("Secret {namespace}/{name} into {}", dir.display()))
}

/// The files of a Secret (base64 `data`, and `stringData`) or ConfigMap (`data`).
pub(crate) fn object_files(objects: &[Object], namespace: &str, name: &str, base64_data: bool) -> Files {
    use base64::Engine;
    let Some(object) = objects.iter().find(|o| o.namespace() == namespace && o.name() == name) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for (key, value) in object.body.get("data").and_then(Value::as_object).into_iter().flatten() {
        let Some(text) = value.as_str() else { continue };
        let content = if base64_data {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(content) => content,
                Err(error) => {
                    tracing::warn!(secret = %name, %key, %error, "not base64; the key is left out");
                    continue;
                }
            }
        } else {
            text.as_bytes().to_vec()
        };
        files.push((key.clone(), content));
    }
    if base64_data {
        for (key, value) in object.body.get("stringData").and_then(Value::as_object).into_iter().flatten() {
            if let Some(text) = value.as_str() {
                files.push((key.clone(), text.as_bytes().to_vec()));
            }
        }
    }
    files.retain(|(key, _)| {
        let valid = crate::objects::is_data_key(key);
        if !valid {
            tracing::warn!(object = %name, %key, "a key that is not a valid file name is left out");
        }
        valid
    });
    files
}

/// Creates a mount point that does not exist yet, recording the topmost directory created so
/// teardown removes it.
pub(crate) fn ensure_mount_point(context: &PodContext, target: &Path, directory: bool) -> anyhow::Result<()> {
    if target.exists() {
        return Ok(());
    }
    let _guard = istio_runtime::sync::lock(&context.created);
    let mut topmost = target.to_path_buf();
    while let Some(parent) = topmost.parent() {
        if parent.exists() {
            break;
        }
        topmost = parent.to_path_buf();
    }
    if directory {
        std::fs::create_dir_all(target)
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, b"")
    }
    .with_context(|| format!("creating mount point {}", target.display()))?;
    use std::io::Write;
    let mut record = std::fs::OpenOptions::new().create(true).append(true).open(context.layout.created_paths())?;
    writeln!(record, "{}", topmost.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projected_tokens_name_the_pods_account_and_are_kept_while_fresh() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        std::fs::create_dir_all(layout.certs()).unwrap();
        crate::tokens::write_signing_key(&layout).unwrap();
        let pod: Object = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sleep-1", "namespace": "foo"},
            "spec": {"serviceAccountName": "sleep", "containers": []},
        }))
        .unwrap();
        let volume = serde_json::json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}]}});
        let dir = root.path().join("volume");
        std::fs::create_dir_all(&dir).unwrap();
        let (files, mode) = projected_files(&layout, &volume, &pod, &[], &[], &dir).unwrap().expect("projected");
        assert_eq!(mode, 0o644);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "istio-token");
        let token = String::from_utf8(files[0].1.clone()).unwrap();
        let public = std::fs::read_to_string(layout.service_account_public_key()).unwrap();
        let verifier = istio_pki::token::TokenVerifier::new(
            &public,
            istio_pki::token::LOCAL_ISSUER,
            istio_pki::token::CITADEL_AUDIENCE,
        )
        .unwrap();
        let account = verifier.verify(&token).expect("a token Citadel accepts");
        assert_eq!((account.namespace.as_str(), account.name.as_str()), ("foo", "sleep"));

        assert!(sync_files(&dir, &files, mode).unwrap());
        let (again, _) = projected_files(&layout, &volume, &pod, &[], &[], &dir).unwrap().expect("projected");
        assert_eq!(again, files, "a fresh token is kept, so the volume does not change on every pass");
        assert!(!sync_files(&dir, &again, mode).unwrap());
    }

    #[test]
    fn files_follow_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![("tls.crt".to_string(), b"one".to_vec()), ("tls.key".to_string(), b"key".to_vec())];
        assert!(sync_files(dir.path(), &files, 0o600).unwrap());
        assert!(!sync_files(dir.path(), &files, 0o600).unwrap(), "nothing changed the second time");
        let mode = std::fs::metadata(dir.path().join("tls.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let updated = vec![("tls.crt".to_string(), b"two".to_vec())];
        assert!(sync_files(dir.path(), &updated, 0o600).unwrap());
        assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), b"two");
        assert!(!dir.path().join("tls.key").exists(), "a key gone from the object is removed");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no staging files are left: {names:?}");
    }

    /// A starting pod's set-up and the controller's refresh writing one volume at once: neither
    /// fails, and the directory ends holding exactly the last set written, no staging files.
    #[test]
    fn two_writers_at_once_do_not_trip_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let full = vec![
            ("cert-chain.pem".to_string(), b"chain".to_vec()),
            ("key.pem".to_string(), b"key".to_vec()),
            ("root-cert.pem".to_string(), b"root".to_vec()),
        ];
        let other = vec![("cert-chain.pem".to_string(), b"other chain".to_vec())];
        std::thread::scope(|scope| {
            let writers: Vec<_> = [&full, &other]
                .into_iter()
                .map(|files| {
                    let path = dir.path();
                    scope.spawn(move || {
                        for _ in 0..300 {
                            sync_files(path, files, 0o644).expect("a sync beside another");
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
        });
        let contents = |name: &str| std::fs::read(dir.path().join(name)).ok();
        let chain = contents("cert-chain.pem");
        assert!(chain == Some(b"chain".to_vec()) || chain == Some(b"other chain".to_vec()), "a whole file: {chain:?}");
        sync_files(dir.path(), &full, 0o644).unwrap();
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["cert-chain.pem", "key.pem", "root-cert.pem"]);
    }
}
