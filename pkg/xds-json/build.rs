//! Finds the descriptor set that `envoy-types` generated its Rust types from and copies it into
//! `OUT_DIR`, so the JSON mapping here describes exactly the messages `envoy-types` encodes.
//! The crate ships the set (`src/generated/types.bin`) but does not export it, so the build asks
//! Cargo where the `envoy-types` sources live.

use std::error::Error;
use std::path::PathBuf;
use std::process::Command;

fn envoy_types_dir() -> Result<PathBuf, Box<dyn Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let target = std::env::var("TARGET")?;
    let metadata = |offline: bool| {
        let mut command = Command::new(&cargo);
        command.args(["metadata", "--format-version", "1", "--filter-platform", &target, "--manifest-path"]);
        command.arg(&manifest);
        if offline {
            command.arg("--offline");
        }
        command.output()
    };
    // Offline first (everything being built is already downloaded); online only when some
    // other workspace member's dependencies were never fetched.
    let mut output = metadata(true)?;
    if !output.status.success() {
        output = metadata(false)?;
    }
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"].as_array().ok_or("cargo metadata: no packages")?;
    let envoy = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .ok_or("cargo metadata: envoy-types is not a dependency")?;
    let manifest_path = envoy["manifest_path"].as_str().ok_or("cargo metadata: envoy-types has no manifest_path")?;
    Ok(PathBuf::from(manifest_path).parent().ok_or("envoy-types manifest has no parent")?.to_path_buf())
}

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let source = envoy_types_dir()?.join("src/generated/types.bin");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("envoy_descriptors.bin");
    std::fs::copy(&source, &out).map_err(|e| format!("copying {}: {e}", source.display()))?;
    Ok(())
}
