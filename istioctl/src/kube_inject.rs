//! `istioctl kube-inject`: adds the sidecar to the workloads in a YAML file offline, with the
//! same code as the injector webhook. Without config files it uses 1.4's defaults (policy
//! enabled, the chart's values, the default mesh config).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use istio_inject::{inject, ConfigFiles};

#[derive(Debug, clap::Args)]
pub struct KubeInjectArgs {
    /// Input Kubernetes resource file(s), or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    filename: String,
    /// Write the injected resources here instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Injector config (the `config` key of the istio-sidecar-injector ConfigMap).
    #[arg(long = "injectConfigFile")]
    inject_config_file: Option<PathBuf>,
    /// Mesh config file (the `mesh` key of the istio ConfigMap).
    #[arg(long = "meshConfigFile")]
    mesh_config_file: Option<PathBuf>,
    /// Helm values (the `values` key of the istio-sidecar-injector ConfigMap).
    #[arg(long = "valuesFile")]
    values_file: Option<PathBuf>,
}

pub(crate) fn run(args: &KubeInjectArgs) -> anyhow::Result<i32> {
    let injector = ConfigFiles {
        inject_config: args.inject_config_file.clone(),
        values: args.values_file.clone(),
        mesh_config: args.mesh_config_file.clone(),
    }
    .load()?;
    let (text, origin) = if args.filename == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        (text, "stdin".to_string())
    } else {
        (
            std::fs::read_to_string(&args.filename).with_context(|| format!("reading {}", args.filename))?,
            args.filename.clone(),
        )
    };
    let injected = inject::kube_inject_yaml(&injector, &text, &origin)?;
    match &args.output {
        Some(path) => std::fs::write(path, injected).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(injected.as_bytes())?,
    }
    Ok(0)
}
