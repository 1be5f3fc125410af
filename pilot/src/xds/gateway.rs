//! Gateway listeners, as Istio 1.4 builds them for `router` proxies. Every server port of the
//! Gateways that select the proxy becomes a listener `0.0.0.0_PORT` whose filter chains depend on
//! each server's protocol and TLS mode:
//!
//! - plain HTTP: one chain, HCM with RDS `http.PORT` (`httpsRedirect` turns into `require_tls`
//!   on that route's virtual hosts);
//! - HTTPS with SIMPLE, MUTUAL or ISTIO_MUTUAL: TLS is terminated with the server's certificate
//!   files, one chain per server matched by SNI, HCM with RDS `https.PORT.PORTNAME.GATEWAY.NS`.
//!   A gateway whose agent serves its namespace's Secrets (`USER_SDS=true`) takes a server's
//!   `credentialName` over SDS instead: the secret of that name from
//!   `unix:/var/run/ingress_gateway/sds`, and for MUTUAL the client CA `<credentialName>-cacert`;
//! - HTTPS/TLS with PASSTHROUGH: chains matched by the SNI hosts of the bound VirtualServices'
//!   `tls` routes, proxying the still-encrypted stream;
//! - AUTO_PASSTHROUGH: `sni_cluster` picks the `outbound_.PORT_.SUBSET_.HOST` cluster named by
//!   the SNI (the clusters a `sni-dnat` router gets);
//! - TLS with SIMPLE/MUTUAL: terminated, then the `tcp` routes;
//! - TCP: the `tcp` routes.
//!
//! Server hosts may be `ns/host`: only VirtualServices in that namespace (`.` is the gateway's
//! own) bind through it.
//!
//! AuthorizationPolicies that select the gateway put RBAC on every chain, as 1.4 did: the HTTP
//! filter first in each connection manager, the network filter before each TCP proxy.

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::envoy::extensions::filters::network::sni_cluster::v3::SniCluster;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, tls_parameters, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
    TlsCertificate, TlsParameters,
};
use envoy_types::pb::google::protobuf::BoolValue;
use istio_api::pb::istio::networking::v1alpha3 as net;
use istio_xds::sds::{secret_from_gateway_agent, GATEWAY_CA_SUFFIX, GATEWAY_SDS_TARGET};
use net::server::tls_options::{TlSmode, TlsProtocol};

use super::authz::RbacFilters;
use super::listener::{
    connection_manager_with, listener, rds, tcp_destinations, tcp_proxy_filter, tls_inspector, tls_routes,
    unique_chains,
};
use super::tls::{istio_mutual_tls, san_matcher, CertSource};
use super::{any, file_source, BLACKHOLE_CLUSTER};
use crate::model::{Named, PushContext};
use crate::node::Proxy;
use crate::scope::gateways::{gateways_for, https_route_name, server_host_admits, server_mode, ServerMode};
use crate::scope::virtual_services::virtual_services_for;

/// A server's hosts without their namespace part.
fn bare_hosts(server: &net::Server) -> Vec<String> {
    server.hosts.iter().map(|h| h.split_once('/').map_or(h.as_str(), |(_, host)| host).to_string()).collect()
}

/// SNI names a chain for `server` matches: its hosts, none for `*` (match anything).
fn server_names(server: &net::Server) -> Vec<String> {
    let hosts = bare_hosts(server);
    if hosts.iter().any(|host| host == "*") {
        Vec::new()
    } else {
        hosts
    }
}

fn tls_version(version: i32) -> i32 {
    match TlsProtocol::try_from(version).unwrap_or(TlsProtocol::TlsAuto) {
        TlsProtocol::TlsAuto => tls_parameters::TlsProtocol::TlsAuto as i32,
        TlsProtocol::Tlsv10 => tls_parameters::TlsProtocol::TlSv10 as i32,
        TlsProtocol::Tlsv11 => tls_parameters::TlsProtocol::TlSv11 as i32,
        TlsProtocol::Tlsv12 => tls_parameters::TlsProtocol::TlSv12 as i32,
        TlsProtocol::Tlsv13 => tls_parameters::TlsProtocol::TlSv13 as i32,
    }
}

/// Whether a server's certificate comes over SDS from the gateway's agent: it names a
/// `credentialName` and the gateway has that agent (`user_sds`).
fn credential_over_sds(tls: &net::server::TlsOptions, user_sds: bool) -> bool {
    user_sds && !tls.credential_name.is_empty() && TlSmode::try_from(tls.mode).ok() != Some(TlSmode::IstioMutual)
}

/// A terminating server that names its certificate only by `credentialName`, on a gateway
/// without an agent to serve it.
fn lacks_certificate(server: &net::Server, user_sds: bool) -> bool {
    server.tls.as_ref().is_some_and(|tls| {
        TlSmode::try_from(tls.mode).ok() != Some(TlSmode::IstioMutual)
            && tls.server_certificate.is_empty()
            && !tls.credential_name.is_empty()
            && !user_sds
    })
}

/// The peer checks a terminating server's options ask for.
fn peer_checks(
    tls: &net::server::TlsOptions,
    trusted_ca: Option<envoy_types::pb::envoy::config::core::v3::DataSource>,
) -> CertificateValidationContext {
    CertificateValidationContext {
        trusted_ca,
        match_typed_subject_alt_names: tls.subject_alt_names.iter().map(|name| san_matcher(name)).collect(),
        verify_certificate_spki: tls.verify_certificate_spki.clone(),
        verify_certificate_hash: tls.verify_certificate_hash.clone(),
        ..Default::default()
    }
}

/// The certificate and peer checks of a server whose `credentialName` comes over SDS.
fn credential_tls(tls: &net::server::TlsOptions, mode: TlSmode, alpn: Vec<String>) -> CommonTlsContext {
    let mut common = CommonTlsContext {
        alpn_protocols: alpn,
        tls_certificate_sds_secret_configs: vec![secret_from_gateway_agent(&tls.credential_name, GATEWAY_SDS_TARGET)],
        ..Default::default()
    };
    if mode == TlSmode::Mutual {
        let ca_name = format!("{}{GATEWAY_CA_SUFFIX}", tls.credential_name);
        common.validation_context_type = Some(common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(peer_checks(tls, None)),
                validation_context_sds_secret_config: Some(secret_from_gateway_agent(&ca_name, GATEWAY_SDS_TARGET)),
                ..Default::default()
            },
        ));
    } else if !tls.subject_alt_names.is_empty() {
        common.validation_context_type =
            Some(common_tls_context::ValidationContextType::ValidationContext(peer_checks(tls, None)));
    }
    common
}

/// The downstream TLS context of a terminating server; `alpn` is what it offers clients. For
/// ISTIO_MUTUAL the gateway's own workload certificate is used (files, or SDS when `sds`); a
/// `credentialName` on a gateway with its own SDS agent (`user_sds`) comes from that agent.
pub(crate) fn downstream_tls(
    tls: &net::server::TlsOptions,
    alpn: &[&str],
    certs: &CertSource,
    user_sds: bool,
) -> TransportSocket {
    let mode = TlSmode::try_from(tls.mode).unwrap_or(TlSmode::Simple);
    let alpn: Vec<String> = alpn.iter().map(|p| (*p).to_string()).collect();
    let mut common = if mode == TlSmode::IstioMutual {
        istio_mutual_tls(alpn, certs, &[])
    } else if credential_over_sds(tls, user_sds) {
        credential_tls(tls, mode, alpn)
    } else {
        let mut common = CommonTlsContext { alpn_protocols: alpn, ..Default::default() };
        if let (Some(chain), Some(key)) = (file_source(&tls.server_certificate), file_source(&tls.private_key)) {
            common.tls_certificates =
                vec![TlsCertificate { certificate_chain: Some(chain), private_key: Some(key), ..Default::default() }];
        }
        if mode == TlSmode::Mutual {
            common.validation_context_type = Some(common_tls_context::ValidationContextType::ValidationContext(
                peer_checks(tls, file_source(&tls.ca_certificates)),
            ));
        }
        common
    };
    common.tls_params = Some(TlsParameters {
        tls_minimum_protocol_version: tls_version(tls.min_protocol_version),
        tls_maximum_protocol_version: tls_version(tls.max_protocol_version),
        cipher_suites: tls.cipher_suites.clone(),
        ..Default::default()
    });
    let context = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: matches!(mode, TlSmode::Mutual | TlSmode::IstioMutual) }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(context))),
    }
}

/// Filter chains for the `tls` routes of the VirtualServices bound through a passthrough
/// server: one per route match, matched by the SNI hosts the server admits.
fn passthrough_chains(
    rbac: &RbacFilters,
    push: &PushContext,
    gateway: &Named<net::Gateway>,
    server: &net::Server,
    port: u32,
) -> Vec<FilterChain> {
    let full = gateway.key();
    let mut chains = Vec::new();
    for vs in virtual_services_for(push, Some(&full)) {
        let admitted = |host: &str| {
            server
                .hosts
                .iter()
                .any(|server_host| server_host_admits(&gateway.namespace, server_host, &vs.namespace, host))
        };
        if !vs.spec.hosts.iter().any(|host| admitted(host)) {
            continue;
        }
        for (sni, clusters) in tls_routes(push, vs, port, Some(&full), admitted) {
            chains.push(FilterChain {
                filter_chain_match: Some(FilterChainMatch { server_names: sni, ..Default::default() }),
                filters: rbac.before(tcp_proxy_filter(&format!("outbound_0.0.0.0_{port}"), &clusters)),
                ..Default::default()
            });
        }
    }
    chains
}

/// Every listener of a gateway proxy.
pub(crate) fn gateway_listeners(push: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    let certs = CertSource::for_proxy(proxy, &push.mesh);
    let mut rbac = RbacFilters::for_proxy(push, proxy);
    if rbac.is_empty() {
        rbac = super::authz_v1alpha1::filters_for_gateway(push, proxy);
    }
    let mut ports: std::collections::BTreeMap<u32, Vec<(&Named<net::Gateway>, &net::Server)>> = Default::default();
    for gateway in gateways_for(push, proxy) {
        for server in &gateway.spec.servers {
            if let Some(port) = &server.port {
                ports.entry(port.number).or_default().push((gateway, server));
            }
        }
    }
    // Origin authentication of the Policy that targets the gateway's service (1.4's authn plugin
    // gave routers the same filters as sidecars), first in each connection manager.
    let gateway_service = super::authz_v1alpha1::gateway_service(push, proxy);
    let http_plugins = |port: u32| -> Vec<
        envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter,
    > {
        let jwt = gateway_service.and_then(|service| {
            let service_port = service.ports.iter().find(|p| p.number == port).or_else(|| service.ports.first())?;
            let (policy, name) = crate::scope::authn::policy_for(push, service, service_port)?;
            super::authn_jwt::jwt_filter(push, policy, &name)
        });
        jwt.into_iter().chain(rbac.http_plugins()).collect()
    };
    let mut listeners = Vec::new();
    for (port, servers) in ports {
        let stat_prefix = format!("outbound_0.0.0.0_{port}");
        let mut chains: Vec<FilterChain> = Vec::new();
        let mut plain_http = false;
        for (gateway, server) in &servers {
            match server_mode(server) {
                ServerMode::PlainHttp => plain_http = true,
                ServerMode::TerminatedHttps | ServerMode::TerminatedTcp
                    if lacks_certificate(server, proxy.user_sds) =>
                {
                    tracing::warn!(
                        gateway = %gateway.key(),
                        port,
                        proxy = %proxy.id,
                        "server names its certificate only by credentialName, and this gateway has no SDS agent for it (USER_SDS); skipped"
                    );
                }
                ServerMode::TerminatedHttps => {
                    let Some(tls) = &server.tls else { continue };
                    chains.push(FilterChain {
                        filter_chain_match: Some(FilterChainMatch {
                            server_names: server_names(server),
                            ..Default::default()
                        }),
                        transport_socket: Some(downstream_tls(tls, &["h2", "http/1.1"], &certs, proxy.user_sds)),
                        filters: vec![connection_manager_with(
                            &stat_prefix,
                            rds(&https_route_name(gateway, server)),
                            http_plugins(port),
                        )],
                        ..Default::default()
                    });
                }
                ServerMode::TerminatedTcp => {
                    let Some(tls) = &server.tls else { continue };
                    let clusters = server_tcp_destinations(push, gateway, server, port);
                    chains.push(FilterChain {
                        filter_chain_match: Some(FilterChainMatch {
                            server_names: server_names(server),
                            ..Default::default()
                        }),
                        transport_socket: Some(downstream_tls(tls, &[], &certs, proxy.user_sds)),
                        filters: rbac.before(tcp_proxy_filter(&stat_prefix, &clusters)),
                        ..Default::default()
                    });
                }
                ServerMode::Passthrough => chains.extend(passthrough_chains(&rbac, push, gateway, server, port)),
                ServerMode::AutoPassthrough => chains.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        server_names: server_names(server),
                        ..Default::default()
                    }),
                    filters: std::iter::once(Filter {
                        name: "envoy.filters.network.sni_cluster".to_string(),
                        config_type: Some(filter::ConfigType::TypedConfig(any(SniCluster::default()))),
                    })
                    .chain(rbac.before(tcp_proxy_filter(&stat_prefix, &[(BLACKHOLE_CLUSTER.to_string(), 100)])))
                    .collect(),
                    ..Default::default()
                }),
                ServerMode::Tcp => {
                    let clusters = server_tcp_destinations(push, gateway, server, port);
                    chains.push(FilterChain {
                        filters: rbac.before(tcp_proxy_filter(&stat_prefix, &clusters)),
                        ..Default::default()
                    });
                }
            }
        }
        let tls_chains = !chains.is_empty();
        if plain_http {
            // With TLS chains on the same port, the clear-text chain takes what is not TLS.
            let transport_protocol = if tls_chains { "raw_buffer".to_string() } else { String::new() };
            chains.push(FilterChain {
                filter_chain_match: tls_chains.then(|| FilterChainMatch { transport_protocol, ..Default::default() }),
                filters: vec![connection_manager_with(&stat_prefix, rds(&format!("http.{port}")), http_plugins(port))],
                ..Default::default()
            });
        }
        let unique = unique_chains(chains, &format!("gateway port {port}"));
        if unique.is_empty() {
            tracing::debug!(port, "no routable gateway server on this port; no listener");
            continue;
        }
        let inspect_tls = unique.iter().any(|chain| {
            chain.transport_socket.is_some()
                || chain
                    .filter_chain_match
                    .as_ref()
                    .is_some_and(|m| !m.server_names.is_empty() || !m.transport_protocol.is_empty())
        });
        let mut gateway_listener = listener(format!("0.0.0.0_{port}"), "0.0.0.0", port, unique, true);
        if inspect_tls {
            gateway_listener.listener_filters = vec![tls_inspector()];
        }
        listeners.push(gateway_listener);
    }
    listeners
}

/// Destinations of the `tcp` routes bound through a TCP (or terminated TLS) server; the
/// BlackHoleCluster when none applies.
fn server_tcp_destinations(
    push: &PushContext,
    gateway: &Named<net::Gateway>,
    server: &net::Server,
    port: u32,
) -> Vec<(String, u32)> {
    let full = gateway.key();
    let bound = virtual_services_for(push, Some(&full)).filter(|vs| {
        vs.spec.hosts.iter().any(|host| {
            server
                .hosts
                .iter()
                .any(|server_host| server_host_admits(&gateway.namespace, server_host, &vs.namespace, host))
        })
    });
    tcp_destinations(push, bound, port, Some(&full), |_, _| true)
        .unwrap_or_else(|| vec![(BLACKHOLE_CLUSTER.to_string(), 100)])
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{api_config_source, config_source, grpc_service};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
    use prost::Message;
    use serde_json::json;

    use crate::node::ProxyKind;

    use super::*;

    #[test]
    fn overlapping_chains_keep_only_what_is_still_unclaimed() {
        let chain = |names: &[&str]| FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                server_names: names.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let kept = crate::xds::listener::unique_chains(
            vec![
                chain(&["a.com", "b.com"]),
                chain(&["b.com"]),
                chain(&["c.com", "b.com", "c.com"]),
                chain(&["*"]),
                FilterChain::default(),
            ],
            "test",
        );
        let names: Vec<Vec<String>> = kept
            .iter()
            .map(|c| c.filter_chain_match.as_ref().map(|m| m.server_names.clone()).unwrap_or_default())
            .collect();
        assert_eq!(names, vec![vec!["a.com".to_string(), "b.com".to_string()], vec!["c.com".to_string()], vec![]]);
        assert!(kept[2].filter_chain_match.is_none(), "`*` matches anything: no match at all");
    }

    fn gateway_with(mode: &str, extra: serde_json::Value) -> Named<net::Gateway> {
        let mut tls = json!({"mode": mode, "credentialName": "httpbin-credential"});
        if let (Some(tls), Some(extra)) = (tls.as_object_mut(), extra.as_object()) {
            tls.extend(extra.clone());
        }
        let spec = json!({
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "tls": tls,
                "hosts": ["httpbin.example.com"]
            }]
        });
        Named {
            name: "mygateway".into(),
            namespace: "istio-system".into(),
            spec: istio_api::json::decode("istio.networking.v1alpha3.Gateway", &spec).expect("gateway"),
        }
    }

    fn ingress(user_sds: bool) -> Proxy {
        let mut proxy = crate::testing::sidecar("istio-system", "10.1.0.90", &[("istio", "ingressgateway")]);
        proxy.kind = ProxyKind::Router;
        proxy.user_sds = user_sds;
        proxy
    }

    fn downstream(listeners: &[Listener]) -> DownstreamTlsContext {
        let listener = listeners.iter().find(|l| l.name == "0.0.0.0_443").expect("listener on 443");
        let socket = listener.filter_chains[0].transport_socket.as_ref().expect("TLS");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else { panic!("typed") };
        DownstreamTlsContext::decode(any.value.as_slice()).expect("a DownstreamTlsContext")
    }

    /// The secret's name and the target of its Google gRPC source.
    fn sds_target(config: &SdsSecretConfig) -> (String, String) {
        let Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) =
            config.sds_config.as_ref().and_then(|source| source.config_source_specifier.clone())
        else {
            panic!("an API config source")
        };
        assert_eq!(api.api_type, api_config_source::ApiType::Grpc as i32);
        let Some(grpc_service::TargetSpecifier::GoogleGrpc(google)) = api.grpc_services[0].target_specifier.clone()
        else {
            panic!("Google gRPC")
        };
        assert!(google.call_credentials.is_empty(), "the gateway's own socket needs no token");
        (config.name.clone(), google.target_uri)
    }

    #[test]
    fn credential_name_comes_from_the_gateway_agent_when_the_gateway_has_one() {
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.gateways = vec![gateway_with("SIMPLE", json!({}))];
        let context = downstream(&gateway_listeners(&push, &ingress(true)));
        let common = context.common_tls_context.expect("common");
        assert!(common.tls_certificates.is_empty());
        assert_eq!(
            sds_target(&common.tls_certificate_sds_secret_configs[0]),
            ("httpbin-credential".to_string(), "unix:/var/run/ingress_gateway/sds".to_string())
        );
        assert_eq!(common.validation_context_type, None);
        assert_eq!(context.require_client_certificate, Some(BoolValue { value: false }));

        // Without the agent the server cannot be served; no listener is made for it.
        assert!(gateway_listeners(&push, &ingress(false)).is_empty());
    }

    #[test]
    fn mutual_adds_the_client_ca_secret_and_keeps_the_san_checks() {
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.gateways = vec![gateway_with("MUTUAL", json!({"subjectAltNames": ["client.example.com"]}))];
        let context = downstream(&gateway_listeners(&push, &ingress(true)));
        assert_eq!(context.require_client_certificate, Some(BoolValue { value: true }));
        let common = context.common_tls_context.expect("common");
        let Some(common_tls_context::ValidationContextType::CombinedValidationContext(combined)) =
            common.validation_context_type
        else {
            panic!("a combined validation context")
        };
        let ca = combined.validation_context_sds_secret_config.expect("CA over SDS");
        assert_eq!(sds_target(&ca).0, "httpbin-credential-cacert");
        let defaults = combined.default_validation_context.expect("default context");
        assert_eq!(defaults.match_typed_subject_alt_names.len(), 1);
        assert_eq!(defaults.trusted_ca, None);
    }

    #[test]
    fn a_simple_server_with_sans_checks_them_without_a_ca_secret() {
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.gateways = vec![gateway_with("SIMPLE", json!({"subjectAltNames": ["client.example.com"]}))];
        let common = downstream(&gateway_listeners(&push, &ingress(true))).common_tls_context.expect("common");
        assert!(matches!(
            common.validation_context_type,
            Some(common_tls_context::ValidationContextType::ValidationContext(ref context))
                if context.match_typed_subject_alt_names.len() == 1
        ));
    }

    #[test]
    fn policies_that_select_the_gateway_guard_every_chain() {
        let gateway = |servers: serde_json::Value| Named {
            name: "g".into(),
            namespace: "istio-system".into(),
            spec: istio_api::json::decode(
                "istio.networking.v1alpha3.Gateway",
                &json!({"selector": {"istio": "ingressgateway"}, "servers": servers}),
            )
            .expect("gateway"),
        };
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.gateways = vec![gateway(json!([
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
            {"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}
        ]))];
        let names = |push: &PushContext| -> Vec<(String, Vec<String>)> {
            gateway_listeners(push, &ingress(false))
                .iter()
                .map(|listener| {
                    let filters = &listener.filter_chains[0].filters;
                    let mut names: Vec<String> = filters.iter().map(|filter| filter.name.clone()).collect();
                    if let Some(filter::ConfigType::TypedConfig(any)) = &filters.last().and_then(|f| f.config_type.clone()) {
                        if let Ok(manager) = envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager::decode(any.value.as_slice()) {
                            names.extend(manager.http_filters.iter().map(|filter| filter.name.clone()).take(1));
                        }
                    }
                    (listener.name.clone(), names)
                })
                .collect()
        };
        let unguarded = names(&push);
        assert!(
            unguarded.iter().all(|(_, filters)| !filters.iter().any(|name| name.contains("rbac"))),
            "{unguarded:?}"
        );
        push.authorization_policies = vec![Named {
            name: "ingress".into(),
            namespace: "istio-system".into(),
            spec: istio_api::json::decode(
                "istio.security.v1beta1.AuthorizationPolicy",
                &json!({"selector": {"matchLabels": {"istio": "ingressgateway"}}}),
            )
            .expect("policy"),
        }];
        let guarded = names(&push);
        assert_eq!(
            guarded,
            [
                (
                    "0.0.0.0_80".to_string(),
                    vec![
                        "envoy.filters.network.http_connection_manager".to_string(),
                        "envoy.filters.http.rbac".to_string()
                    ]
                ),
                (
                    "0.0.0.0_31400".to_string(),
                    vec!["envoy.filters.network.rbac".to_string(), "envoy.filters.network.tcp_proxy".to_string()]
                ),
            ]
        );
    }
}
