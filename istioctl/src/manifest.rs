//! `istioctl manifest generate [--set K=V]… [-f overlay.yaml]… [-o DIR]`, as 1.4's: the
//! Kubernetes objects of an installation (a profile with overlays and overrides), as one YAML
//! stream on stdout, or one file per component under `-o DIR`.

use std::path::PathBuf;

use anyhow::Context;
use istio_manifest::{generate, to_yaml, Install, Manifest};

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Print the Kubernetes objects of an installation.
    Generate(GenerateArgs),
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
    /// Reads the overlays and resolves the installation.
    pub fn resolve(&self) -> anyhow::Result<Install> {
        let mut overlays = Vec::new();
        for file in &self.files {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            overlays.push((file.display().to_string(), text));
        }
        Ok(Install::resolve(&self.sets, &overlays)?)
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
