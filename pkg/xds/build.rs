//! Finds the descriptor set that `envoy-types` generated its Rust types from and writes it,
//! without comments, into `OUT_DIR` (whole, and the data plane's subset), so the JSON mapping
//! here describes exactly the messages `envoy-types` encodes.
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

/// The files a data plane needs: the bootstrap, the xDS resources and admin dumps, and the
/// typed configs it understands. Everything they import comes along.
const DATA_PLANE_ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/admin/v3/config_dump.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/config/trace/v3/zipkin.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/filters/http/lua/v3/lua.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "google/protobuf/any.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/wrappers.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/empty.proto",
];

/// The root files and everything they import, in dependency order as found.
fn closure(
    set: &prost_types::FileDescriptorSet,
    roots: &[&str],
) -> Result<prost_types::FileDescriptorSet, Box<dyn Error>> {
    let by_name: std::collections::HashMap<&str, &prost_types::FileDescriptorProto> =
        set.file.iter().map(|file| (file.name(), file)).collect();
    let mut wanted: Vec<&str> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(name) = wanted.pop() {
        if !seen.insert(name) {
            continue;
        }
        let file = by_name.get(name).ok_or_else(|| format!("{name} is not in the envoy-types descriptor set"))?;
        wanted.extend(file.dependency.iter().map(String::as_str));
    }
    Ok(prost_types::FileDescriptorSet {
        file: set.file.iter().filter(|file| seen.contains(file.name())).cloned().map(without_comments).collect(),
    })
}

/// The file without its comments and source positions (`source_code_info`), which the JSON
/// mapping never reads and which would otherwise be most of a data plane's memory.
fn without_comments(mut file: prost_types::FileDescriptorProto) -> prost_types::FileDescriptorProto {
    file.source_code_info = None;
    file
}

fn main() -> Result<(), Box<dyn Error>> {
    use prost::Message;
    println!("cargo:rerun-if-changed=build.rs");
    let source = envoy_types_dir()?.join("src/generated/types.bin");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let full = prost_types::FileDescriptorSet::decode(
        std::fs::read(&source).map_err(|e| format!("reading {}: {e}", source.display()))?.as_slice(),
    )?;
    let all = prost_types::FileDescriptorSet { file: full.file.iter().cloned().map(without_comments).collect() };
    std::fs::write(out_dir.join("envoy_descriptors.bin"), all.encode_to_vec())?;
    let data_plane = closure(&full, DATA_PLANE_ROOTS)?;
    std::fs::write(out_dir.join("envoy_descriptors_data_plane.bin"), data_plane.encode_to_vec())?;
    Ok(())
}
