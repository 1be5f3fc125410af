//! The demo's addons that a real program can be had for: Prometheus (Debian's `prometheus`)
//! as 1.4's `prometheus` addon, with 1.4's scrape job names. Kubernetes service discovery
//! cannot work off-cluster, so the jobs read their targets from files (`file_sd_configs`) that
//! the platform keeps current: the control plane's monitoring ports, istio-telemetry's
//! prometheus adapter, and every pod's sidecar on 15090 as the pods come and go.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::install::{Component, CITADEL, GALLEY, MIXER_PROMETHEUS_PORT, PILOT, POLICY, TELEMETRY};
use crate::layout::Layout;

/// 1.4's scrape interval.
const SCRAPE_INTERVAL: &str = "15s";

/// The job whose targets are the pods' sidecars.
const ENVOY_STATS_JOB: &str = "envoy-stats";

fn directory(layout: &Layout) -> PathBuf {
    layout.prometheus()
}

fn config_file(layout: &Layout) -> PathBuf {
    layout.prometheus_config()
}

fn targets_file(layout: &Layout, job: &str) -> PathBuf {
    directory(layout).join("targets").join(format!("{job}.json"))
}

/// The job names 1.4's Prometheus config had, and the control-plane targets of each.
fn control_jobs(components: &[Component]) -> Vec<(&'static str, Vec<String>)> {
    let monitoring = |component: Component| format!("{}:{}", component.address, istio_runtime::ports::MONITORING);
    let mut jobs = Vec::new();
    if components.contains(&TELEMETRY) {
        jobs.push(("istio-mesh", vec![format!("{}:{MIXER_PROMETHEUS_PORT}", TELEMETRY.address)]));
        jobs.push(("istio-telemetry", vec![monitoring(TELEMETRY)]));
    }
    if components.contains(&POLICY) {
        jobs.push(("istio-policy", vec![monitoring(POLICY)]));
    }
    jobs.push(("pilot", vec![monitoring(PILOT)]));
    if components.contains(&GALLEY) {
        jobs.push(("galley", vec![monitoring(GALLEY)]));
    }
    if components.contains(&CITADEL) {
        jobs.push(("citadel", vec![monitoring(CITADEL)]));
    }
    jobs
}

/// Prometheus' config (JSON, which its YAML parser reads) and the control plane's target files.
pub fn write_config(layout: &Layout, components: &[Component]) -> anyhow::Result<PathBuf> {
    let targets = directory(layout).join("targets");
    std::fs::create_dir_all(&targets)?;
    let mut scrape_configs = Vec::new();
    for (job, addresses) in control_jobs(components) {
        write_targets(&targets_file(layout, job), &json!([{"targets": addresses, "labels": {}}]))?;
        scrape_configs.push(json!({
            "job_name": job,
            "file_sd_configs": [{"files": [targets_file(layout, job)]}],
        }));
    }
    if !targets_file(layout, ENVOY_STATS_JOB).exists() {
        write_targets(&targets_file(layout, ENVOY_STATS_JOB), &json!([]))?;
    }
    scrape_configs.push(json!({
        "job_name": ENVOY_STATS_JOB,
        "metrics_path": "/stats/prometheus",
        "file_sd_configs": [{"files": [targets_file(layout, ENVOY_STATS_JOB)], "refresh_interval": "5s"}],
    }));
    let config = json!({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": scrape_configs,
    });
    let path = config_file(layout);
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// Writes a target file only when it changed, through a rename, so Prometheus never reads half.
fn write_targets(path: &std::path::Path, targets: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(targets)?;
    if std::fs::read(path).ok().as_deref() == Some(text.as_slice()) {
        return Ok(());
    }
    let temporary = path.with_extension("json.new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(temporary, path)?;
    Ok(())
}

/// The sidecars to scrape: every running pod with an `istio-proxy` container, by its address,
/// labelled as 1.4's relabelling did (`namespace`, `pod_name`).
pub fn write_envoy_targets(layout: &Layout, pods: &[(String, String, String)]) -> anyhow::Result<()> {
    if !directory(layout).exists() {
        return Ok(());
    }
    let mut sorted: Vec<&(String, String, String)> = pods.iter().collect();
    sorted.sort();
    let groups: Vec<Value> = sorted
        .into_iter()
        .map(|(namespace, name, ip)| {
            json!({"targets": [format!("{ip}:15090")], "labels": {"namespace": namespace, "pod_name": name}})
        })
        .collect();
    write_targets(&targets_file(layout, ENVOY_STATS_JOB), &Value::Array(groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_keep_1_4s_names_and_targets_follow_the_pods() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        let path = write_config(&layout, &[CITADEL, GALLEY, PILOT, POLICY, TELEMETRY]).expect("config");
        let config: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
        let jobs: Vec<&str> = config["scrape_configs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|job| job["job_name"].as_str())
            .collect();
        assert_eq!(
            jobs,
            ["istio-mesh", "istio-telemetry", "istio-policy", "pilot", "galley", "citadel", "envoy-stats"]
        );
        let mesh: Value =
            serde_json::from_slice(&std::fs::read(targets_file(&layout, "istio-mesh")).expect("read")).expect("json");
        assert_eq!(mesh[0]["targets"][0], "10.44.0.15:42422");
        write_envoy_targets(&layout, &[("default".into(), "productpage-v1-x".into(), "10.44.1.4".into())])
            .expect("targets");
        let envoys: Value =
            serde_json::from_slice(&std::fs::read(targets_file(&layout, ENVOY_STATS_JOB)).expect("read"))
                .expect("json");
        assert_eq!(envoys[0]["targets"][0], "10.44.1.4:15090");
        assert_eq!(envoys[0]["labels"]["pod_name"], "productpage-v1-x");
    }
}
