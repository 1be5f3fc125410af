//! Istio 1.4's Mixer client, as the `mixer` HTTP and network filters ran it in 1.4's proxy:
//! a request's attributes ([`attributes`]) are checked with Mixer before it goes on
//! ([`client`]), answers are cached on exactly the attributes Mixer looked at
//! ([`check_cache`]), quotas are prefetched and granted locally ([`quota_cache`],
//! [`prefetch`]), and the calls go to Mixer's cluster over this data plane's own upstream
//! connections ([`channel`]). Requests and connections are reported after they end, in
//! batches ([`report`]). [`filter`] reads the filters' config as Pilot sends it.

pub(crate) mod attributes;
pub(crate) mod channel;
pub(crate) mod check_cache;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod filter;
pub(crate) mod lru;
pub(crate) mod prefetch;
pub(crate) mod quota_cache;
pub(crate) mod report;
