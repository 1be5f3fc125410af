//! The istio-rs proxy. This crate starts with what `istio-init` did in Istio 1.4: installing the
//! iptables rules that send a pod's TCP traffic through the sidecar (`iptables`), and removing
//! them (`clean_iptables`).

pub mod iptables;
