//! `virtualInbound` (:15006), where iptables sends every inbound connection: a filter chain
//! per port the workload serves, shaped by the authentication policy of the service behind the
//! port, as Istio 1.4's authn plugin shaped them:
//! - no mutual TLS: one plaintext chain;
//! - STRICT: one chain that terminates Istio mutual TLS and requires the peer's certificate
//!   (signed by the mesh root), so plaintext is refused;
//! - PERMISSIVE: that chain matched on the `istio` ALPN the mesh's clients offer, and a
//!   plaintext chain for everything else, told apart by the TLS inspector.
//!
//! The terminating context offers `h2` and `http/1.1` (never `istio`, which would disturb
//! HTTP/2 negotiation) and uses the workload certificate, from `/etc/certs` or over SDS.
//! Connections to no known port pass through. AuthorizationPolicies that apply to the workload
//! put RBAC in front of each port: the HTTP filter first in an HTTP port's manager, the
//! network filter before a TCP port's proxy ([`super::authz`]). A policy with origins (end-user
//! JWT) puts `jwt_authn` first in an HTTP port's manager ([`super::authn_jwt`]).

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use istio_xds::ClusterName;

use super::inbound::{inbound_targets, InboundTarget};
use super::listener::{connection_manager_with, listener, listener_filter_of, tcp_proxy_filter, tls_inspector};
use super::tls::{istio_mutual_tls, CertSource};
use super::{any, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND};
use crate::model::{PushContext, Service, ServicePort};
use crate::node::Proxy;
use crate::scope::authn::MtlsMode;

/// The ALPN mesh clients offer, which PERMISSIVE chains match on.
pub(crate) const ALPN_IN_MESH: &str = "istio";
/// What the terminating side offers.
const ALPN_HTTP: [&str; 2] = ["h2", "http/1.1"];

/// `virtualInbound` for a sidecar.
pub(crate) fn virtual_inbound(push: &PushContext, proxy: &Proxy) -> Listener {
    let certs = CertSource::for_proxy(proxy, &push.mesh);
    let rbac = super::authz::RbacFilters::for_proxy(push, proxy);
    let mut chains = Vec::new();
    for target in inbound_targets(push, proxy) {
        let (service, port) = target_service(push, &target);
        // The authentication policy of the service port: mutual TLS and origin authentication.
        let policy = service.zip(port).and_then(|(service, port)| crate::scope::authn::policy_for(push, service, port));
        let jwt = policy.as_ref().and_then(|(policy, name)| super::authn_jwt::jwt_filter(push, policy, name));
        // v1alpha1 authorization applies per service, and only where no v1beta1 policy does.
        let v1alpha1 = service
            .filter(|_| rbac.is_empty())
            .map(|service| super::authz_v1alpha1::filters_for_service(push, service, &proxy.labels));
        let mixer = Mixer {
            http: target
                .protocol
                .is_http()
                .then(|| super::mixer::inbound_http(push, proxy, service, target.listen_port))
                .flatten(),
            tcp: (!target.protocol.is_http())
                .then(|| super::mixer::inbound_tcp(push, proxy, service, target.listen_port))
                .flatten(),
        };
        let filters = target_filters(&target, jwt, v1alpha1.as_ref().unwrap_or(&rbac), mixer);
        let port_match = FilterChainMatch {
            destination_port: Some(UInt32Value { value: target.listen_port }),
            ..Default::default()
        };
        let plaintext = FilterChain {
            filter_chain_match: Some(port_match.clone()),
            filters: filters.clone(),
            ..Default::default()
        };
        let secure = |application_protocols: Vec<String>| FilterChain {
            filter_chain_match: Some(FilterChainMatch { application_protocols, ..port_match.clone() }),
            filters: filters.clone(),
            transport_socket: Some(inbound_mutual_tls(&certs)),
            ..Default::default()
        };
        // A target no service owns (a Sidecar ingress port of its own) follows no policy:
        // plaintext.
        match crate::scope::authn::mtls_mode(policy.map(|(policy, _)| policy)) {
            MtlsMode::Disable => chains.push(plaintext),
            MtlsMode::Strict => chains.push(secure(Vec::new())),
            MtlsMode::Permissive => {
                chains.push(secure(vec![ALPN_IN_MESH.to_string()]));
                chains.push(plaintext);
            }
        }
    }
    let inspects_tls = chains
        .iter()
        .any(|chain| chain.filter_chain_match.as_ref().is_some_and(|m| !m.application_protocols.is_empty()));
    let mut inbound = listener(
        VIRTUAL_INBOUND.to_string(),
        "0.0.0.0",
        u32::from(istio_runtime::ports::PROXY_INBOUND_CAPTURE),
        chains,
        true,
    );
    inbound.default_filter_chain = Some(FilterChain {
        name: "virtualInbound-passthrough".to_string(),
        filters: vec![tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER, &[(INBOUND_PASSTHROUGH_CLUSTER.to_string(), 100)])],
        ..Default::default()
    });
    inbound.listener_filters =
        vec![listener_filter_of("envoy.filters.listener.original_dst", any(OriginalDst::default()))];
    if inspects_tls {
        inbound.listener_filters.push(tls_inspector());
    }
    inbound
}

/// The service (and its port) behind an inbound target, when the registry knows them.
fn target_service<'a>(push: &'a PushContext, target: &InboundTarget) -> (Option<&'a Service>, Option<&'a ServicePort>) {
    let Ok(name) = target.cluster.parse::<ClusterName>() else { return (None, None) };
    let service = push.service(&name.host).map(|service| service.as_ref());
    (service, service.and_then(|service| service.port(name.port)))
}

/// Istio mutual TLS on the server side: the workload certificate, the peer's required.
fn inbound_mutual_tls(certs: &CertSource) -> TransportSocket {
    let alpn = ALPN_HTTP.iter().map(|protocol| (*protocol).to_string()).collect();
    let context = DownstreamTlsContext {
        common_tls_context: Some(istio_mutual_tls(alpn, certs, &[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(context))),
    }
}

/// Mixer's filters for a target, when the proxy checks with Mixer ([`super::mixer`]).
struct Mixer {
    http: Option<super::mixer::InboundHttpPolicy>,
    tcp: Option<Filter>,
}

/// The network filters that carry a target's traffic to the application: an HTTP connection
/// manager with one route to the inbound cluster, or a TCP proxy; with authorization, the
/// manager starts with the RBAC HTTP filter, or the RBAC network filter goes before the proxy.
/// Origin authentication (`jwt`) comes first in the manager, so RBAC sees the token's claims;
/// Mixer's check comes after RBAC, as 1.4 ordered its plugins.
fn target_filters(
    target: &InboundTarget,
    jwt: Option<HttpFilter>,
    rbac: &super::authz::RbacFilters,
    mixer: Mixer,
) -> Vec<Filter> {
    let cluster = target.cluster.clone();
    let cluster_name = cluster.parse::<ClusterName>().ok();
    let service_port = cluster_name.as_ref().map_or(target.listen_port, |name| name.port);
    if !target.protocol.is_http() {
        let mut filters = rbac.before(tcp_proxy_filter(&cluster, &[(cluster.clone(), 100)]));
        if let Some(check) = mixer.tcp {
            filters.insert(filters.len() - 1, check);
        }
        return filters;
    }
    let (mixer_filter, mixer_route) = match mixer.http {
        Some(policy) => (Some(policy.filter), Some(policy.route_config)),
        None => (None, None),
    };
    let route = RouteConfiguration {
        name: cluster.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{service_port}"),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                name: "default".to_string(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(
                        envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix("/".to_string()),
                    ),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.clone())),
                    timeout: Some(super::seconds(0)),
                    ..Default::default()
                })),
                // Server spans are named after the service, as 1.4 named them.
                decorator: cluster_name
                    .as_ref()
                    .and_then(|name| super::route::decorator(format!("{}:{}/*", name.host, name.port))),
                typed_per_filter_config: mixer_route.into_iter().collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    };
    vec![connection_manager_with(
        &format!("inbound_0.0.0.0_{}", target.listen_port),
        http_connection_manager::RouteSpecifier::RouteConfig(route),
        jwt.into_iter().chain(rbac.http_plugins()).chain(mixer_filter).collect(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{authn_policy, push, reviews, sidecar};
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use serde_json::json;

    fn chains_for_reviews(push: &PushContext) -> Vec<(Vec<String>, bool)> {
        let listener = virtual_inbound(push, &sidecar("default", "10.1.0.21", &[("app", "reviews")]));
        listener
            .filter_chains
            .iter()
            .map(|chain| {
                let matcher = chain.filter_chain_match.clone().expect("match");
                assert_eq!(matcher.destination_port, Some(UInt32Value { value: 9080 }));
                (matcher.application_protocols, chain.transport_socket.is_some())
            })
            .collect()
    }

    fn inspects_tls(push: &PushContext) -> bool {
        let listener = virtual_inbound(push, &sidecar("default", "10.1.0.21", &[("app", "reviews")]));
        listener.listener_filters.iter().any(|filter| filter.name == "envoy.filters.listener.tls_inspector")
    }

    #[test]
    fn policies_shape_the_inbound_chains() {
        let mut context = push(reviews(), vec![]);
        assert_eq!(chains_for_reviews(&context), [(vec![], false)], "no policy: plaintext");
        assert!(!inspects_tls(&context));

        context.mesh_policy = Some(authn_policy("", "default", json!({"peers": [{"mtls": {}}]})));
        assert_eq!(chains_for_reviews(&context), [(vec![], true)], "STRICT: mutual TLS only");
        assert!(!inspects_tls(&context));

        context.authn_policies.push(authn_policy(
            "default",
            "default",
            json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}),
        ));
        assert_eq!(
            chains_for_reviews(&context),
            [(vec!["istio".to_string()], true), (vec![], false)],
            "PERMISSIVE: mutual TLS for the mesh's ALPN, plaintext for the rest"
        );
        assert!(inspects_tls(&context), "the TLS inspector tells the two apart");
    }

    #[test]
    fn the_terminating_context_requires_the_peer_certificate() {
        let mut context = push(reviews(), vec![]);
        context.mesh_policy = Some(authn_policy("", "default", json!({"peers": [{"mtls": {}}]})));
        for sds in [false, true] {
            let mut proxy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
            proxy.sds = sds;
            let listener = virtual_inbound(&context, &proxy);
            let socket = listener.filter_chains[0].transport_socket.clone().expect("TLS");
            let Some(ConfigType::TypedConfig(any)) = socket.config_type else { panic!("typed config") };
            let tls: DownstreamTlsContext = prost::Message::decode(any.value.as_slice()).expect("context");
            assert_eq!(tls.require_client_certificate, Some(BoolValue { value: true }));
            let common = tls.common_tls_context.expect("common");
            assert_eq!(common.alpn_protocols, ["h2", "http/1.1"], "never istio on the server side");
            assert_eq!(common.tls_certificate_sds_secret_configs.len(), usize::from(sds), "sds {sds}");
            assert_eq!(common.tls_certificates.len(), usize::from(!sds), "files {sds}");
        }
    }
}
