//! Sidecar injection as Istio 1.4 did it, shared by the injector webhook and `istioctl
//! kube-inject`: the injector's inputs (`config`, `values`, the mesh config), the policy that
//! decides whether a pod gets a sidecar, the sidecar rendered from the template, the injection
//! applied to whole objects, the JSONPatch the webhook answers with, and its removal
//! (`istioctl x kube-uninject`).
//!
//! Serving the webhook and reloading the files are the sidecar-injector component's job.

pub mod config;
pub mod inject;
pub mod patch;
pub mod policy;
pub mod template;
pub mod uninject;
pub mod validate;

use std::path::PathBuf;

pub use config::{InjectorConfig, ProxyDefaults};
pub use inject::Injector;

/// Where the injector's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    /// The ConfigMap's `config` key (policy, selectors, template); 1.4's defaults without one.
    pub inject_config: Option<PathBuf>,
    /// The ConfigMap's `values` key (Helm values); 1.4's defaults without one.
    pub values: Option<PathBuf>,
    /// The mesh config; none means `{}`.
    pub mesh_config: Option<PathBuf>,
}

/// A configuration file that cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Mesh(#[from] istio_config::mesh::MeshFileError),
    #[error("{origin}: {source}")]
    MeshDefaults { origin: String, source: config::MeshDefaultsError },
}

impl ConfigFiles {
    /// Reads and checks every file.
    pub fn load(&self) -> Result<Injector, LoadError> {
        let config = match &self.inject_config {
            Some(path) => InjectorConfig::load(path)?,
            None => InjectorConfig::default(),
        };
        let values = match &self.values {
            Some(path) => config::load_values(path)?,
            None => config::default_values(),
        };
        let mesh = match &self.mesh_config {
            Some(path) => istio_config::mesh::load(path)?,
            None => serde_json::json!({}),
        };
        Injector::new(config, values, &mesh).map_err(|source| LoadError::MeshDefaults {
            origin: self.mesh_config.as_ref().map_or("mesh config".into(), |path| path.display().to_string()),
            source,
        })
    }

    /// The files' contents, to notice changes.
    pub fn fingerprint(&self) -> Vec<Option<Vec<u8>>> {
        [self.inject_config.as_ref(), self.values.as_ref(), self.mesh_config.as_ref()]
            .into_iter()
            .map(|path| path.and_then(|path| std::fs::read(path).ok()))
            .collect()
    }
}
