//! Istio's Mesh Configuration Protocol (`istio.mcp.v1alpha1`), both ends of it.
//!
//! - [`collection`]: what a source serves: versioned collections of resources, in snapshots.
//! - [`resource`]: config objects to MCP resources and back.
//! - [`source`]: the `ResourceSource` server (Galley): pushes each subscribed collection when its
//!   version changes, one response in flight per collection, incremental on request.
//! - [`sink`]: the client (Pilot, Mixer, `istioctl x mcp`): subscribes, ACKs or NACKs each
//!   response, reconnects with backoff, and turns responses into object changes.
//!
//! Which collections a component serves or wants, and what it does with them, is its own affair.

pub mod collection;
pub mod resource;
pub mod sink;
pub mod source;
