//! The HTTP connection manager, as a chain of small layers, one concern a file. A listener hands
//! a connection to `connection`, which serves HTTP/1.1 and HTTP/2 (and h2c) and runs each request
//! through `pipeline`:
//!
//! 1. `forwarding` — request id, `x-forwarded-for`, `x-forwarded-proto`;
//! 2. `span` — B3 tracing, the span named after the route's decorator;
//! 3. `upgrade` — WebSocket upgrades refused unless allowed, and bridged once accepted;
//! 4. `routing` — the virtual host and route for the request;
//! 5. `route` — what a route does: `require_tls`, direct responses and redirects (`local`),
//!    `cors`, `fault` injection, header edits and rewrites (`rewrite`), the cluster, the body kept
//!    for retries and mirrors (`request_body`), the ring hash (`hash`), then `router`;
//! 6. `finish` — status stats, `connection: close` while draining, the access log and the span
//!    when the response body ends.

pub mod connection;
pub mod cors;
pub mod downstream;
pub mod exchange;
pub mod fault;
pub mod finish;
pub mod forwarding;
pub mod hash;
pub mod local;
pub mod pipeline;
pub mod request_body;
pub mod rewrite;
pub mod route;
pub mod router;
pub mod routing;
pub mod span;
pub mod upgrade;
