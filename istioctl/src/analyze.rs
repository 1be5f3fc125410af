//! `istioctl x analyze [FILES…]`: runs 1.4's analyzers over config files, this host's mesh
//! (`-k` on the local platform) or a cluster (`-k` with a kubeconfig), or files merged over
//! either, and prints 1.4's messages, `Error [IST0101] (VirtualService x.default) …`. Exit
//! codes are 1.4's: 79 when a message reaches `--failure-threshold`, 65 when a file could not
//! be parsed, 1 for other errors.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;
use istio_config::analysis::{self, Level, Options, Snapshot};
use istio_config::object::{Object, ObjectKey};
use istio_config::yaml::parse_objects;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Api;

/// 1.4's exit code when analysis found issues at the failure threshold.
pub(crate) const EXIT_ANALYZER_FOUND_ISSUES: i32 = 79;
/// 1.4's exit code when some input could not be parsed.
pub(crate) const EXIT_DATA_ERROR: i32 = 65;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Files or directories of config to analyse; `-` reads standard input.
    pub files: Vec<String>,
    /// Use the live mesh for analysis: this host's, or the cluster a kubeconfig names.
    #[arg(short = 'k', long = "use-kube", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub use_kube: bool,
    /// Service discovery on or off (namespaces, services, pods); defaults to --use-kube.
    /// Analyzers that need it are skipped without it.
    #[arg(short = 'd', long = "discovery", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub discovery: Option<bool>,
    /// Colored output. Default true on a terminal; off with `=false` or TERM=dumb.
    #[arg(long = "color", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub color: Option<bool>,
    /// List the analyzers that ran and those skipped.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// The level at which messages make the exit code non-zero: Info, Warn or Error.
    #[arg(long = "failure-threshold", default_value = "Warn", value_parser = Level::parse)]
    pub failure_threshold: Level,
    /// The level from which messages are printed: Info, Warn or Error.
    #[arg(long = "output-threshold", default_value = "Info", value_parser = Level::parse)]
    pub output_threshold: Level,
    /// Namespace for objects in files that name none, and whose messages are shown.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Show messages for every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output format: log (lines), json or yaml.
    #[arg(short = 'o', long = "output", default_value = "log", value_parser = ["log", "json", "yaml"])]
    pub output: String,
    #[command(flatten)]
    pub kube: crate::kube::KubeArgs,
}

pub(crate) fn run(args: &AnalyzeArgs) -> anyhow::Result<i32> {
    for file in &args.files {
        if file != "-" && !Path::new(file).exists() {
            eprintln!("Error: could not find file {file:?}");
            return Ok(1);
        }
    }
    if args.files.is_empty() && !args.use_kube {
        eprintln!("Error: at least one file and/or Kubernetes source must be provided");
        return Ok(1);
    }
    let discovery = args.discovery.unwrap_or(args.use_kube);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut objects, mut namespace) =
        if args.use_kube { runtime.block_on(live_objects(&args.kube))? } else { (BTreeMap::new(), None) };
    if let Some(given) = &args.namespace {
        namespace = Some(given.clone());
    }
    let namespace = namespace.unwrap_or_else(|| "default".to_string());

    let mut parse_errors = Vec::new();
    for (key, object) in file_objects(&args.files, &namespace, &mut parse_errors)? {
        objects.insert(key, object);
    }
    if !parse_errors.is_empty() {
        eprintln!("Error(s) reading files: {}", parse_errors.join("\n"));
    }

    let snapshot = Snapshot::new(objects.into_values(), discovery);
    let namespaces = if args.all_namespaces { Vec::new() } else { vec![namespace] };
    let result = analysis::analyze(&analysis::all(), &snapshot, &Options { discovery, namespaces });

    if args.verbose {
        for (title, names) in [("Skipped analyzers:", &result.skipped), ("Executed analyzers:", &result.executed)] {
            if !names.is_empty() {
                eprintln!("{title}");
                for name in names {
                    eprintln!("\t {name}");
                }
            }
        }
        eprintln!();
    }

    let shown: Vec<&analysis::Message> =
        result.messages.iter().filter(|message| message.kind.level.at_least(args.output_threshold)).collect();
    match args.output.as_str() {
        "json" | "yaml" => {
            let list: Vec<serde_json::Value> = shown.iter().map(|message| message.to_json()).collect();
            let text = if args.output == "json" {
                serde_json::to_string_pretty(&list)?
            } else {
                serde_yaml::to_string(&list)?
            };
            println!("{}", text.trim_end());
        }
        _ if shown.is_empty() => {
            if parse_errors.is_empty() {
                eprintln!("\u{2714} No validation issues found.");
            } else {
                let noun = if parse_errors.len() == 1 { "file" } else { "files" };
                eprintln!("No validation issues found (but {} {noun} could not be parsed)", parse_errors.len());
            }
        }
        _ => {
            let color = args.color.unwrap_or_else(color_by_default);
            for message in shown {
                println!("{}", message.render(color));
            }
        }
    }

    if result.messages.iter().any(|message| message.kind.level.at_least(args.failure_threshold)) {
        eprintln!("Error: Analyzer found issues.");
        Ok(EXIT_ANALYZER_FOUND_ISSUES)
    } else if !parse_errors.is_empty() {
        eprintln!("Error: Some files couldn't be parsed.");
        Ok(EXIT_DATA_ERROR)
    } else {
        Ok(0)
    }
}

/// Color on a terminal unless TERM is `dumb`.
fn color_by_default() -> bool {
    std::env::var("TERM").map_or(true, |term| !term.eq_ignore_ascii_case("dumb")) && std::io::stdout().is_terminal()
}

/// Whether objects of this kind live in a namespace.
fn is_namespaced(object: &Object) -> bool {
    match object.istio_kind() {
        Some(kind) => kind.namespaced,
        None => !matches!(
            (object.group(), object.kind.as_str()),
            ("", "Namespace" | "Node" | "PersistentVolume")
                | ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding")
                | ("apiextensions.k8s.io", "CustomResourceDefinition")
                | ("admissionregistration.k8s.io", _)
        ),
    }
}

/// The objects of the given files, keyed for merging, with objects that name no namespace put
/// in `namespace` (as kubectl does). Documents that do not parse are reported in
/// `parse_errors` with their file and line, and the rest of the file is still read.
fn file_objects(
    files: &[String],
    namespace: &str,
    parse_errors: &mut Vec<String>,
) -> anyhow::Result<Vec<(ObjectKey, Object)>> {
    let mut found = Vec::new();
    for file in files {
        let mut texts = Vec::new();
        if file == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
            texts.push(("<stdin>".to_string(), text));
        } else {
            let mut paths = Vec::new();
            crate::validate::collect_files(Path::new(file), true, &mut paths)?;
            for path in paths {
                match std::fs::read_to_string(&path) {
                    Ok(text) => texts.push((path.display().to_string(), text)),
                    Err(error) => parse_errors.push(format!("{}: {error}", path.display())),
                }
            }
        }
        for (source, text) in texts {
            let (objects, errors) = parse_objects(&source, &text);
            parse_errors.extend(errors.iter().map(ToString::to_string));
            for source_object in objects {
                let mut object = source_object.object;
                if is_namespaced(&object) {
                    if object.namespace().is_empty() {
                        object.metadata.namespace = Some(namespace.to_string());
                    }
                } else {
                    object.metadata.namespace = None;
                }
                found.push((object.key(), object));
            }
        }
    }
    Ok(found)
}

/// The kinds analysis reads from a live mesh: core kinds, Deployments and every Istio kind.
fn live_kinds() -> Vec<(GroupVersionKind, String)> {
    let mut kinds = vec![
        (GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces".to_string()),
        (GroupVersionKind::gvk("", "v1", "Service"), "services".to_string()),
        (GroupVersionKind::gvk("", "v1", "Pod"), "pods".to_string()),
        (GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments".to_string()),
    ];
    for kind in istio_api::kinds::all().iter().filter(|kind| !kind.legacy) {
        kinds.push((GroupVersionKind::gvk(kind.group, kind.version, kind.kind), kind.plural.to_string()));
    }
    kinds
}

/// The live mesh's objects (this host's, or a cluster's), and the namespace its context names.
async fn live_objects(
    kube_args: &crate::kube::KubeArgs,
) -> anyhow::Result<(BTreeMap<ObjectKey, Object>, Option<String>)> {
    let layout = istio_local::Layout::from_env();
    let mut objects = BTreeMap::new();
    if kube_args.wants_cluster(&layout) {
        let client = kube_args.client().await?;
        let namespace = Some(client.default_namespace().to_string());
        for (gvk, plural) in live_kinds() {
            let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                // A kind whose CRD is not installed has nothing to analyse.
                Err(kube::Error::Api(response)) if response.code == 404 => continue,
                Err(error) => return Err(error).with_context(|| format!("listing {plural}")),
            };
            for item in list.items {
                let mut object = Object::new(&resource.api_version, &resource.kind, None, "");
                object.metadata = item.metadata;
                if let serde_json::Value::Object(body) = item.data {
                    object.body = body;
                }
                objects.insert(object.key(), object);
            }
        }
        return Ok((objects, namespace));
    }
    if !layout.install_file().exists() {
        anyhow::bail!("--use-kube: no mesh is installed on this host and no kubeconfig was given");
    }
    for (gvk, _) in live_kinds() {
        let kind = istio_config::object::TypeKey::new(&gvk.group, &gvk.kind);
        for object in istio_local::kubectl::list(&layout, &kind, None)
            .await
            .with_context(|| format!("listing {} on this host's mesh", gvk.kind))?
        {
            objects.insert(object.key(), object);
        }
    }
    Ok((objects, None))
}
