//! `istioctl kube-inject`: adds the sidecar to the workloads in a YAML file offline, with the
//! same code as the injector webhook. Without config files it uses 1.4's defaults (policy
//! enabled, the chart's values, the default mesh config).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use sidecar_injector::{config, inject, ConfigFiles, Injector, InjectorConfig};

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

pub fn run(args: &KubeInjectArgs) -> anyhow::Result<i32> {
    let injector = match &args.inject_config_file {
        Some(path) => ConfigFiles {
            inject_config: path.clone(),
            values: args.values_file.clone(),
            mesh_config: args.mesh_config_file.clone(),
        }
        .load()?,
        None => {
            let values = match &args.values_file {
                Some(path) => config::load_values(path)?,
                None => config::default_values(),
            };
            let mesh = match &args.mesh_config_file {
                Some(path) => istio_config::mesh::load(path)?,
                None => serde_json::json!({}),
            };
            Injector::new(InjectorConfig::default(), values, &mesh).map_err(anyhow::Error::msg)?
        }
    };
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
    let injected = inject::kube_inject_yaml(&injector, &text, &origin).map_err(anyhow::Error::msg)?;
    match &args.output {
        Some(path) => std::fs::write(path, injected).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(injected.as_bytes())?,
    }
    Ok(0)
}
