//! `istioctl kube-inject`: adds the sidecar to the workloads in a YAML file, with the same code
//! as the injector webhook. On a cluster (`--kubeconfig`, …) it reads what the injector reads,
//! as 1.4's did: the `istio-sidecar-injector` ConfigMap's `config` and `values` and the `istio`
//! ConfigMap's `mesh`, in the Istio namespace (`--injectConfigMapName`, `--meshConfigMapName`);
//! a `--…File` flag takes that part from a file instead. Off a cluster, without files, it uses
//! 1.4's defaults (policy enabled, the chart's values, the default mesh config).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use istio_inject::{inject, ConfigFiles, Injector, InjectorConfig};
use k8s_openapi::api::core::v1::ConfigMap;

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
    /// The injector's ConfigMap on a cluster.
    #[arg(long = "injectConfigMapName", default_value = "istio-sidecar-injector")]
    inject_config_map_name: String,
    /// The mesh config's ConfigMap on a cluster.
    #[arg(long = "meshConfigMapName", default_value = "istio")]
    mesh_config_map_name: String,
    #[command(flatten)]
    kube: crate::kube::KubeArgs,
}

/// A key of a ConfigMap in the Istio namespace, with 1.4's messages when it is not there.
async fn config_map_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
    instead: &str,
) -> anyhow::Result<String> {
    let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    let config_map = config_maps.get(name).await.map_err(|error| {
        anyhow::anyhow!(
            "could not read valid configmap {name:?} from namespace {namespace:?}: {error} - Use {instead} or re-run \
             kube-inject with `-i <istioSystemNamespace>` and ensure the {name} configmap exists"
        )
    })?;
    match config_map.data.and_then(|mut data| data.remove(key)) {
        Some(text) => Ok(text),
        None => bail!("missing configuration map key {key:?} in {name:?}"),
    }
}

/// The injector as the cluster's injector has it, with any files given taking precedence.
fn cluster_injector(args: &KubeInjectArgs) -> anyhow::Result<Injector> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = args.kube.client().await?;
        let namespace = &args.kube.istio_namespace;
        let config = match &args.inject_config_file {
            Some(path) => InjectorConfig::load(path)?,
            None => {
                let name = &args.inject_config_map_name;
                let text = config_map_key(&client, namespace, name, "config", "--injectConfigFile").await?;
                InjectorConfig::parse(&text, &format!("configmap {name} key config"))?
            }
        };
        let values = match &args.values_file {
            Some(path) => istio_inject::config::load_values(path)?,
            None => {
                let name = &args.inject_config_map_name;
                let text = config_map_key(&client, namespace, name, "values", "--valuesFile").await?;
                istio_inject::config::parse_values(&text, &format!("configmap {name} key values"))?
            }
        };
        let mesh = match &args.mesh_config_file {
            Some(path) => istio_config::mesh::load(path)?,
            None => {
                let name = &args.mesh_config_map_name;
                let text = config_map_key(&client, namespace, name, "mesh", "--meshConfigFile").await?;
                istio_config::mesh::parse(&text, &format!("configmap {name} key mesh"))?
            }
        };
        Ok(Injector::new(config, values, &mesh)?)
    })
}

pub(crate) fn run(args: &KubeInjectArgs) -> anyhow::Result<i32> {
    let layout = istio_local::Layout::from_env();
    let injector = if args.kube.wants_cluster(&layout) {
        cluster_injector(args)?
    } else {
        ConfigFiles {
            inject_config: args.inject_config_file.clone(),
            values: args.values_file.clone(),
            mesh_config: args.mesh_config_file.clone(),
        }
        .load()?
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
    let injected = inject::kube_inject_yaml(&injector, &text, &origin)?;
    match &args.output {
        Some(path) => std::fs::write(path, injected).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(injected.as_bytes())?,
    }
    Ok(0)
}
