//! `istioctl x kube-uninject -f FILE [-o OUT]`: takes the sidecar back out of the workloads in a
//! YAML file (or `-` for stdin), the inverse of `kube-inject`, as 1.4's did.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

#[derive(Debug, clap::Args)]
pub struct KubeUninjectArgs {
    /// Input Kubernetes resource file, or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    filename: Option<String>,
    /// Write the uninjected resources here instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

pub(crate) fn run(args: &KubeUninjectArgs) -> anyhow::Result<i32> {
    let Some(filename) = &args.filename else { bail!("filename not specified (see --filename or -f)") };
    let text = if filename == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(filename).with_context(|| format!("open {filename}"))?
    };
    let origin = if filename == "-" { "stdin" } else { filename.as_str() };
    let uninjected = istio_inject::uninject::kube_uninject_yaml(&text, origin)?;
    match &args.output {
        Some(path) => std::fs::write(path, uninjected).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(uninjected.as_bytes())?,
    }
    Ok(0)
}
