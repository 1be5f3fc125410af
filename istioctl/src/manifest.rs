//! `istioctl manifest`, as 1.4's:
//! - `generate [--set K=V]… [-f overlay.yaml]… [-o DIR]`: the Kubernetes objects of an
//!   installation (a profile with overlays and overrides), as one YAML stream on stdout, or one
//!   file per component under `-o DIR`;
//! - `apply …`: the same objects applied to a cluster (see `cluster_apply`), or, with no
//!   cluster configured, the installation on this host (`istioctl install`);
//! - `diff A B`: two manifests (files, or directories with `-r`) compared object by object.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use istio_local::Layout;
use istio_manifest::{generate, manifest_diff, parse_objects, to_yaml, DiffFilters, Install, Manifest, ObjectMap};

use crate::cluster_apply::{self, ApplyOptions};
use crate::kube::KubeArgs;

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Print the Kubernetes objects of an installation.
    Generate(GenerateArgs),
    /// Generate the installation and apply it to a cluster (or install it on this host).
    Apply(ApplyArgs),
    /// Compare two manifests (files, or directories with -r) object by object.
    Diff(DiffArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub install: InstallSpec,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Do not ask before installing the default profile when nothing is set.
    #[arg(long = "skip-confirmation", short = 'y')]
    pub skip_confirmation: bool,
    /// Wait until the Deployments and DaemonSets are ready (`--wait=false` returns at once).
    #[arg(short = 'w', long = "wait", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long to wait for readiness.
    #[arg(long = "readiness-timeout", default_value = "300s", value_parser = humantime::parse_duration)]
    pub readiness_timeout: Duration,
    /// Send every object as a server-side dry run: the cluster checks them and stores nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The two manifests.
    #[arg(num_args = 2, required = true)]
    pub manifests: Vec<PathBuf>,
    /// Compare directories: every `*.yaml` in each, as one manifest.
    #[arg(short = 'r', long = "directory")]
    pub directory: bool,
    /// Only these objects, `Kind:namespace:name` (comma-separated, `*` for any).
    #[arg(long = "select", default_value = "::")]
    pub select: String,
    /// Leave out these objects, or with a fourth part, these fields of them
    /// (`Deployment:*:istio-pilot:spec.replicas`).
    #[arg(long = "ignore", default_value = "")]
    pub ignore: String,
    /// Compare A's objects under new names: `Service:*:istio-pilot->Service:*:istio-control`.
    #[arg(long = "rename", default_value = "")]
    pub rename: String,
}

/// How an installation is chosen: 1.4's `--set` and `-f`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallSpec {
    /// Override a setting: `profile=demo`, `values.global.mtls.enabled=true`,
    /// `trafficManagement.components.pilot.k8s.replicaCount=2`, `hub=…`, `tag=…`.
    #[arg(short = 's', long = "set")]
    pub sets: Vec<String>,
    /// An `IstioControlPlane` overlay file, merged over the profile (repeatable).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
}

impl InstallSpec {
    /// The overlay files, by name.
    pub fn read_overlays(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut overlays = Vec::new();
        for file in &self.files {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            overlays.push((file.display().to_string(), text));
        }
        Ok(overlays)
    }

    /// Reads the overlays and resolves the installation.
    pub fn resolve(&self) -> anyhow::Result<Install> {
        Ok(Install::resolve(&self.sets, &self.read_overlays()?)?)
    }
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub install: InstallSpec,
    /// Write one file per component into this directory instead of printing.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

pub(crate) fn run(args: &ManifestArgs) -> anyhow::Result<i32> {
    match &args.command {
        ManifestCommand::Generate(generate_args) => generate_command(generate_args),
        ManifestCommand::Apply(apply_args) => apply_command(apply_args),
        ManifestCommand::Diff(diff_args) => diff_command(diff_args),
    }
}

fn generate_command(args: &GenerateArgs) -> anyhow::Result<i32> {
    let install = args.install.resolve()?;
    let manifests = generate(&install)?;
    match &args.output {
        None => print!("{}", to_yaml(&manifests)?),
        Some(dir) => write_components(dir, &manifests)?,
    }
    Ok(0)
}

/// One `COMPONENT.yaml` per component, as 1.4's `-o` wrote a directory per component.
fn write_components(dir: &std::path::Path, manifests: &[Manifest]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut components: Vec<&str> = manifests.iter().map(|manifest| manifest.component).collect();
    components.dedup();
    components.sort_unstable();
    components.dedup();
    for component in components {
        let mine: Vec<Manifest> =
            manifests.iter().filter(|manifest| manifest.component == component).cloned().collect();
        let path = dir.join(format!("{component}.yaml"));
        std::fs::write(&path, to_yaml(&mine)?).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn apply_command(args: &ApplyArgs) -> anyhow::Result<i32> {
    let nothing_chosen = args.install.sets.is_empty() && args.install.files.is_empty();
    if nothing_chosen
        && !args.skip_confirmation
        && !confirm("This will install the default Istio profile. Proceed? (y/N)")
    {
        println!("Cancelled.");
        return Ok(1);
    }
    let layout = Layout::from_env();
    if !args.kube.wants_cluster(&layout) {
        // This host: the same profile, overlays and settings, installed by the local platform.
        let overlays = args.install.read_overlays()?;
        let plan = istio_local::install::Plan::with_overlays(&args.install.sets, &overlays)?;
        crate::local::install_plan(&layout, plan, &mut |line| println!("{line}"))?;
        return Ok(0);
    }
    let install = args.install.resolve()?;
    let manifests = generate(&install)?;
    let options = ApplyOptions {
        dry_run: args.dry_run,
        wait: args.wait,
        readiness_timeout: args.readiness_timeout,
        retry_delay: Duration::from_millis(250),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let applied = runtime.block_on(async {
        let client = args.kube.client().await?;
        cluster_apply::apply(&client, &manifests, istio_manifest::DEFAULT_TAG, &options, &mut |line| println!("{line}"))
            .await
    })?;
    Ok(if applied { 0 } else { 1 })
}

/// Asks on the terminal; anything but y or yes (or no answer) is a no.
fn confirm(question: &str) -> bool {
    print!("{question} ");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_uppercase().as_str(), "Y" | "YES")
}

fn diff_command(args: &DiffArgs) -> anyhow::Result<i32> {
    let filters = DiffFilters::parse(&args.select, &args.ignore, &args.rename)?;
    let read = |path: &Path| -> anyhow::Result<ObjectMap> {
        if args.directory {
            read_directory(path)
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("Could not read {:?}", path.display()))?;
            Ok(parse_objects(&text, &path.display().to_string())?)
        }
    };
    let a = read(&args.manifests[0])?;
    let b = read(&args.manifests[1])?;
    let diff = manifest_diff(&a, &b, &filters);
    if diff.is_empty() {
        println!("Manifests are identical");
        Ok(0)
    } else {
        print!("Differences of manifests are:\n{diff}");
        Ok(1)
    }
}

/// Every `*.yaml` under a directory, as one manifest.
fn read_directory(dir: &Path) -> anyhow::Result<ObjectMap> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut objects = ObjectMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for (key, object) in parse_objects(&text, &file.display().to_string())? {
            if objects.insert(key.clone(), object).is_some() {
                bail!("{}: {key} appears in two files", dir.display());
            }
        }
    }
    Ok(objects)
}
