//! Istio 1.4's installation as Kubernetes objects, for `istioctl manifest generate|apply`.
//!
//! - [`profiles`]: the built-in profiles (`install/profiles/*.yaml`, shaped as 1.4's
//!   `install.istio.io/v1alpha2` `IstioControlPlane`) and `--set` overrides; the local platform
//!   reads the same profiles, so both install the same components.
//! - [`Install`]: a resolved profile with the values each object needs, defaulting to 1.4's chart
//!   values where the profile is silent.
//! - [`generate`]: every object the installation consists of, built from k8s-openapi's typed
//!   structs, named, labelled and ported as 1.4's charts rendered them, with the API versions
//!   Kubernetes 1.25 and later serve (CRDs in `apiextensions.k8s.io/v1`, webhooks in
//!   `admissionregistration.k8s.io/v1`, `policy/v1` PDBs, `autoscaling/v2` HPAs).
//!
//! - [`manifest_diff`] and [`text_diff`]: comparing two installations, as `manifest diff` and
//!   `profile diff` do.
//!
//! Applying the objects to a cluster is `istioctl`'s business, not this crate's.

mod addon;
mod compare;
mod components;
mod control_dashboards;
mod crds;
mod dashboards;
mod grafana_model;
mod install;
mod k8s;
pub mod k8s_ingress;
mod manifest;
mod mesh;
pub mod profiles;
mod render;
mod traffic_dashboards;
mod workload;

pub use compare::{
    manifest_diff, object_diff, object_key, parse_objects, text_diff, CompareError, DiffFilters, ObjectMap,
};
pub use crds::{crds, CrdInfo, CRDS};
pub use install::{Install, InstallError, DEFAULT_HUB, DEFAULT_TAG};
pub use manifest::Manifest;
pub use mesh::locality_lb_setting;
pub use render::{apply_rank, generate, to_yaml};
