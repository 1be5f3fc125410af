//! The workspace's layout rules, checked on the tree as it is:
//! - data flows one way, `api` → `pkg/*` → components and the local platform → `istioctl`, and
//!   no crate depends on a component crate (what two components share lives in `pkg/`);
//!   `pkg/duration` sits below `api`, which reads Go durations in YAML with it;
//! - inside every crate, no two modules import each other, directly or round a loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e::layout::{display, ModuleGraph};
use serde_json::Value;

/// Where a crate sits in the flow of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Plain building blocks every crate may use, the API types included (Go durations).
    Foundation,
    Api,
    Pkg,
    /// Components, the local platform and the samples: built on `api` and `pkg`.
    Product,
    Cli,
    /// The end-to-end tests, which only start binaries (and borrow `pkg` helpers).
    Tests,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds the tests crate").to_path_buf()
}

/// `cargo metadata` for the workspace's own packages.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(workspace().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// A package's directory relative to the workspace (`pkg/mcp`, `pilot`).
fn relative_dir(package: &Value) -> String {
    let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest path"));
    let dir = manifest.parent().expect("manifest directory");
    dir.strip_prefix(workspace()).expect("inside the workspace").display().to_string()
}

fn layer(dir: &str) -> Layer {
    if dir == "pkg/duration" {
        return Layer::Foundation;
    }
    match dir.split('/').next().unwrap_or_default() {
        "api" => Layer::Api,
        "pkg" => Layer::Pkg,
        "istioctl" => Layer::Cli,
        "tests" => Layer::Tests,
        _ => Layer::Product,
    }
}

/// Components are the mesh's own binaries: a top-level crate that is none of the others.
fn is_component(dir: &str) -> bool {
    !dir.contains('/') && !matches!(dir, "api" | "istioctl" | "tests")
}

#[test]
fn dependencies_flow_one_way_and_nothing_depends_on_a_component() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    let dirs: BTreeMap<String, String> = packages
        .iter()
        .map(|package| (package["name"].as_str().expect("name").to_string(), relative_dir(package)))
        .collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let from = &dirs[name];
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let Some(to) = dependency["name"].as_str().and_then(|target| dirs.get(target)) else { continue };
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            if is_component(to) {
                problems.push(format!("{from} depends ({kind}) on the component {to}"));
            }
            let allowed = match (layer(from), layer(to)) {
                (_, _) if kind == "dev" => true,
                (Layer::Pkg, Layer::Pkg) => true,
                (from_layer, to_layer) => to_layer < from_layer,
            };
            if !allowed {
                problems.push(format!(
                    "{from} ({:?}) depends on {to} ({:?}), against the flow",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let metadata = metadata();
    let mut problems = Vec::new();
    let mut checked = 0;
    for package in metadata["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            let kinds: Vec<&str> = target["kind"].as_array().expect("kinds").iter().filter_map(Value::as_str).collect();
            if !kinds.iter().any(|kind| matches!(*kind, "lib" | "bin")) {
                continue;
            }
            let root = PathBuf::from(target["src_path"].as_str().expect("src_path"));
            let graph = ModuleGraph::read(&root).unwrap_or_else(|error| panic!("{}: {error}", root.display()));
            checked += graph.files.len();
            for cycle in graph.cycles() {
                let edges: Vec<String> = cycle
                    .iter()
                    .map(|module| {
                        let targets: Vec<String> = graph.imports[module]
                            .iter()
                            .filter(|target| cycle.contains(target))
                            .map(|target| display(target))
                            .collect();
                        format!("    {} -> {}", display(module), targets.join(", "))
                    })
                    .collect();
                problems.push(format!("{} ({}):\n{}", package["name"], root.display(), edges.join("\n")));
            }
        }
    }
    assert!(checked > 100, "only {checked} modules read");
    assert!(problems.is_empty(), "modules that import each other:\n{}", problems.join("\n"));
}
