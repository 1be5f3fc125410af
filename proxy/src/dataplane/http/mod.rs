//! The HTTP connection manager, as a chain of small layers, one concern a file. A listener hands
//! a connection to `connection`, which serves HTTP/1.1 and HTTP/2 (and h2c) and runs each request
//! through `pipeline`:
//!
//! 1. `forwarding` — request id, `x-forwarded-for`, `x-forwarded-proto`;
//! 2. `span` — B3 tracing, the span named after the route's decorator;
//! 3. `upgrade` — WebSocket upgrades refused unless allowed, and bridged once accepted;
//! 4. `authenticate` and `authorize` — the `jwt_authn` filters (401) and then the RBAC
//!    filters (403), before any route is chosen;
//! 5. `routing` — the virtual host and route for the request, then `policy_check`, Istio 1.4's
//!    `mixer` filter (Mixer's check and quotas);
//! 6. `route` — what a route does: `require_tls`, direct responses and redirects (`local`),
//!    `cors`, `fault` injection, header edits and rewrites (`rewrite`), the cluster, the body kept
//!    for retries and mirrors (`request_body`), the ring hash (`hash`), then `router`;
//! 7. `finish` — status stats, `connection: close` while draining, the access log and the span
//!    when the response body ends.

pub(crate) mod authenticate;
pub(crate) mod authorize;
pub(crate) mod connection;
pub(crate) mod cors;
pub(crate) mod downstream;
pub(crate) mod exchange;
pub(crate) mod fault;
pub(crate) mod finish;
pub(crate) mod forwarding;
pub(crate) mod hash;
pub(crate) mod local;
pub(crate) mod pipeline;
pub(crate) mod policy_check;
pub(crate) mod request_body;
pub(crate) mod rewrite;
pub(crate) mod route;
pub(crate) mod router;
pub(crate) mod routing;
pub(crate) mod span;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod upgrade;
