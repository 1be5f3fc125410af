//! Bookinfo, Istio's sample application, in Rust. Four services with the original HTTP APIs:
//! `productpage` (the web page, login and the product API), `details`, `reviews` (v1 without
//! ratings, v2 black stars, v3 red stars) and `ratings` (v1 and the faulty/delayed variants).
//! Each is a subcommand of the `bookinfo` binary, configured by the same environment
//! variables as the original images.

pub(crate) mod client;
pub mod details;
pub(crate) mod page;
pub mod productpage;
pub mod ratings;
pub mod reviews;
pub mod session;

use std::net::SocketAddr;

/// Serves `router` on `address` until SIGTERM or Ctrl-C.
pub async fn serve(address: SocketAddr, router: axum::Router, service: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("{service} listening on {}", listener.local_addr()?);
    axum::serve(listener, router).with_graceful_shutdown(istio_runtime::shutdown_signal()).await?;
    Ok(())
}

/// Where a peer service is: `<NAME>_HOSTNAME` (default the service name, plus
/// `.$SERVICES_DOMAIN` when set) and `<NAME>_SERVICE_PORT` (default 9080).
pub fn peer_address(service: &str) -> String {
    let upper = service.to_uppercase();
    let host = std::env::var(format!("{upper}_HOSTNAME")).ok().filter(|host| !host.is_empty()).unwrap_or_else(|| {
        match std::env::var("SERVICES_DOMAIN").ok().filter(|domain| !domain.is_empty()) {
            Some(domain) => format!("{service}.{domain}"),
            None => service.to_string(),
        }
    });
    let port = std::env::var(format!("{upper}_SERVICE_PORT")).ok().filter(|port| !port.is_empty());
    format!("{host}:{}", port.as_deref().unwrap_or("9080"))
}
