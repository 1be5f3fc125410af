//! The xDS vocabulary every part of the mesh shares: the v3 type URLs, Istio's cluster names as
//! a type, what one resource type asks of the next, references to SDS secrets, and Envoy's messages to and from their
//! proto3 JSON form (debug output, static config files).
//!
//! Generating resources is Pilot's business and applying them the proxy's.

pub mod canonical;
pub mod cluster_name;
pub mod json;
pub mod locality;
pub mod patch_value;
pub mod references;
pub mod sds;
pub mod sync_state;
pub mod type_url;

pub use cluster_name::{ClusterName, TrafficDirection};
