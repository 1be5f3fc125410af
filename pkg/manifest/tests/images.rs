//! Every image the manifests name from Istio's hub has a Dockerfile under `install/docker/`
//! that builds a binary of this workspace and runs it: the package and binary exist, the binary
//! is what the image copies, and the entrypoint is that binary (or a link to it). An image whose
//! container gets only flags (Mixer's `--monitoringPort…`) needs its subcommand in the
//! entrypoint, as 1.4's `mixs server` image had. Each image has its program at 1.4's path
//! (`/usr/local/bin/pilot-discovery`, `pilot-agent`, `mixs`, `istio_ca`, …), so 1.4's
//! `kubectl exec … pilot-agent request` habits work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use istio_manifest::{generate, Install, DEFAULT_HUB};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Package name → its directory and binaries, from every Cargo.toml in the workspace.
fn packages() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![workspace()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') && name != "target" && name != "testdata" {
                pending.push(path);
            } else if name == "Cargo.toml" {
                let text = std::fs::read_to_string(&path).expect("Cargo.toml");
                let mut section = String::new();
                let (mut package, mut binaries) = (None, BTreeSet::new());
                for line in text.lines().map(str::trim) {
                    if line.starts_with('[') {
                        section = line.to_string();
                    } else if let Some(value) = line.strip_prefix("name = ") {
                        let value = value.trim_matches('"').to_string();
                        match section.as_str() {
                            "[package]" => package = Some(value),
                            "[[bin]]" => {
                                binaries.insert(value);
                            }
                            _ => {}
                        }
                    }
                }
                if let Some(package) = package {
                    found.insert(package, (dir.clone(), binaries));
                }
            }
        }
    }
    found
}

/// (image name, whether its container's args start with a flag) for every profile.
fn images() -> BTreeMap<String, bool> {
    let mut images = BTreeMap::new();
    for sets in [
        &["profile=minimal"][..],
        &["profile=default"],
        &["profile=demo", "values.meshConsole.enabled=true"],
        &["profile=sds"],
    ] {
        let sets: Vec<String> = sets.iter().map(|set| set.to_string()).collect();
        let install = Install::resolve(&sets, &[]).expect("profile");
        for manifest in generate(&install).expect("manifests") {
            let containers =
                manifest.object["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            for container in containers {
                let image = container["image"].as_str().unwrap_or_default();
                let Some(rest) = image.strip_prefix(&format!("{DEFAULT_HUB}/")) else { continue };
                let name = rest.split(':').next().unwrap_or_default().to_string();
                let flags_only = container["command"].is_null()
                    && container["args"][0].as_str().is_some_and(|first| first.starts_with("--"));
                images.insert(name, flags_only);
            }
        }
    }
    images
}

/// Where 1.4's images had their program.
const PATHS_1_4: [(&str, &str); 8] = [
    ("pilot", "pilot-discovery"),
    ("proxyv2", "pilot-agent"),
    ("mixer", "mixs"),
    ("citadel", "istio_ca"),
    ("galley", "galley"),
    ("sidecar_injector", "sidecar-injector"),
    ("node-agent-k8s", "node_agent_k8s"),
    ("console", "istio-console"),
];

#[test]
fn every_istio_image_has_a_dockerfile_building_a_workspace_binary() {
    let packages = packages();
    let images = images();
    assert!(images.len() >= 8 && images.contains_key("console"), "{images:?}");
    for (image, flags_only) in images {
        let path = workspace().join(format!("install/docker/{image}.Dockerfile"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("no Dockerfile for image {image}: {}", path.display()));
        let build = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("RUN cargo build --release -p "))
            .unwrap_or_else(|| panic!("{image}: no `cargo build --release -p …` line"));
        let words: Vec<&str> = build.split_whitespace().collect();
        let (package, binary) = match words.as_slice() {
            [package, "--bin", binary] => (*package, *binary),
            other => panic!("{image}: unexpected build line {other:?}"),
        };
        let (dir, binaries) =
            packages.get(package).unwrap_or_else(|| panic!("{image}: no package {package} in the workspace"));
        assert!(binaries.contains(binary), "{image}: package {package} has no binary {binary}: {binaries:?}");
        assert!(
            text.contains(&format!("COPY --from=build /src/target/release/{binary} /usr/local/bin/{binary}")),
            "{image}: the image does not copy {binary}"
        );
        let entrypoint = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("ENTRYPOINT "))
            .unwrap_or_else(|| panic!("{image}: no ENTRYPOINT"));
        let entry: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in JSON form");
        let program = entry[0].trim_start_matches("/usr/local/bin/");
        assert!(
            program == binary || text.contains(&format!("ln -s {binary} /usr/local/bin/{program}")),
            "{image}: the entrypoint {program} is not {binary}"
        );
        let path_1_4 = PATHS_1_4.iter().find(|(name, _)| *name == image).map(|(_, path)| *path);
        let path_1_4 = path_1_4.unwrap_or_else(|| panic!("{image}: which path did 1.4's image run?"));
        assert_eq!(program, path_1_4, "{image}: 1.4's image ran /usr/local/bin/{path_1_4}");
        // A program with subcommands run with flags alone needs its subcommand in the entrypoint.
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap_or_default();
        if flags_only && main.contains("Subcommand") {
            assert!(
                entry.len() > 1,
                "{image}: its container passes only flags, so the entrypoint must name the subcommand"
            );
        }
    }
}
