//! The VirtualService analyzers against 1.4.6's table: mesh-gateway host conflicts, destination
//! hosts and ports, subsets, and gateways.

use super::*;

pub(super) fn virtual_service(name: &str, namespace: &str, extra: &str) -> String {
    format!("apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{extra}\n---\n")
}

#[test]
fn conflicting_mesh_gateway_hosts() {
    let mut yaml = String::new();
    // Two VirtualServices in one namespace for the same host, one of them through `mesh`.
    yaml += &virtual_service("ratings", "team1", "  hosts: [ratings]\n  gateways: [mesh]");
    yaml += &virtual_service("ratings-too", "team1", "  hosts: [ratings.team1.svc.cluster.local]");
    // The same host exported only to their own namespaces: no conflict.
    yaml += &virtual_service("ratings", "team2", "  hosts: [ratings.shared.svc.cluster.local]\n  exportTo: [\".\"]");
    yaml += &virtual_service("ratings", "team3", "  hosts: [ratings.shared.svc.cluster.local]\n  exportTo: [\".\"]");
    // Exported everywhere from two namespaces: a conflict.
    yaml += &virtual_service("ratings", "team4", "  hosts: [ratings.common.svc.cluster.local]");
    yaml += &virtual_service("ratings", "team5", "  hosts: [ratings.common.svc.cluster.local]\n  exportTo: [\"*\"]");
    // Bound to a gateway only: not a mesh conflict.
    yaml += &virtual_service("edge", "team1", "  hosts: [ratings]\n  gateways: [edge-gateway]");
    let found = run("virtualservice.ConflictingMeshGatewayHostsAnalyzer", &yaml);
    assert_eq!(
        found,
        expect(&[
            ("IST0109", "VirtualService ratings.team1"),
            ("IST0109", "VirtualService ratings-too.team1"),
            ("IST0109", "VirtualService ratings.team4"),
            ("IST0109", "VirtualService ratings.team5"),
        ])
    );
}

#[test]
fn destination_hosts_and_ports() {
    let mut yaml = String::from(
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{port: 42}]}
---
apiVersion: v1
kind: Service
metadata: {name: two-ports, namespace: default}
spec: {ports: [{port: 80}, {port: 443}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec: {hosts: [external.example.org]}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: wildcard, namespace: default}
spec: {hosts: ["*.eu.example.com"]}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: private-everything, namespace: hidden}
spec: {hosts: ["*"], exportTo: ["."]}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: private, namespace: other}
spec: {hosts: [other.example.com], exportTo: ["."]}
---
"#,
    );
    let route =
        |host: &str, extra: &str| format!("  http:\n  - route:\n    - destination: {{host: \"{host}\"{extra}}}");
    yaml += &virtual_service("short", "default", &route("reviews", ", subset: v1"));
    yaml += &virtual_service("bogus", "default", &route("reviews-bogus", ""));
    yaml += &virtual_service("fqdn", "default", &route("reviews.default.svc.cluster.local", ""));
    yaml += &virtual_service("external", "default", &route("external.example.org", ""));
    yaml += &virtual_service("wildcard-match", "default", &route("reviews.eu.example.com", ""));
    yaml += &virtual_service("wildcard-itself", "default", &route("*.eu.example.com", ""));
    yaml += &virtual_service("private-elsewhere", "default", &route("other.example.com", ""));
    yaml += &virtual_service(
        "mirror-ok",
        "default",
        "  http:\n  - route: [{destination: {host: reviews}}]\n    mirror: {host: reviews}",
    );
    yaml += &virtual_service(
        "mirror-bogus",
        "default",
        "  http:\n  - route: [{destination: {host: reviews}}]\n    mirror: {host: mirror-bogus}",
    );
    yaml += &virtual_service("bad-port", "default", &route("reviews", ", port: {number: 999}"));
    yaml += &virtual_service("two-ports-missing", "default", &route("two-ports", ""));
    yaml += &virtual_service("two-ports-given", "default", &route("two-ports", ", port: {number: 80}"));
    let found = run("virtualservice.DestinationHostAnalyzer", &yaml);
    assert_eq!(
        found,
        expect(&[
            ("IST0101", "VirtualService bogus.default"),
            ("IST0101", "VirtualService private-elsewhere.default"),
            ("IST0101", "VirtualService mirror-bogus.default"),
            ("IST0101", "VirtualService bad-port.default"),
            ("IST0112", "VirtualService two-ports-missing.default"),
        ])
    );
    let analyzer = all().into_iter().find(|a| a.name == "virtualservice.DestinationHostAnalyzer").unwrap();
    let texts: Vec<String> = analyzer.analyze(&snapshot(&yaml)).iter().map(|m| m.render(false)).collect();
    assert!(texts.contains(
        &"Error [IST0101] (VirtualService bad-port.default) Referenced host:port not found: \"reviews:999\"".into()
    ));
    assert!(texts.contains(&"Error [IST0112] (VirtualService two-ports-missing.default) This VirtualService routes to a service \"two-ports\" that exposes multiple ports [80 443]. Specifying a port in the destination is required to disambiguate.".into()));
}

#[test]
fn destination_subsets() {
    let mut yaml = String::from(
        r#"
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: ratings, namespace: other}
spec: {host: ratings.other.svc.cluster.local, subsets: [{name: v2, labels: {version: v2}}]}
---
"#,
    );
    let route = |host: &str, subset: &str| {
        format!("  http:\n  - route:\n    - destination: {{host: {host}, subset: {subset}}}")
    };
    yaml += &virtual_service("ok", "default", &route("reviews", "v1"));
    yaml += &virtual_service("ok-fqdn", "default", &route("reviews.default.svc.cluster.local", "v1"));
    yaml += &virtual_service("ok-cross", "default", &route("ratings.other.svc.cluster.local", "v2"));
    yaml += &virtual_service("bogus-subset", "default", &route("reviews", "v9"));
    yaml += &virtual_service(
        "mirror-bogus-subset",
        "default",
        "  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n    mirror: {host: reviews, subset: v3}",
    );
    yaml += &virtual_service("no-subset", "default", "  http:\n  - route: [{destination: {host: anything}}]");
    assert_eq!(
        run("virtualservice.DestionationRuleAnalyzer", &yaml),
        expect(&[
            ("IST0101", "VirtualService bogus-subset.default"),
            ("IST0101", "VirtualService mirror-bogus-subset.default"),
        ])
    );
}

#[test]
fn virtual_service_gateways() {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: web-gateway}\nspec: {selector: {istio: ingressgateway}}\n---\n",
    );
    yaml += "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: web}\nspec: {hosts: [\"*\"], gateways: [web-gateway, mesh]}\n---\n";
    yaml += "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: web-bogus}\nspec: {hosts: [\"*\"], gateways: [bogus-gateway]}\n";
    let found = run("virtualservice.GatewayAnalyzer", &yaml);
    assert_eq!(found, expect(&[("IST0101", "VirtualService web-bogus")]));
    let analyzer = all().into_iter().find(|a| a.name == "virtualservice.GatewayAnalyzer").unwrap();
    assert_eq!(
        analyzer.analyze(&snapshot(&yaml))[0].render(false),
        "Error [IST0101] (VirtualService web-bogus) Referenced gateway not found: \"bogus-gateway\""
    );
}
