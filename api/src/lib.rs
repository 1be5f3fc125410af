//! The Istio 1.4 API as Rust types: config kinds (networking, authentication, RBAC, security,
//! policy, mesh), the Mixer, MCP and CA gRPC protos, the registry that ties a Kubernetes
//! kind to its MCP collection and proto message, and the proto3 JSON mapping that lets real
//! Istio YAML parse unchanged.
//!
//! This crate only describes data. Validation, storage and serving live elsewhere.

pub mod dictionary;
pub mod json;
pub mod kinds;

/// Generated prost messages and tonic services, one module per proto package.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
}

/// The encoded `FileDescriptorSet` of every proto in this crate (plus the well-known types).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
