//! `istioctl verify-install`, as 1.4's:
//! - with `-f FILE` (an installation's YAML, as `manifest generate` writes it) or `--set …`
//!   (the installation generated from a profile): every object of the installation is looked up
//!   in the cluster; Deployments must have rolled out and DaemonSets be ready. Each object is
//!   reported, then the CRD and Istio Deployment counts; anything missing or not ready fails
//!   the command, with every such object named (1.4 stopped at the first);
//! - with neither: the pre-installation check of the cluster (API reachable, Kubernetes
//!   version, the Istio namespace free, the rights an installation needs, admission webhooks).

use std::path::PathBuf;

use anyhow::Context;
use istio_manifest::{generate, parse_objects, Install};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::Value;

use crate::cluster_apply::{api_for, daemon_set_progress, deployment_progress, display, Resources};
use crate::kube::KubeArgs;

/// The oldest Kubernetes the manifests are built for.
const MIN_KUBERNETES: (u32, u32) = (1, 25);

#[derive(Debug, clap::Args)]
pub struct VerifyInstallArgs {
    /// Istio YAML installation file (repeatable); an IstioControlPlane file is generated first.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Verify the installation of a profile with these settings: `profile=demo`, ….
    #[arg(short = 's', long = "set")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Print each object checked.
    #[arg(long = "enableVerbose", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub verbose: bool,
}

pub(crate) fn run(args: &VerifyInstallArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        if args.files.is_empty() && args.sets.is_empty() {
            return pre_check(args).await;
        }
        let (source, objects) = installation(args)?;
        let client = args.kube.client().await?;
        post_install(&client, &source, &objects, args).await
    })
}

/// The objects to look for, and how to name where they came from.
fn installation(args: &VerifyInstallArgs) -> anyhow::Result<(String, Vec<Value>)> {
    let mut objects = Vec::new();
    let mut overlays = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let name = file.display().to_string();
        let parsed = parse_objects(&text, &name)?;
        if parsed.values().any(|object| object["kind"] == "IstioControlPlane") {
            overlays.push((name, text));
        } else {
            objects.extend(parsed.into_values());
        }
    }
    if !overlays.is_empty() || !args.sets.is_empty() {
        let install = Install::resolve(&args.sets, &overlays)?;
        objects.extend(generate(&install)?.into_iter().map(|manifest| manifest.object));
    }
    let source = match args.files.first() {
        Some(file) => file.display().to_string(),
        None => format!("--set {}", args.sets.join(" --set ")),
    };
    Ok((source, objects))
}

/// Why an object of the installation is missing or not ready; None when it is fine.
async fn check(client: &Client, resources: &Resources, object: &Value) -> anyhow::Result<Option<String>> {
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = object["metadata"]["name"].as_str().context("an object without a name")?;
    let missing = |error: kube::Error| match error {
        kube::Error::Api(status) => Ok(Some(status.message)),
        other => Err(anyhow::Error::new(other).context(format!("reading {}", display(object)))),
    };
    match object["kind"].as_str() {
        Some("Deployment") => match Api::<Deployment>::namespaced(client.clone(), namespace).get(name).await {
            Ok(deployment) => Ok(deployment_progress(&deployment)
                .map(|reason| format!("waiting for deployment \"{name}\" rollout to finish: {reason}"))),
            Err(error) => missing(error),
        },
        Some("DaemonSet") => match Api::<DaemonSet>::namespaced(client.clone(), namespace).get(name).await {
            Ok(daemon_set) => Ok(daemon_set_progress(&daemon_set)),
            Err(error) => missing(error),
        },
        _ => match api_for(client, &resources.of(object), object).get(name).await {
            Ok(_) => Ok(None),
            Err(error) => missing(error),
        },
    }
}

async fn post_install(
    client: &Client,
    source: &str,
    objects: &[Value],
    args: &VerifyInstallArgs,
) -> anyhow::Result<i32> {
    let resources = Resources::new(objects);
    let (mut crds, mut deployments, mut failures) = (0, 0, Vec::new());
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
        match check(client, &resources, object).await? {
            Some(reason) => {
                let failure = format!(
                    "Istio installation failed, incomplete or does not match \"{source}\" - the required {kind}:{name} is not ready due to: {reason}"
                );
                println!("{failure}");
                failures.push(failure);
            }
            None => {
                if kind == "CustomResourceDefinition" {
                    crds += 1;
                }
                if kind == "Deployment" && namespace == args.kube.istio_namespace && name.starts_with("istio-") {
                    deployments += 1;
                }
                if args.verbose {
                    println!("{kind}: {name}.{namespace} checked successfully");
                }
            }
        }
    }
    println!("Checked {crds} crds");
    println!("Checked {deployments} Istio Deployments");
    if failures.is_empty() {
        println!("Istio is installed successfully");
        Ok(0)
    } else {
        println!("Istio installation failed: {} of {} objects are missing or not ready", failures.len(), objects.len());
        Ok(1)
    }
}

/// The rights an installation uses, as (API group, resource).
const NEEDED_RIGHTS: [(&str, &str); 10] = [
    ("", "namespaces"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("", "serviceaccounts"),
    ("", "configmaps"),
    ("", "services"),
    ("apps", "deployments"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
];

async fn pre_check(args: &VerifyInstallArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    println!("\nChecking the cluster to make sure it is ready for Istio installation...\n");
    println!("#1. Kubernetes-api\n-----------------------");
    let client = match args.kube.client().await {
        Ok(client) => client,
        Err(error) => {
            println!("Failed to initialize the Kubernetes client: {error:#}.");
            return Ok(1);
        }
    };
    println!("Can initialize the Kubernetes client.");
    let version = match client.apiserver_version().await {
        Ok(version) => version,
        Err(error) => {
            println!("Failed to query the Kubernetes API Server: {error}.");
            println!("Istio install NOT verified because the cluster is unreachable.");
            return Ok(1);
        }
    };
    println!("Can query the Kubernetes API Server.");

    println!("\n#2. Kubernetes-version\n-----------------------");
    let major: u32 = version.major.trim_end_matches('+').parse().unwrap_or(0);
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    if (major, minor) < MIN_KUBERNETES {
        println!(
            "The Kubernetes API version: {} is lower than the minimum version: {}.{}",
            version.git_version, MIN_KUBERNETES.0, MIN_KUBERNETES.1
        );
        failed = true;
    } else {
        println!("Istio is compatible with Kubernetes: {}.", version.git_version);
    }

    println!("\n#3. Istio-existence\n-----------------------");
    let namespace = &args.kube.istio_namespace;
    match Api::<Namespace>::all(client.clone()).get_opt(namespace).await {
        Ok(Some(_)) => {
            println!("Istio cannot be installed because the Istio namespace '{namespace}' is already in use");
            failed = true;
        }
        Ok(None) => println!("Istio will be installed in the {namespace} namespace."),
        Err(error) => {
            println!("Failed to look up the namespace {namespace}: {error}");
            failed = true;
        }
    }

    println!("\n#4. Kubernetes-setup\n-----------------------");
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let (mut can, mut cannot) = (Vec::new(), Vec::new());
    for (group, resource) in NEEDED_RIGHTS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    verb: Some("create".to_string()),
                    namespace: (resource != "namespaces"
                        && !resource.starts_with("cluster")
                        && !resource.starts_with("custom"))
                    .then(|| namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let allowed = match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => answer.status.is_some_and(|status| status.allowed),
            Err(_) => false,
        };
        if allowed {
            can.push(resource)
        } else {
            cannot.push(resource)
        }
    }
    if cannot.is_empty() {
        println!("Can create necessary Kubernetes configurations: {}. ", can.join(","));
    } else {
        println!("Can not create necessary Kubernetes configurations: {}. ", cannot.join(","));
        failed = true;
    }

    println!("\n#5. SideCar-Injector\n-----------------------");
    let webhooks_served = client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await
        .is_ok_and(|list| list.resources.iter().any(|resource| resource.name == "mutatingwebhookconfigurations"));
    if webhooks_served {
        println!("This Kubernetes cluster supports automatic sidecar injection. To enable automatic sidecar injection see https://istio.io/docs/setup/kubernetes/additional-setup/sidecar-injection/#deploying-an-app");
    } else {
        println!("This Kubernetes cluster deployed without MutatingAdmissionWebhook support.See https://istio.io/docs/setup/kubernetes/additional-setup/sidecar-injection/#automatic-sidecar-injection");
    }
    println!("\n-----------------------");
    if failed {
        println!("Install Pre-Check failed. The cluster is not ready for Istio installation.");
        return Ok(1);
    }
    println!("Install Pre-Check passed! The cluster is ready for Istio installation.");
    Ok(0)
}
