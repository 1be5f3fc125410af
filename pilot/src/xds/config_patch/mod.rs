//! EnvoyFilter `configPatches`, Istio 1.4's form of EnvoyFilter: patches that add, remove,
//! merge into or insert beside the listeners, filter chains, network and HTTP filters,
//! clusters, route configurations, virtual hosts and routes Pilot generates, for the proxies an
//! EnvoyFilter selects, in the contexts (sidecar inbound, sidecar outbound, gateway) and on the
//! objects its matches name. The semantics are 1.4.6's, operation by operation: see each module.

pub(crate) mod cluster;
pub(crate) mod listener;
pub(crate) mod matching;
pub(crate) mod merge;
pub(crate) mod prepared;
pub(crate) mod route;
