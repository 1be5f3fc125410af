//! Configuration as the mesh handles it: Kubernetes-shaped objects, YAML reading with file and
//! line, Istio 1.4 validation, and the object store with its
//! directory and Kubernetes backends; Kubernetes services as ServiceEntries.

pub mod accepted;
pub mod analysis;
pub mod hash;
pub mod kube_ingress;
pub mod mesh;
pub mod object;
pub mod store;
pub mod synthetic;
pub mod validation;
pub mod yaml;
