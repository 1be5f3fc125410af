//! The image → program map (`install/local/images.yaml`): how a container of a pod spec
//! becomes a process on the host, following Kubernetes' rules for `command` (replaces the
//! image's entrypoint) and `args` (replace the image's default arguments).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

/// The map shipped with istio-rs.
pub const BUILTIN: &str = include_str!("../../../install/local/images.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMap {
    pub images: BTreeMap<String, Image>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub binary: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub commands: BTreeMap<String, Vec<String>>,
}

/// How to run one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The image's environment; the container's own comes on top.
    pub env: BTreeMap<String, String>,
}

impl ImageMap {
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "install/local/images.yaml").unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        serde_yaml::from_str(text).with_context(|| format!("{origin}: not an image map"))
    }

    /// The entry for an image reference (`docker.io/istio/proxyv2:1.4.10`, `istio/proxyv2`, …).
    pub fn lookup(&self, image: &str) -> Option<&Image> {
        let name = strip_tag(image);
        self.images.get(name).or_else(|| self.images.get(&format!("docker.io/{name}")))
    }

    /// A command run in a container of `image` (by `exec`, a probe or the container's own
    /// `command`): a program the image's command map names, a workspace binary, or a host program.
    pub fn resolve_command(
        &self,
        image: &str,
        command: &[String],
        binaries: &Path,
    ) -> anyhow::Result<(PathBuf, Vec<String>)> {
        let (first, rest) = command.split_first().context("an empty command")?;
        let mapped = self.lookup(image).and_then(|entry| entry.commands.get(first));
        let (program, args) = match mapped {
            Some(mapped) => {
                let (program, fixed) =
                    mapped.split_first().with_context(|| format!("image {image}: empty command map for {first}"))?;
                (program.clone(), fixed.iter().chain(rest).cloned().collect())
            }
            None => (first.clone(), rest.to_vec()),
        };
        let path = find(&program, binaries).with_context(|| format!("{program}: command not found"))?;
        Ok((path, args))
    }

    /// Resolves a container (from a pod spec) to a program, with programs looked up in
    /// `binaries` first and then on `PATH`.
    pub fn resolve(&self, container: &Value, binaries: &Path) -> anyhow::Result<Launch> {
        let name = container.get("name").and_then(Value::as_str).unwrap_or("?");
        let image_ref = container.get("image").and_then(Value::as_str).unwrap_or_default();
        let image = self.lookup(image_ref).with_context(|| {
            format!("container {name}: image {image_ref:?} has no local program (add it to install/local/images.yaml)")
        })?;
        let strings = |field: &str| -> Vec<String> {
            container
                .get(field)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let command = strings("command");
        let container_args = strings("args");
        // `command` replaces the image's entrypoint; `args` replace its default arguments.
        let entrypoint = if command.is_empty() {
            let defaults = if container_args.is_empty() { image.args.clone() } else { Vec::new() };
            std::iter::once(image.binary.clone()).chain(defaults).collect()
        } else {
            command
        };
        let (program, mut args) =
            self.resolve_command(image_ref, &entrypoint, binaries).with_context(|| format!("container {name}"))?;
        args.extend(container_args);
        Ok(Launch { program, args, env: image.env.clone() })
    }
}

fn strip_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

fn find(program: &str, binaries: &Path) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    let local = binaries.join(program);
    if local.is_file() {
        return Some(local);
    }
    crate::prereq::find_program(program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_resolve_to_workspace_programs() {
        let dir = tempfile::tempdir().expect("dir");
        for binary in ["proxy", "bookinfo"] {
            std::fs::write(dir.path().join(binary), "").expect("write");
        }
        let map = ImageMap::builtin();
        let init = json!({"name": "istio-init", "image": "docker.io/istio/proxyv2:1.4.10",
            "command": ["istio-iptables", "-p", "15001"]});
        let launch = map.resolve(&init, dir.path()).expect("init");
        assert_eq!(launch.program, dir.path().join("proxy"));
        assert_eq!(launch.args, ["iptables", "-p", "15001"]);
        let sidecar = json!({"name": "istio-proxy", "image": "istio/proxyv2:1.4.10", "args": ["proxy", "sidecar"]});
        assert_eq!(map.resolve(&sidecar, dir.path()).expect("proxy").args, ["proxy", "sidecar"]);
        let reviews = json!({"name": "reviews", "image": "docker.io/istio/examples-bookinfo-reviews-v3:1.15.0"});
        let launch = map.resolve(&reviews, dir.path()).expect("reviews");
        assert_eq!(launch.args, ["reviews"]);
        assert_eq!(launch.env["STAR_COLOR"], "red");
        let unknown = json!({"name": "x", "image": "example.com/unknown:1"});
        let error = map.resolve(&unknown, dir.path()).expect_err("unknown").to_string();
        assert!(error.contains("example.com/unknown:1"), "{error}");
        assert_eq!(strip_tag("localhost:5000/app:1.0"), "localhost:5000/app");
    }
}
