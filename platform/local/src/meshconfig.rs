//! The mesh config as Kubernetes holds it: the `mesh` key of the `istio` ConfigMap in
//! `istio-system`. The ConfigMap is created from the installation's mesh config file, and a
//! change to it is written back to that file, which Pilot, Galley and the injector watch, as
//! the kubelet updates the ConfigMap volume they mount. So the tasks' own step works here:
//! `get configmap istio -n istio-system -o yaml | sed … | apply -f -`.

use anyhow::Context;
use istio_config::object::Object;
use istio_config::store::Store;
use serde_json::{json, Value};

use crate::install::SYSTEM_NAMESPACE;
use crate::layout::Layout;
use crate::objects;

/// The ConfigMap's name, as in 1.4.
pub(crate) const CONFIG_MAP: &str = "istio";

/// Creates the `istio` ConfigMap from the mesh config file unless it exists.
pub(crate) async fn ensure_config_map(layout: &Layout, store: &dyn Store) -> anyhow::Result<()> {
    let key = objects::key("", "ConfigMap", SYSTEM_NAMESPACE, CONFIG_MAP);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let path = layout.mesh_config();
    let mesh = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let object = objects::from_json(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": SYSTEM_NAMESPACE, "labels": {"app": "istio", "release": "istio"}},
        "data": {"mesh": mesh},
    }))?;
    store.apply(object).await?;
    Ok(())
}

/// Writes the ConfigMap's `mesh` to the mesh config file when they differ; returns whether it
/// did. The file is replaced whole, so a reader never sees half of it; whether the new config
/// is valid is for its readers to judge (each keeps its last good one).
pub(crate) fn sync_file(layout: &Layout, config_maps: &[Object]) -> anyhow::Result<bool> {
    let Some(mesh) = config_maps
        .iter()
        .find(|map| map.namespace() == SYSTEM_NAMESPACE && map.name() == CONFIG_MAP)
        .and_then(|map| map.body.get("data")?.get("mesh").and_then(Value::as_str))
    else {
        // No ConfigMap (or no `mesh` key): the file keeps what it has.
        return Ok(false);
    };
    let path = layout.mesh_config();
    if std::fs::read_to_string(&path).is_ok_and(|current| current == mesh) {
        return Ok(false);
    }
    let staging = path.with_extension("new");
    std::fs::write(&staging, mesh).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_written_to_the_file() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path().to_path_buf());
        std::fs::create_dir_all(layout.config()).unwrap();
        std::fs::write(layout.mesh_config(), "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n").unwrap();
        let map = |mesh: &str| {
            objects::from_json(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"mesh": mesh}}))
            .unwrap()
        };
        assert!(!sync_file(&layout, &[]).unwrap(), "no ConfigMap, no change");
        let registry_only = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n";
        assert!(sync_file(&layout, &[map(registry_only)]).unwrap());
        assert_eq!(std::fs::read_to_string(layout.mesh_config()).unwrap(), registry_only);
        assert!(!sync_file(&layout, &[map(registry_only)]).unwrap(), "written once");
    }
}
