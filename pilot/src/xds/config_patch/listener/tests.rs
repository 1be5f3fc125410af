//! 1.4.6's listener patch test, case by case: one EnvoyFilter per patch, the same inputs and
//! the outputs 1.4.6 expected, in v3 terms.

use super::*;
use crate::node::ProxyKind;
use crate::xds::config_patch::prepared::tests::one_per_patch;
use envoy_types::pb::envoy::config::listener::v3::{FilterChainMatch, ListenerFilter};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};

const PATCHES: [&str; 12] = [
    "{applyTo: LISTENER, match: {context: SIDECAR_OUTBOUND, proxy: {metadata: {foo: sidecar}}},
      patch: {operation: ADD, value: {name: new-outbound-listener1}}}",
    r"{applyTo: NETWORK_FILTER, match: {context: SIDECAR_OUTBOUND, proxy: {proxyVersion: '^1\.[2-9](.*?)$'},
        listener: {portNumber: 12345, filterChain: {filter: {name: filter1}}}},
      patch: {operation: INSERT_BEFORE, value: {name: filter0}}}",
    "{applyTo: NETWORK_FILTER, match: {context: SIDECAR_OUTBOUND, listener: {portNumber: 12345, filterChain: {filter: {name: filter2}}}},
      patch: {operation: REMOVE}}",
    "{applyTo: LISTENER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 12345}}, patch: {operation: REMOVE}}",
    "{applyTo: LISTENER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 80}}, patch: {operation: MERGE, value: {}}}",
    "{applyTo: FILTER_CHAIN, match: {context: SIDECAR_INBOUND, listener: {portNumber: 80, filterChain: {transportProtocol: tls}}},
      patch: {operation: REMOVE}}",
    "{applyTo: LISTENER, match: {context: GATEWAY, listener: {portNumber: 80}},
      patch: {operation: MERGE, value: {listener_filters: [{name: foo}]}}}",
    "{applyTo: FILTER_CHAIN, match: {context: GATEWAY, listener: {portNumber: 80, filterChain: {sni: '*.foo.com'}}},
      patch: {operation: MERGE, value: {filter_chain_match: {server_names: [foo.com]}}}}",
    "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {portNumber: 80, filterChain: {sni: '*.foo.com',
        filter: {name: envoy.http_connection_manager, subFilter: {name: http-filter2}}}}},
      patch: {operation: INSERT_AFTER, value: {name: http-filter3}}}",
    "{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 80, filterChain: {
        filter: {name: envoy.http_connection_manager, subFilter: {name: http-filter2}}}}},
      patch: {operation: INSERT_BEFORE, value: {name: http-filter3}}}",
    "{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 80, filterChain: {
        filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.fault}}}}},
      patch: {operation: MERGE, value: {config: {upstream_cluster: scooby}}}}",
    "{applyTo: NETWORK_FILTER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 80, filterChain: {
        filter: {name: envoy.http_connection_manager}}}},
      patch: {operation: MERGE, value: {name: envoy.http_connection_manager, typed_config: {
        '@type': type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager,
        xffNumTrustedHops: 4}}}}",
];

fn listener(name: &str, port: Option<u32>, chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: name.into(),
        address: port.map(|port| crate::xds::socket_address("0.0.0.0", port)),
        filter_chains: chains,
        ..Default::default()
    }
}

fn named_filters(names: &[&str]) -> Vec<Filter> {
    names.iter().map(|name| Filter { name: name.to_string(), config_type: None }).collect()
}

fn http_filter(name: &str) -> HttpFilter {
    HttpFilter { name: name.into(), ..Default::default() }
}

fn fault(upstream_cluster: &str) -> HttpFilter {
    let config = HttpFault { upstream_cluster: upstream_cluster.into(), ..Default::default() };
    HttpFilter {
        name: "envoy.filters.http.fault".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(crate::xds::any(config))),
        ..Default::default()
    }
}

fn manager(xff_num_trusted_hops: u32, http_filters: Vec<HttpFilter>) -> Filter {
    let manager = HttpConnectionManager { xff_num_trusted_hops, http_filters, ..Default::default() };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(crate::xds::any(manager))),
    }
}

fn sni_chain(names: &[&str], filters: Vec<Filter>) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            server_names: names.iter().map(|name| name.to_string()).collect(),
            ..Default::default()
        }),
        filters,
        ..Default::default()
    }
}

fn sidecar() -> Proxy {
    let mut proxy = crate::testing::sidecar("not-default", "10.1.0.1", &[]);
    proxy.istio_version = "1.2.2".into();
    proxy.metadata = [("foo", "sidecar"), ("bar", "proxy")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    proxy
}

fn gateway() -> Proxy {
    let mut proxy = crate::testing::sidecar("not-default", "10.1.0.2", &[]);
    proxy.kind = ProxyKind::Router;
    proxy
}

fn patched(context: PatchContext, proxy: &Proxy, mut listeners: Vec<Listener>, skip_adds: bool) -> Vec<Listener> {
    let filters = one_per_patch("not-default", &PATCHES);
    let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
    apply(context, proxy, &filters, &mut listeners, skip_adds);
    listeners
}

#[test]
fn sidecar_inbound() {
    let input = vec![
        listener("12345", Some(12345), Vec::new()),
        Listener {
            listener_filters: vec![ListenerFilter { name: "envoy.tls_inspector".into(), ..Default::default() }],
            ..listener(
                "another-listener",
                Some(80),
                vec![
                    FilterChain {
                        filter_chain_match: Some(FilterChainMatch {
                            transport_protocol: "tls".into(),
                            ..Default::default()
                        }),
                        filters: named_filters(&["network-filter"]),
                        ..Default::default()
                    },
                    FilterChain {
                        filters: vec![manager(0, vec![fault("foobar"), http_filter("http-filter2")])],
                        ..Default::default()
                    },
                ],
            )
        },
    ];
    let want = vec![Listener {
        listener_filters: vec![ListenerFilter { name: "envoy.tls_inspector".into(), ..Default::default() }],
        ..listener(
            "another-listener",
            Some(80),
            vec![FilterChain {
                filters: vec![manager(
                    4,
                    vec![fault("scooby"), http_filter("http-filter3"), http_filter("http-filter2")],
                )],
                ..Default::default()
            }],
        )
    }];
    assert_eq!(patched(PatchContext::SidecarInbound, &sidecar(), input, false), want);
}

#[test]
fn gateway_listeners() {
    let input = vec![
        listener(
            "80",
            Some(80),
            vec![sni_chain(
                &["match.com", "*.foo.com"],
                vec![manager(0, vec![http_filter("http-filter1"), http_filter("http-filter2")])],
            )],
        ),
        listener(
            "another-listener",
            Some(443),
            vec![sni_chain(&["nomatch.com", "*.foo.com"], named_filters(&["network-filter"]))],
        ),
    ];
    let want = vec![
        Listener {
            listener_filters: vec![ListenerFilter { name: "foo".into(), ..Default::default() }],
            ..listener(
                "80",
                Some(80),
                vec![sni_chain(
                    &["match.com", "*.foo.com", "foo.com"],
                    vec![manager(
                        0,
                        vec![http_filter("http-filter1"), http_filter("http-filter2"), http_filter("http-filter3")],
                    )],
                )],
            )
        },
        listener(
            "another-listener",
            Some(443),
            vec![sni_chain(&["nomatch.com", "*.foo.com"], named_filters(&["network-filter"]))],
        ),
    ];
    assert_eq!(patched(PatchContext::Gateway, &gateway(), input, false), want);
}

#[test]
fn sidecar_outbound_with_and_without_adds() {
    let input = || {
        vec![
            listener(
                "12345",
                Some(12345),
                vec![FilterChain { filters: named_filters(&["filter1", "filter2"]), ..Default::default() }],
            ),
            listener("another-listener", None, Vec::new()),
        ]
    };
    let mut want = vec![
        listener(
            "12345",
            Some(12345),
            vec![FilterChain { filters: named_filters(&["filter0", "filter1"]), ..Default::default() }],
        ),
        listener("another-listener", None, Vec::new()),
    ];
    assert_eq!(patched(PatchContext::SidecarOutbound, &sidecar(), input(), true), want);
    want.push(listener("new-outbound-listener1", None, Vec::new()));
    assert_eq!(patched(PatchContext::SidecarOutbound, &sidecar(), input(), false), want);

    // A proxy of another version or without the metadata gets neither the insert nor the add.
    let mut old = sidecar();
    old.istio_version = "1.1.0".into();
    old.metadata.clear();
    let got = patched(PatchContext::SidecarOutbound, &old, input(), false);
    assert_eq!(got[0].filter_chains[0].filters, named_filters(&["filter1"]));
    assert_eq!(got.len(), 2);
}

/// A port on `virtualInbound` is the port of its filter chains: a patch for port 9080 touches
/// that chain and no other.
#[test]
fn ports_of_virtual_listener_chains() {
    let filters = one_per_patch(
        "default",
        &["{applyTo: NETWORK_FILTER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 9080}},
           patch: {operation: INSERT_BEFORE, value: {name: first}}}"],
    );
    let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
    let chain = |port: u32| FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(envoy_types::pb::google::protobuf::UInt32Value { value: port }),
            ..Default::default()
        }),
        filters: named_filters(&["tcp"]),
        ..Default::default()
    };
    let mut listeners = vec![listener("virtualInbound", Some(15006), vec![chain(9080), chain(9090)])];
    apply(PatchContext::SidecarInbound, &sidecar(), &filters, &mut listeners, true);
    assert_eq!(listeners[0].filter_chains[0].filters, named_filters(&["first", "tcp"]));
    assert_eq!(listeners[0].filter_chains[1].filters, named_filters(&["tcp"]));
}

/// A LISTENER REMOVE or MERGE by port names the listener on that port: not `virtualInbound`,
/// which only takes the port through one of its chains (1.4's REMOVE of port 12345).
#[test]
fn listener_patches_by_port_leave_virtual_inbound_whole() {
    let filters = one_per_patch(
        "default",
        &[
            "{applyTo: LISTENER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 9080}}, patch: {operation: REMOVE}}",
            "{applyTo: LISTENER, match: {context: SIDECAR_INBOUND, listener: {portNumber: 9080}},
              patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 1024}}}",
        ],
    );
    let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
    let chain = |port: u32| FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(envoy_types::pb::google::protobuf::UInt32Value { value: port }),
            ..Default::default()
        }),
        filters: named_filters(&["tcp"]),
        ..Default::default()
    };
    let mut listeners = vec![
        listener("virtualInbound", Some(15006), vec![chain(9080), chain(9090)]),
        listener("10.1.0.9_9080", Some(9080), vec![chain(9080)]),
    ];
    apply(PatchContext::SidecarInbound, &sidecar(), &filters, &mut listeners, true);
    let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["virtualInbound"], "only the listener on 9080 itself is removed");
    assert_eq!(listeners[0].filter_chains.len(), 2, "virtualInbound keeps every chain");
    assert_eq!(listeners[0].per_connection_buffer_limit_bytes, None, "nor is it merged into");
}

/// An ADDed filter, or one INSERTed after the terminal filter, goes just before the router, the
/// HTTP connection manager or the TCP proxy: 1.4 put it after them (dead, in Envoy of its day),
/// which Envoy today refuses along with the whole listener update.
#[test]
fn filters_added_at_the_end_go_before_the_terminal_filter() {
    let filters = one_per_patch(
        "default",
        &[
            "{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND, listener: {filterChain: {
                filter: {name: envoy.http_connection_manager}}}},
              patch: {operation: ADD, value: {name: added-http}}}",
            "{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND, listener: {filterChain: {
                filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.router}}}}},
              patch: {operation: INSERT_AFTER, value: {name: after-router}}}",
            "{applyTo: NETWORK_FILTER, match: {context: SIDECAR_INBOUND},
              patch: {operation: ADD, value: {name: added-network}}}",
        ],
    );
    let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
    let http = FilterChain {
        filters: vec![manager(0, vec![http_filter("first"), http_filter("envoy.filters.http.router")])],
        ..Default::default()
    };
    let tcp = FilterChain { filters: named_filters(&["mixer", "envoy.tcp_proxy"]), ..Default::default() };
    let open = FilterChain { filters: named_filters(&["not-terminal"]), ..Default::default() };
    let mut listeners = vec![listener("virtualInbound", Some(15006), vec![http, tcp, open])];
    apply(PatchContext::SidecarInbound, &sidecar(), &filters, &mut listeners, true);
    let chains = &listeners[0].filter_chains;
    let names = |filters: &[Filter]| filters.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&chains[0].filters), ["added-network", "envoy.filters.network.http_connection_manager"]);
    let Some(filter::ConfigType::TypedConfig(typed)) = &chains[0].filters[1].config_type else {
        panic!("the connection manager lost its config")
    };
    let manager = HttpConnectionManager::decode(typed.value.as_slice()).expect("a connection manager");
    let http_names: Vec<&str> = manager.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(http_names, ["first", "added-http", "after-router", "envoy.filters.http.router"]);
    assert_eq!(names(&chains[1].filters), ["mixer", "added-network", "envoy.tcp_proxy"]);
    assert_eq!(names(&chains[2].filters), ["not-terminal", "added-network"], "no terminal filter, the end");
}
