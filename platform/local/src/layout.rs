//! Where the local platform keeps things: one root directory (`ISTIO_LOCAL_ROOT`, by default
//! `/var/lib/istio-rs/local`) holding the object store, the control plane's config and
//! certificates, pod volumes, logs, process ids and the daemon's state.

use std::path::{Path, PathBuf};

/// The directory tree of one local installation.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `ISTIO_LOCAL_ROOT`, or `/var/lib/istio-rs/local`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os("ISTIO_LOCAL_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/istio-rs/local")),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store (one YAML file per object); Galley reads it as its config source.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Config files of the control plane (mesh config, injector config and values).
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn mesh_config(&self) -> PathBuf {
        self.config().join("mesh")
    }

    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// The key pods' service-account tokens are signed with (the API server's part).
    pub fn service_account_key(&self) -> PathBuf {
        self.certs().join("service-account.key")
    }

    /// Its public half, which Citadel checks tokens with.
    pub fn service_account_public_key(&self) -> PathBuf {
        self.certs().join("service-account.pub")
    }

    /// Logs: `control/<component>.log` and `pods/<ns>/<pod>/<container>.log`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The Prometheus addon's config, target files and data: `prometheus/`.
    pub fn prometheus(&self) -> PathBuf {
        self.root.join("prometheus")
    }

    pub fn prometheus_config(&self) -> PathBuf {
        self.prometheus().join("prometheus.yml")
    }

    pub fn control_log(&self, component: &str) -> PathBuf {
        self.logs().join("control").join(format!("{component}.log"))
    }

    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.logs().join("pods").join(namespace).join(pod).join(format!("{container}.log"))
    }

    /// A pod's volumes: `volumes/<ns>/<pod>/<volume>`.
    pub fn pod_volumes(&self, namespace: &str, pod: &str) -> PathBuf {
        self.root.join("volumes").join(namespace).join(pod)
    }

    /// A control-plane component's Secret volume, as its Deployment mounts it in 1.4:
    /// `volumes/control/<component>/<volume>` (Citadel's `cacerts`).
    pub fn control_volume(&self, component: &str, volume: &str) -> PathBuf {
        self.root.join("volumes").join("control").join(component).join(volume)
    }

    /// Process group ids of everything the platform started, one file each, so teardown
    /// finds them even after the daemon died.
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }

    pub fn daemon_pid(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.logs().join("daemon.log")
    }

    /// What the installation created outside the root (directories made as mount points),
    /// so teardown can remove exactly that.
    pub fn created_paths(&self) -> PathBuf {
        self.root.join("created-paths")
    }

    /// External names cluster DNS answers itself (`/etc/hosts` format).
    pub fn dns_hosts(&self) -> PathBuf {
        self.config().join("hosts")
    }

    /// The host's IP forwarding setting before the platform turned it on.
    pub fn saved_ip_forward(&self) -> PathBuf {
        self.root.join("ip-forward.saved")
    }

    /// The installed profile and settings.
    pub fn install_file(&self) -> PathBuf {
        self.root.join("install.json")
    }

    /// Spec files of containers handed to the launcher.
    pub fn container_specs(&self) -> PathBuf {
        self.root.join("containers")
    }
}
