//! Istio 1.4's in-proxy telemetry ("telemetry v2", alpha in 1.4): the two null-VM plugins
//! istio-proxy ran as `envoy.filters.http.wasm` filters, built in here. `metadata_exchange`
//! swaps each side's node metadata in `x-envoy-peer-metadata` headers; `stats` then counts
//! every request as `istio_requests_total` with 1.4's twenty labels and records its duration and
//! sizes as histograms, served on the proxy's Prometheus endpoint (15090) in place of Mixer's
//! reports. A stock Envoy has neither plugin; Pilot does not send their patches to one.

pub(crate) mod config;
pub(crate) mod dimensions;
pub(crate) mod metrics;
pub(crate) mod node_info;
pub(crate) mod peer_exchange;
