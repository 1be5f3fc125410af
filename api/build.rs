//! Compiles every `.proto` under `proto/` with protox (a pure-Rust compiler, so no system
//! `protoc` is needed), generates prost messages and tonic services for them, and writes the
//! encoded descriptor set that the proto3 JSON mapping (prost-reflect) reads at run time.
//! The maps Pilot sends to proxies are BTreeMaps, so their encoding does not depend on a
//! hash seed.

use std::error::Error;
use std::path::{Path, PathBuf};

use prost::Message;

fn proto_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(root, &path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    proto_files(&root, &root, &mut files)?;
    files.sort();

    let descriptors = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(&files)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        // Maps that Pilot encodes into xDS (the Mixer filters' attributes and service configs)
        // encode in key order, so the same config gives the same bytes on every push.
        .btree_map(".istio.mixer.v1.Attributes")
        .btree_map(".istio.mixer.v1.config.client")
        .build_client(true)
        .build_server(true)
        .include_file("_includes.rs")
        .compile_fds(descriptors)?;
    Ok(())
}
