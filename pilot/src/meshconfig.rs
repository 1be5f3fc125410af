//! The mesh config file (`--meshConfig`, the `mesh` key of 1.4's `istio` ConfigMap): the
//! settings Pilot generates with, and a watch that re-reads the file when it changes, as
//! 1.4's Pilot did, so a new `outboundTrafficPolicy` or access-log setting reaches every proxy
//! with a full push. A file that no longer parses is reported and the last good settings stay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::model::MeshSettings;

/// Why the mesh settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MeshSettingsError {
    #[error("PILOT_TRACE_SAMPLING {0:?} is not a percentage between 0 and 100")]
    TraceSampling(String),
    #[error(transparent)]
    File(#[from] istio_config::mesh::MeshFileError),
    #[error("{}: {source}", path.display())]
    Decode { path: PathBuf, source: istio_api::json::JsonError },
}

/// How often the file is looked at; ConfigMap volumes change by whole-file replacement.
const POLL: Duration = Duration::from_secs(1);

/// The mesh settings from `path` (defaults when there is none), with `domain` as the suffix.
pub fn load(path: Option<&Path>, domain: &str) -> Result<MeshSettings, MeshSettingsError> {
    let mut mesh = MeshSettings { domain_suffix: domain.to_string(), ..MeshSettings::default() };
    if let Ok(text) = std::env::var("PILOT_TRACE_SAMPLING") {
        let sampling: f64 = text
            .parse()
            .ok()
            .filter(|value| (0.0..=100.0).contains(value))
            .ok_or_else(|| MeshSettingsError::TraceSampling(text.clone()))?;
        mesh.trace_sampling = sampling;
    }
    let Some(path) = path else { return Ok(mesh) };
    let (value, config) = read(path)?;
    mesh.ingress = istio_config::kube_ingress::IngressSettings::from_mesh_config(&value, domain);
    // 1.4's default mesh config turns tracing on; a file that leaves the field out keeps it on.
    mesh.enable_tracing = config.enable_tracing || value.get("enableTracing").is_none();
    if let Some(timeout) = config.connect_timeout {
        mesh.connect_timeout = timeout;
    }
    if !config.trust_domain.is_empty() {
        mesh.trust_domain = config.trust_domain.clone();
    }
    mesh.trust_domain_aliases = config.trust_domain_aliases.clone();
    if !config.root_namespace.is_empty() {
        mesh.root_namespace = config.root_namespace.clone();
    }
    mesh.auto_mtls = config.enable_auto_mtls.unwrap_or(false);
    mesh.sds_uds_path = config.sds_uds_path.clone();
    mesh.mixer = crate::model::MixerSettings {
        check_server: config.mixer_check_server.clone(),
        report_server: config.mixer_report_server.clone(),
        disable_policy_checks: config.disable_policy_checks,
        policy_check_fail_open: config.policy_check_fail_open,
        disable_http_reports: config.disable_mixer_http_reports,
        client_side_policy_check: config.enable_client_side_policy_check,
        report_batch_max_entries: config.report_batch_max_entries,
        report_batch_max_time: config.report_batch_max_time,
    };
    mesh.access_log_file = config.access_log_file.clone();
    mesh.access_log_format = config.access_log_format.clone();
    if config.access_log_encoding != 0 && !mesh.access_log_file.is_empty() {
        tracing::warn!("accessLogEncoding JSON is not supported; proxies log text");
    }
    if config.proxy_listen_port > 0 {
        mesh.proxy_listen_port = u32::try_from(config.proxy_listen_port).unwrap_or(mesh.proxy_listen_port);
    }
    mesh.locality_lb_setting = config.locality_lb_setting.clone();
    if let Some(policy) = config.outbound_traffic_policy {
        mesh.allow_any = policy.mode
            != istio_api::pb::istio::mesh::v1alpha1::mesh_config::outbound_traffic_policy::Mode::RegistryOnly as i32;
    }
    Ok(mesh)
}

/// The file as JSON (to tell fields left out from defaults) and as the typed MeshConfig.
fn read(
    path: &Path,
) -> Result<(serde_json::Value, istio_api::pb::istio::mesh::v1alpha1::MeshConfig), MeshSettingsError> {
    let value = istio_config::mesh::load(path)?;
    let config = istio_api::json::decode(istio_api::kinds::MESH_CONFIG_PROTO, &value)
        .map_err(|source| MeshSettingsError::Decode { path: path.to_path_buf(), source })?;
    Ok((value, config))
}

/// The first MCP address in the mesh config's `configSources`.
pub fn mcp_source(path: Option<&Path>) -> Result<Option<String>, MeshSettingsError> {
    let Some(path) = path else { return Ok(None) };
    let (_, config) = read(path)?;
    Ok(config
        .config_sources
        .iter()
        .map(|source| source.address.trim_start_matches("mcp://").to_string())
        .find(|address| !address.starts_with("fs://") && !address.is_empty()))
}

/// Watches `path`; every change that parses is sent, one that does not is logged and skipped.
pub fn watch(path: PathBuf, domain: String, initial: MeshSettings) -> watch::Receiver<MeshSettings> {
    let (updates, receiver) = watch::channel(initial);
    let mut last_text = std::fs::read_to_string(&path).ok();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            if updates.is_closed() {
                return;
            }
            let text = std::fs::read_to_string(&path).ok();
            if text.is_none() || text == last_text {
                continue;
            }
            last_text = text;
            match load(Some(&path), &domain) {
                Ok(mesh) => {
                    if *updates.borrow() != mesh {
                        tracing::info!(file = %path.display(), "mesh config changed");
                        updates.send_replace(mesh);
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), "mesh config not applied, the last good one stays: {error:#}")
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_sent_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh");
        std::fs::write(&path, "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n").unwrap();
        let initial = load(Some(&path), "cluster.local").unwrap();
        assert!(initial.allow_any);
        let mut updates = watch(path.clone(), "cluster.local".into(), initial);
        std::fs::write(&path, "outboundTrafficPolicy: [not, a, map\n").unwrap();
        tokio::time::sleep(POLL * 2 + Duration::from_millis(300)).await;
        assert!(!updates.has_changed().unwrap(), "a file that does not parse is not sent");
        std::fs::write(&path, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n").unwrap();
        tokio::time::timeout(POLL * 5, updates.changed()).await.unwrap().unwrap();
        assert!(!updates.borrow().allow_any);
    }

    #[test]
    fn the_root_namespace_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh");
        std::fs::write(&path, "rootNamespace: istio-config\n").unwrap();
        assert_eq!(load(Some(&path), "cluster.local").unwrap().root_namespace, "istio-config");
        std::fs::write(&path, "trustDomain: example.org\n").unwrap();
        assert_eq!(load(Some(&path), "cluster.local").unwrap().root_namespace, "istio-system");
        assert_eq!(load(None, "cluster.local").unwrap().root_namespace, "istio-system");
    }
}
