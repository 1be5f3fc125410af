//! The type URLs of the xDS v3 resources and typed configs the mesh exchanges, named once.

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
pub const BOOTSTRAP: &str = "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap";
pub const HTTP_CONNECTION_MANAGER: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The short name Envoy's logs and Istio's debug output use for a resource type (`CDS`, …).
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        LISTENER => "LDS",
        ROUTE => "RDS",
        SECRET => "SDS",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;

    /// Every URL names the message `envoy-types` encodes under it.
    #[test]
    fn urls_match_the_generated_messages() {
        use envoy_types::pb::envoy;
        assert_eq!(CLUSTER, envoy::config::cluster::v3::Cluster::type_url());
        assert_eq!(ENDPOINT, envoy::config::endpoint::v3::ClusterLoadAssignment::type_url());
        assert_eq!(LISTENER, envoy::config::listener::v3::Listener::type_url());
        assert_eq!(ROUTE, envoy::config::route::v3::RouteConfiguration::type_url());
        assert_eq!(SECRET, envoy::extensions::transport_sockets::tls::v3::Secret::type_url());
        assert_eq!(BOOTSTRAP, envoy::config::bootstrap::v3::Bootstrap::type_url());
        assert_eq!(
            HTTP_CONNECTION_MANAGER,
            envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager::type_url()
        );
        assert_eq!(short_name(ROUTE), "RDS");
    }
}
