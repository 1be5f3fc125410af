//! The istio-rs proxy: what Istio 1.4's pilot-agent and istio-init did. `agent` runs a sidecar
//! or gateway (`proxy sidecar|router`): node identity, bootstrap, the status port and the data
//! plane's lifecycle. `dataplane` is the built-in data plane; `run` starts it on a static
//! bootstrap. `iptables` installs and removes the traffic-capture rules. `request` queries the
//! local admin API.

pub mod agent;
pub(crate) mod dataplane;
pub(crate) mod http_client;
pub mod iptables;
pub mod request;
pub mod run;
pub(crate) mod status;
