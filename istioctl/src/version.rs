//! `istioctl version [--remote] [--short] [-o json|yaml]`: the client's version, each
//! control-plane component's (from its `/version` on the monitoring port, on this host's mesh or
//! through a cluster's API server) and the data plane's (the proxies' versions Pilot knows, from
//! `/debug/syncz`), printed as 1.4's `istioctl version` printed them.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Ask the control plane and Pilot too; `--remote=false` prints the client only.
    #[arg(long = "remote", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    remote: bool,
    /// One version per component; `--short=false` gives the full build information.
    #[arg(short = 's', long = "short", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    short: bool,
    /// One of 'yaml' or 'json'.
    #[arg(short = 'o', long = "output", value_parser = ["yaml", "json"])]
    output: Option<String>,
    #[command(flatten)]
    kube: crate::kube::KubeArgs,
}

/// 1.4's BuildInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildInfo {
    pub version: String,
}

impl BuildInfo {
    fn to_json(&self) -> Value {
        json!({"version": self.version, "revision": "unknown", "golang_version": "", "status": "Clean", "tag": self.version})
    }

    /// The `--short=false` form: Go's `%#v` of 1.4's BuildInfo.
    fn long_form(&self) -> String {
        format!(
            "version.BuildInfo{{Version:{:?}, GitRevision:\"unknown\", GolangVersion:\"\", BuildStatus:\"Clean\", GitTag:{:?}}}",
            self.version, self.version
        )
    }
}

/// What `version` learned.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// Control-plane components and their versions, in the order found.
    pub mesh: Option<Vec<(String, BuildInfo)>>,
    /// Each proxy's id and Istio version.
    pub data_plane: Option<Vec<(String, String)>>,
}

/// 1.4's component names for this host's control-plane processes.
fn local_component(name: &str) -> Option<&'static str> {
    match name {
        "pilot" => Some("pilot"),
        "galley" => Some("galley"),
        "citadel" => Some("citadel"),
        "sidecar-injector" => Some("sidecar-injector"),
        "istio-policy" => Some("policy"),
        "istio-telemetry" => Some("telemetry"),
        _ => None,
    }
}

/// The version in a component's `/version` answer (`pilot 1.4.6`).
fn parse_version(body: &str) -> Option<String> {
    body.split_whitespace().last().map(str::to_string)
}

fn proxies(syncz: &str) -> anyhow::Result<Vec<(String, String)>> {
    let entries: Vec<Value> = serde_json::from_str(syncz).context("Pilot's /debug/syncz is not a JSON list")?;
    Ok(entries
        .iter()
        .map(|entry| {
            (
                entry["proxy"].as_str().unwrap_or_default().to_string(),
                entry["istio_version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

fn local_versions() -> anyhow::Result<Versions> {
    let layout = istio_local::Layout::from_env();
    let plan = istio_local::install::Plan::load(&layout)?;
    let mut mesh = Vec::new();
    for component in plan.components() {
        let Some(name) = local_component(component.name) else { continue };
        let address = format!("{}:{}", component.address, istio_runtime::ports::MONITORING);
        match crate::proxy_status::http_get(&address, "/version").ok().as_deref().and_then(parse_version) {
            Some(version) => mesh.push((name.to_string(), BuildInfo { version })),
            None => eprintln!("{name} at {address} did not answer /version"),
        }
    }
    let pilot = crate::proxy_status::pilot_debug_address(None);
    let data_plane =
        crate::proxy_status::http_get(&pilot, "/debug/syncz").ok().map(|body| proxies(&body)).transpose()?;
    Ok(Versions { mesh: Some(mesh), data_plane })
}

async fn cluster_versions(kube_args: &crate::kube::KubeArgs) -> anyhow::Result<Versions> {
    let client = kube_args.client().await?;
    let namespace = &kube_args.istio_namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let running = pods
        .list(&ListParams::default().labels("istio").fields("status.phase=Running"))
        .await
        .with_context(|| format!("listing the Istio pods in {namespace}"))?;
    let mut mesh = Vec::new();
    for pod in running.items {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut component = labels.get("istio").cloned().unwrap_or_default();
        if component == "mixer" {
            component = labels.get("istio-mixer-type").cloned().unwrap_or(component);
        }
        if !matches!(component.as_str(), "pilot" | "citadel" | "galley" | "telemetry" | "policy" | "sidecar-injector") {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let port = istio_runtime::ports::MONITORING;
        match crate::kube::pod_http(&client, namespace, &name, port, "GET", "/version").await {
            Ok(body) => match parse_version(&body) {
                Some(version) => mesh.push((component, BuildInfo { version })),
                None => eprintln!("{name}: /version gave no version"),
            },
            Err(error) => eprintln!("error reaching {name}'s /version: {error:#}"),
        }
    }
    let data_plane = match crate::kube::first_pod(&client, namespace, "istio=pilot", "Pilot").await {
        Ok(pilot) => {
            let body = crate::kube::pod_http(&client, namespace, &pilot, 8080, "GET", "/debug/syncz").await?;
            Some(proxies(&body)?)
        }
        Err(_) => None,
    };
    Ok(Versions { mesh: Some(mesh), data_plane })
}

/// 1.4's summary of proxy versions: `1.4.6 (8 proxies)`, one per version.
fn render_proxy_versions(proxies: &[(String, String)]) -> String {
    if proxies.is_empty() {
        return "none".to_string();
    }
    let mut by_version: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, version) in proxies {
        *by_version.entry(version.as_str()).or_default() += 1;
    }
    by_version.iter().map(|(version, count)| format!("{version} ({count} proxies)")).collect::<Vec<_>>().join(", ")
}

/// The text 1.4 printed.
pub(crate) fn render(
    client: &BuildInfo,
    versions: &Versions,
    short: bool,
    output: Option<&str>,
) -> anyhow::Result<String> {
    let mesh = versions.mesh.as_ref().filter(|mesh| !mesh.is_empty());
    match output {
        Some(format) => {
            let mut document = json!({"clientVersion": client.to_json()});
            if let Some(mesh) = mesh {
                document["meshVersion"] = mesh
                    .iter()
                    .map(|(component, info)| json!({"Component": component, "Info": info.to_json()}))
                    .collect();
            }
            if let Some(proxies) = &versions.data_plane {
                document["dataPlaneVersion"] =
                    proxies.iter().map(|(id, version)| json!({"ID": id, "IstioVersion": version})).collect();
            }
            Ok(if format == "json" {
                serde_json::to_string_pretty(&document)? + "\n"
            } else {
                serde_yaml::to_string(&document)?
            })
        }
        None => {
            let mut text = String::new();
            if short {
                match mesh {
                    Some(mesh) => {
                        text += &format!("client version: {}\n", client.version);
                        // Identical versions read as one line, as 1.4 coalesced them.
                        if mesh.iter().all(|(_, info)| info.version == mesh[0].1.version) {
                            text += &format!("control plane version: {}\n", mesh[0].1.version);
                        } else {
                            for (component, info) in mesh {
                                text += &format!("{component} version: {}\n", info.version);
                            }
                        }
                    }
                    None => text += &format!("{}\n", client.version),
                }
                if let Some(proxies) = &versions.data_plane {
                    text += &format!("data plane version: {}\n", render_proxy_versions(proxies));
                }
            } else {
                match mesh {
                    Some(mesh) => {
                        text += &format!("client version: {}\n", client.long_form());
                        for (component, info) in mesh {
                            text += &format!("{component} version: {}\n", info.long_form());
                        }
                    }
                    None => text += &format!("{}\n", client.long_form()),
                }
                for (id, version) in versions.data_plane.iter().flatten() {
                    text += &format!("data plane version: version.ProxyInfo{{ID:{id:?}, IstioVersion:{version:?}}}\n");
                }
            }
            Ok(text)
        }
    }
}

pub(crate) fn run(args: &VersionArgs) -> anyhow::Result<i32> {
    let client = BuildInfo { version: istio_runtime::VERSION.to_string() };
    let mut versions = Versions::default();
    if args.remote {
        let layout = istio_local::Layout::from_env();
        let found = if args.kube.wants_cluster(&layout) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(cluster_versions(&args.kube))
        } else if layout.install_file().exists() {
            local_versions()
        } else {
            Err(anyhow::anyhow!("no mesh is installed on this host and no kubeconfig was given"))
        };
        match found {
            Ok(found) => versions = found,
            Err(error) => {
                eprintln!("will use `--remote=false` to retrieve version info due to {:?}", format!("{error:#}"))
            }
        }
    }
    print!("{}", render(&client, &versions, args.short, args.output.as_deref())?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> BuildInfo {
        BuildInfo { version: version.to_string() }
    }

    #[test]
    fn short_output_coalesces_identical_versions() {
        let versions = Versions {
            mesh: Some(vec![("pilot".into(), info("1.4.6")), ("galley".into(), info("1.4.6"))]),
            data_plane: Some(vec![("a.default".into(), "1.4.6".into()), ("b.default".into(), "1.4.6".into())]),
        };
        assert_eq!(
            render(&info("1.4.6"), &versions, true, None).unwrap(),
            "client version: 1.4.6\ncontrol plane version: 1.4.6\ndata plane version: 1.4.6 (2 proxies)\n"
        );
        let mixed = Versions {
            mesh: Some(vec![("pilot".into(), info("1.4.6")), ("galley".into(), info("1.4.5"))]),
            data_plane: Some(vec![("a.default".into(), "1.4.6".into()), ("b.default".into(), "1.4.5".into())]),
        };
        assert_eq!(
            render(&info("1.4.6"), &mixed, true, None).unwrap(),
            "client version: 1.4.6\npilot version: 1.4.6\ngalley version: 1.4.5\ndata plane version: 1.4.5 (1 proxies), 1.4.6 (1 proxies)\n"
        );
    }

    #[test]
    fn client_only_and_long_and_structured_forms() {
        assert_eq!(render(&info("1.4.6"), &Versions::default(), true, None).unwrap(), "1.4.6\n");
        let versions = Versions { mesh: Some(vec![("pilot".into(), info("1.4.6"))]), data_plane: Some(vec![]) };
        let long = render(&info("1.4.6"), &versions, false, None).unwrap();
        assert!(long.starts_with("client version: version.BuildInfo{Version:\"1.4.6\""), "{long}");
        assert!(long.contains("pilot version: version.BuildInfo{"), "{long}");
        let short = render(&info("1.4.6"), &versions, true, None).unwrap();
        assert!(short.ends_with("data plane version: none\n"), "{short}");
        let document: Value =
            serde_json::from_str(&render(&info("1.4.6"), &versions, true, Some("json")).unwrap()).unwrap();
        assert_eq!(document["clientVersion"]["version"], "1.4.6");
        assert_eq!(document["meshVersion"][0]["Component"], "pilot");
        assert_eq!(document["dataPlaneVersion"], json!([]));
    }
}
