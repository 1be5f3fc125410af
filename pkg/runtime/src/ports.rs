//! Istio 1.4's well-known ports, named once so every component and test agrees on them.

pub const PROXY_ADMIN: u16 = 15000;
pub const PROXY_OUTBOUND_CAPTURE: u16 = 15001;
pub const PROXY_INBOUND_CAPTURE: u16 = 15006;
pub const PROXY_STATUS: u16 = 15020;
pub const PROXY_PROMETHEUS: u16 = 15090;
pub const PILOT_XDS: u16 = 15010;
pub const PILOT_XDS_MTLS: u16 = 15011;
pub const PILOT_DEBUG: u16 = 8080;
pub const MONITORING: u16 = 15014;
pub const MIXER: u16 = 9091;
pub const MIXER_PROMETHEUS: u16 = 42422;
pub const CITADEL_GRPC: u16 = 8060;
pub const GALLEY_MCP: u16 = 9901;
pub const WEBHOOK: u16 = 9443;
