//! Binding a component's TCP servers, with an error that names the address asked for.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A server could not listen where it was told to.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct BindError {
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener on `address` and returns it with the address it got (port 0 picks one).
pub async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let error = |source| BindError { address, source };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_gets_a_port_and_a_taken_port_names_the_address() {
        let (_listener, bound) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        assert_ne!(bound.port(), 0);
        let error = bind(bound).await.expect_err("taken");
        assert_eq!(error.address, bound);
        assert!(error.to_string().starts_with(&format!("cannot listen on {bound}: ")), "{error}");
    }
}
