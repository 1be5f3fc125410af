//! `kubectl create secret tls|generic` and `create configmap` for the local platform: builds
//! the Secret or ConfigMap from files (and literals) as kubectl does and stores it, refusing
//! one that already exists. The secure gateway tasks create their certificate Secrets this
//! way, the TLS passthrough task its nginx configuration.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine;
use istio_config::object::Object;
use istio_config::store::Store;
use serde_json::{json, Map, Value};

use crate::kubectl::open_store_for_writes;
use crate::layout::Layout;
use crate::objects;

/// One `--from-file` source: `[key=]path`, a file or a directory of files.
pub fn parse_from_file(source: &str) -> (Option<String>, PathBuf) {
    match source.split_once('=') {
        Some((key, path)) if !key.is_empty() => (Some(key.to_string()), PathBuf::from(path)),
        _ => (None, PathBuf::from(source)),
    }
}

/// A `kubernetes.io/tls` Secret holding `tls.crt` and `tls.key`.
pub fn tls_secret(namespace: &str, name: &str, cert: &Path, key: &Path) -> anyhow::Result<Object> {
    let read = |path: &Path, what: &str| {
        let content = std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))?;
        if !String::from_utf8_lossy(&content).contains("-----BEGIN") {
            bail!("{} is not PEM (the {what})", path.display());
        }
        Ok(content)
    };
    let mut data = Map::new();
    data.insert("tls.crt".into(), encode(&read(cert, "certificate")?));
    data.insert("tls.key".into(), encode(&read(key, "key")?));
    secret(namespace, name, "kubernetes.io/tls", data)
}

/// The (key, content) pairs of `--from-file` sources (a file's key is its base name unless
/// given; a directory gives one key per regular file) and `--from-literal=key=value` pairs,
/// for a Secret or a ConfigMap (`what`).
fn gather_sources(
    from_files: &[String],
    from_literals: &[String],
    what: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut data: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |key: String, content: Vec<u8>, source: &str| {
        if !objects::is_data_key(&key) {
            bail!("{key:?} (from {source}) is not a valid {what} key");
        }
        if data.iter().any(|(existing, _)| *existing == key) {
            bail!("cannot add key {key:?}: another source already gave it");
        }
        data.push((key, content));
        Ok(())
    };
    for source in from_files {
        let (key, path) = parse_from_file(source);
        if path.is_dir() {
            if key.is_some() {
                bail!("--from-file={source}: a directory cannot be given a key");
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.is_file())
                .collect();
            entries.sort();
            for file in entries {
                let content = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                add(file_name(&file)?, content, source)?;
            }
        } else {
            let content = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            add(key.map_or_else(|| file_name(&path), Ok)?, content, source)?;
        }
    }
    for literal in from_literals {
        let Some((key, value)) = literal.split_once('=') else {
            bail!("--from-literal={literal}: expected key=value");
        };
        add(key.to_string(), value.as_bytes().to_vec(), literal)?;
    }
    if data.is_empty() {
        bail!("a {what} needs at least one --from-file or --from-literal");
    }
    Ok(data)
}

/// An `Opaque` Secret from `--from-file` sources and `--from-literal=key=value` pairs.
pub fn generic_secret(
    namespace: &str,
    name: &str,
    from_files: &[String],
    from_literals: &[String],
) -> anyhow::Result<Object> {
    let data = gather_sources(from_files, from_literals, "Secret")?
        .into_iter()
        .map(|(key, content)| (key, encode(&content)))
        .collect();
    secret(namespace, name, "Opaque", data)
}

/// A ConfigMap from `--from-file` sources and `--from-literal=key=value` pairs, as
/// `kubectl create configmap`: text in `data`, anything that is not UTF-8 in `binaryData`.
pub fn config_map(
    namespace: &str,
    name: &str,
    from_files: &[String],
    from_literals: &[String],
) -> anyhow::Result<Object> {
    let mut data = Map::new();
    let mut binary = Map::new();
    for (key, content) in gather_sources(from_files, from_literals, "ConfigMap")? {
        match String::from_utf8(content) {
            Ok(text) => data.insert(key, Value::String(text)),
            Err(error) => binary.insert(key, encode(error.as_bytes())),
        };
    }
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    });
    if !binary.is_empty() {
        object["binaryData"] = Value::Object(binary);
    }
    objects::from_json(object)
}

/// A Namespace named `name`.
pub fn namespace(name: &str) -> anyhow::Result<Object> {
    objects::from_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
}

/// Stores a new object; as kubectl's `create`, one that exists already is an error.
pub async fn create(layout: &Layout, object: Object) -> anyhow::Result<String> {
    objects::validate_identity(&object).map_err(|reason| anyhow::anyhow!("{}: {reason}", object.kind))?;
    let store = open_store_for_writes(layout)?;
    let line = format!("{}/{} created", object.kind.to_lowercase(), object.name());
    if store.get(&object.key()).await?.is_some() {
        bail!(
            "Error from server (AlreadyExists): {}s \"{}\" already exists",
            object.kind.to_lowercase(),
            object.name()
        );
    }
    store.apply(object).await?;
    Ok(line)
}

fn secret(namespace: &str, name: &str, kind: &str, data: Map<String, Value>) -> anyhow::Result<Object> {
    objects::from_json(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": kind,
        "data": data,
    }))
}

fn encode(content: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(content))
}

fn file_name(path: &Path) -> anyhow::Result<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_secrets_take_files_directories_and_literals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca-chain.cert.pem"), "CA").unwrap();
        let file = dir.path().join("ca-chain.cert.pem").display().to_string();
        let secret =
            generic_secret("istio-system", "ca", &[file.clone(), format!("other={file}")], &["a=b".into()]).unwrap();
        let data = &secret.body["data"];
        assert_eq!(data["ca-chain.cert.pem"], "Q0E=");
        assert_eq!(data["other"], "Q0E=");
        assert_eq!(data["a"], "Yg==");
        assert_eq!(secret.namespace(), "istio-system");
        let all = generic_secret("default", "dir", &[dir.path().display().to_string()], &[]).unwrap();
        assert_eq!(all.body["data"]["ca-chain.cert.pem"], "Q0E=");
        let twice = generic_secret("default", "x", &[file.clone(), file], &[]).unwrap_err();
        assert!(twice.to_string().contains("another source"), "{twice}");
    }

    #[test]
    fn tls_secrets_need_pem() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = tls_secret("default", "tls", &cert, &key).unwrap_err();
        assert!(error.to_string().contains("is not PEM (the key)"), "{error}");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let secret = tls_secret("default", "tls", &cert, &key).unwrap();
        assert_eq!(secret.body["type"], "kubernetes.io/tls");
        assert!(secret.body["data"]["tls.key"].is_string());
    }

    #[test]
    fn config_maps_keep_text_in_data_and_bytes_in_binary_data() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, "events {}\n").unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, [0xff, 0xfe]).unwrap();
        let from = |path: &Path| path.display().to_string();
        let map = config_map(
            "default",
            "nginx-configmap",
            &[format!("nginx.conf={}", from(&conf)), from(&blob)],
            &["mode=x".into()],
        )
        .unwrap();
        assert_eq!(map.kind, "ConfigMap");
        assert_eq!(map.body["data"]["nginx.conf"], "events {}\n");
        assert_eq!(map.body["data"]["mode"], "x");
        assert_eq!(map.body["binaryData"]["blob"], "//4=");
        let empty = config_map("default", "empty", &[], &[]).unwrap_err();
        assert!(empty.to_string().contains("a ConfigMap needs at least one"), "{empty}");
        let bad = config_map("default", "bad", &[], &["a/b=c".into()]).unwrap_err();
        assert!(bad.to_string().contains("is not a valid ConfigMap key"), "{bad}");
    }
}
