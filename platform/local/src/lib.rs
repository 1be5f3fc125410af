//! The local platform: the whole mesh and its workloads on one Linux host, the way they run on
//! Kubernetes. A directory store plays the API server; a daemon (the kubelet, controller
//! manager and kube-proxy in one) runs what the objects describe: control-plane components as
//! host processes on their own bridge addresses, and every pod as a network namespace with
//! its own IP, `/etc/hosts`, volumes, init containers and containers as processes. Pods are
//! injected by calling the sidecar injector's webhook and Istio objects are validated by
//! Galley's, as the API server does. `istioctl` drives it. Containers find the store, where
//! Kubernetes would give them the API server's address, in `ISTIO_LOCAL_STORE`.

pub mod addons;
pub(crate) mod admission;
pub mod container;
pub mod controller;
pub mod create;
pub(crate) mod dns;
pub(crate) mod egress;
pub(crate) mod gateways;
pub mod images;
pub mod install;
pub mod kubectl;
pub(crate) mod layout;
pub(crate) mod meshconfig;
pub mod net;
pub mod nodes;
pub mod objects;
pub(crate) mod pod;
pub(crate) mod pod_context;
pub mod port_forward;
pub mod prereq;
pub(crate) mod probe;
pub(crate) mod process;
pub use istio_manifest::profiles;
pub(crate) mod services;
pub(crate) mod supervise;
pub mod teardown;
pub(crate) mod tokens;
pub(crate) mod volumes;

pub use layout::Layout;
