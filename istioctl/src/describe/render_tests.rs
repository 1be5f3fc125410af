//! `describe`'s sections on fixed objects and a fixed config dump.

use serde_json::json;

use super::*;

fn object(value: serde_json::Value) -> Object {
    serde_json::from_value(value).expect("object")
}

fn reviews_pod(version: &str) -> Object {
    object(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("reviews-{version}-1"), "namespace": "default", "labels": {"app": "reviews", "version": version}},
        "spec": {"containers": [
            {"name": "reviews", "ports": [{"containerPort": 9080, "protocol": "TCP"}]},
            {"name": "istio-proxy", "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}]}
        ]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "reviews", "ready": true}, {"name": "istio-proxy", "ready": true}]}
    }))
}

fn reviews_service() -> Object {
    object(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]}}))
}

fn reviews_rule() -> Object {
    object(json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}, {"name": "v3", "labels": {"version": "v3"}}]}}))
}

fn context() -> Context {
    Context { namespace: "default".to_string(), ignore_unmeshed: false }
}

fn reviews_virtual_service(http: serde_json::Value) -> Object {
    object(json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"}, "spec": {"hosts": ["reviews"], "http": http}}))
}

#[test]
fn pod_and_service_sections() {
    let mut out = String::new();
    pod(&mut out, &context(), &reviews_pod("v1"));
    service(&mut out, &context(), &reviews_service(), &reviews_pod("v1"));
    assert_eq!(
        out,
        "Pod: reviews-v1-1\n   Pod Ports: 9080 (reviews), 15090 (istio-proxy)\nService: reviews\n   Port: http 9080/HTTP targets pod port 9080\n"
    );
    let mut unmeshed = reviews_pod("v1");
    unmeshed.body.insert("spec".into(), json!({"containers": [{"name": "reviews"}]}));
    unmeshed.metadata.namespace = Some("other".into());
    let mut out = String::new();
    pod(&mut out, &context(), &unmeshed);
    assert!(out.contains("Pod: reviews-v1-1.other\n   Pod does not expose ports\n"), "{out}");
    assert!(out.contains("WARNING: reviews-v1-1.other is not part of mesh; no Istio sidecar"), "{out}");
}

#[test]
fn destination_rule_subsets_for_the_pod() {
    let mut out = String::new();
    destination_rule(&mut out, &context(), &reviews_rule(), &[reviews_pod("v1")]);
    assert_eq!(
        out,
        "DestinationRule: reviews for \"reviews\"\n   Matching subsets: v1\n      (Non-matching subsets v2,v3)\n   No Traffic Policy\n"
    );
    let mut out = String::new();
    destination_rule(&mut out, &context(), &reviews_rule(), &[reviews_pod("v9")]);
    assert!(out.contains("  WARNING POD DOES NOT MATCH ANY SUBSETS.  (Non matching subsets v1,v2,v3)"), "{out}");
}

#[test]
fn virtual_service_routes_that_reach_the_pod() {
    let (matching, nonmatching) = subsets(&reviews_rule(), &[reviews_pod("v1")]);
    let rule = reviews_rule();
    let render = |vs: &Object| {
        let mut out = String::new();
        virtual_service(&mut out, &context(), vs, &reviews_service(), &matching, &nonmatching, Some(&rule));
        out
    };
    // All traffic to v1: one route, nothing more to say.
    let all_v1 = reviews_virtual_service(json!([{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]));
    assert_eq!(render(&all_v1), "VirtualService: reviews\n   1 HTTP route(s)\n");
    // Weights, and a route for jason.
    let jason = reviews_virtual_service(json!([
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 80}, {"destination": {"host": "reviews", "subset": "v3"}, "weight": 20}]}
    ]));
    assert_eq!(
        render(&jason),
        "VirtualService: reviews\n   Weight 80%\n   1 additional destination(s) that will not reach this pod\n"
    );
    // Every route goes elsewhere: 1.4's warning, with the reasons.
    let elsewhere = reviews_virtual_service(json!([
        {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v9"}}]}
    ]));
    assert_eq!(
        render(&elsewhere),
        "VirtualService: reviews\n   WARNING: No destinations match pod subsets (checked 2 HTTP routes)\n      Route to non-matching subset v2 for (/api*)\n      Warning: Route to UNKNOWN subset v9; check DestinationRule reviews\n"
    );
}

#[test]
fn mutual_tls_from_pilot() {
    let row = |server: &str, client: &str, status: &str| AuthenticationDebug {
        host: "reviews.default.svc.cluster.local".into(),
        port: 9080,
        authentication_policy_name: "default/".into(),
        destination_rule_name: "reviews/default".into(),
        server_protocol: server.into(),
        client_protocol: client.into(),
        tls_conflict_status: status.into(),
    };
    let render = |rows: &[AuthenticationDebug]| {
        let mut out = String::new();
        authn(&mut out, &context(), &reviews_pod("v1"), Some(rows), &reviews_service(), 9080);
        out
    };
    assert_eq!(
        render(&[row("HTTP/mTLS", "HTTP", "OK")]),
        "Pod is PERMISSIVE (enforces HTTP/mTLS) and clients speak HTTP\n"
    );
    assert_eq!(render(&[row("mTLS", "mTLS", "OK")]), "Pod is STRICT (enforces mTLS) and clients speak mTLS\n");
    assert!(render(&[row("mTLS", "HTTP", "CONFLICT")])
        .starts_with("WARNING TLS Conflict on reviews-v1-1 port 9080 (pod enforces mTLS, clients speak HTTP)\n  Check DestinationRule reviews/default"));
    assert_eq!(render(&[]), "Authn: None\n");
}

#[test]
fn breadcrumbs_and_rbac_policies_from_the_config_dump() {
    let dump = json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
            {"cluster": {"name": "outbound|9080||reviews.default.svc.cluster.local",
                "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking/v1alpha3/namespaces/default/destination-rule/reviews"}}}}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
            {"active_state": {"listener": {"name": "virtualInbound", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "filter_chains": [{"filter_chain_match": {"destination_port": 9080}, "filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {"http_filters": [{"name": "envoy.filters.http.rbac", "typed_config": {"rules": {"policies": {"ns[default]-policy[viewer]-rule[0]": {}}}}}]}}]}]}}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
            {"route_config": {"name": "9080", "virtual_hosts": [
                {"domains": ["ratings.default.svc.cluster.local"], "routes": [{"route": {"cluster": "outbound|9080||ratings.default.svc.cluster.local"}}]},
                {"domains": ["reviews.default.svc.cluster.local", "reviews"], "routes": [{"route": {"cluster": "outbound|9080|v1|reviews.default.svc.cluster.local"},
                    "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking/v1alpha3/namespaces/default/virtual-service/reviews"}}}}]}]}}]}
    ]});
    let service = reviews_service();
    assert_eq!(destination_rule_breadcrumb(&dump, &service, 9080), Some(("reviews".into(), "default".into())));
    assert_eq!(virtual_service_breadcrumb(&dump, &service, 9080), Some(("reviews".into(), "default".into())));
    assert_eq!(virtual_service_breadcrumb(&dump, &service, 8080), None);
    assert_eq!(rbac_policies(&dump, 9080), ["ns[default]-policy[viewer]-rule[0]"]);
    assert!(rbac_policies(&dump, 8080).is_empty());
}
