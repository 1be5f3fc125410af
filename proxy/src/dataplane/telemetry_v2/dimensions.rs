//! The twenty labels of 1.4's in-proxy metrics, in 1.4.6's order, and where each comes from:
//! on an outbound listener (a client sidecar or a gateway) this proxy is the source and the
//! upstream peer the destination (`reporter="source"`); on an inbound one the downstream peer
//! is the source (`reporter="destination"`). The destination service is the host of the
//! `DIRECTION|PORT|SUBSET|HOST` cluster the request went to; its short name only where the
//! host's namespace is the destination's. Whatever is not known is `unknown`.

use super::node_info::NodeInfo;

/// The label names, in order.
pub(crate) const LABELS: [&str; 20] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
    "permissive_response_code",
    "permissive_response_policyid",
];

/// A request's label values, in `LABELS` order.
pub(crate) type Dimensions = [String; 20];

/// What is known about one finished request.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts<'a> {
    /// Served on an inbound listener.
    pub inbound: bool,
    pub local: &'a NodeInfo,
    /// The other side: the upstream peer outbound, the downstream peer inbound.
    pub peer: Option<&'a NodeInfo>,
    pub source_principal: Option<&'a str>,
    pub destination_principal: Option<&'a str>,
    /// `:authority` as the client sent it.
    pub authority: &'a str,
    pub grpc: bool,
    /// The upstream cluster, when an upstream host was chosen.
    pub cluster: Option<&'a str>,
    pub response_code: u16,
    pub response_flags: &'a str,
    /// Inbound: the client presented a certificate over TLS.
    pub mutual_tls: bool,
    pub host_header_fallback: bool,
}

/// A workload nothing is known about.
static NOBODY: NodeInfo = NodeInfo {
    name: String::new(),
    namespace: String::new(),
    labels: std::collections::BTreeMap::new(),
    owner: String::new(),
    workload_name: String::new(),
    platform_metadata: std::collections::BTreeMap::new(),
    istio_version: String::new(),
    mesh_id: String::new(),
};

impl Default for RequestFacts<'_> {
    fn default() -> Self {
        RequestFacts {
            inbound: false,
            local: &NOBODY,
            peer: None,
            source_principal: None,
            destination_principal: None,
            authority: "",
            grpc: false,
            cluster: None,
            response_code: 0,
            response_flags: "-",
            mutual_tls: false,
            host_header_fallback: true,
        }
    }
}

const PASSTHROUGH_CLUSTERS: [&str; 4] =
    ["BlackHoleCluster", "PassthroughCluster", "InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv6"];

/// The destination service's host and name.
fn destination_service(facts: &RequestFacts<'_>, destination_namespace: &str) -> (String, String) {
    let mut host = if facts.host_header_fallback { facts.authority.to_string() } else { "unknown".to_string() };
    let cluster = facts.cluster.unwrap_or_default();
    if PASSTHROUGH_CLUSTERS.contains(&cluster) {
        return (host, cluster.to_string());
    }
    let parts: Vec<&str> = cluster.split('|').collect();
    if parts.len() == 4 {
        host = parts[3].to_string();
    }
    let name = service_name(&host, destination_namespace);
    (host, name)
}

/// `reviews` for `reviews:9080`, or for `reviews.default.svc.cluster.local` when the
/// destination is in `default`; the whole host otherwise.
fn service_name(host: &str, destination_namespace: &str) -> String {
    let Some(index) = host.find(['.', ':']) else { return host.to_string() };
    if host[index..].starts_with(':') {
        return host[..index].to_string();
    }
    let rest = &host[index + 1..];
    let namespace = &rest[..rest.find(['.', ':']).unwrap_or(rest.len())];
    if namespace == destination_namespace {
        host[..index].to_string()
    } else {
        host.to_string()
    }
}

/// The label values of one request.
pub(crate) fn dimensions(facts: &RequestFacts<'_>) -> Dimensions {
    let peer = facts.peer.unwrap_or(&NOBODY);
    let (source, destination) = if facts.inbound { (peer, facts.local) } else { (facts.local, peer) };
    let (service_host, service_name) = destination_service(facts, &destination.namespace);
    let policy = match (facts.inbound, facts.mutual_tls) {
        (false, _) => "",
        (true, true) => "MUTUAL_TLS",
        (true, false) => "NONE",
    };
    let values = [
        if facts.inbound { "destination" } else { "source" }.to_string(),
        source.workload_name.clone(),
        source.namespace.clone(),
        facts.source_principal.unwrap_or_default().to_string(),
        source.label("app").to_string(),
        source.label("version").to_string(),
        destination.workload_name.clone(),
        destination.namespace.clone(),
        facts.destination_principal.unwrap_or_default().to_string(),
        destination.label("app").to_string(),
        destination.label("version").to_string(),
        service_host,
        service_name,
        destination.namespace.clone(),
        if facts.grpc { "grpc" } else { "http" }.to_string(),
        facts.response_code.to_string(),
        facts.response_flags.to_string(),
        policy.to_string(),
        "none".to_string(),
        "none".to_string(),
    ];
    values.map(|value| if value.is_empty() { "unknown".to_string() } else { value })
}

/// gRPC, as 1.4.6 told it: the request's `content-type` is exactly one of gRPC's.
pub(crate) fn is_grpc(content_type: Option<&str>) -> bool {
    matches!(content_type, Some("application/grpc" | "application/grpc+proto" | "application/grpc+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(workload: &str, namespace: &str, app: &str, version: &str) -> NodeInfo {
        NodeInfo {
            workload_name: workload.into(),
            namespace: namespace.into(),
            labels: [("app".to_string(), app.to_string()), ("version".to_string(), version.to_string())].into(),
            ..Default::default()
        }
    }

    fn labels(dimensions: &Dimensions) -> Vec<(&str, &str)> {
        LABELS.iter().copied().zip(dimensions.iter().map(String::as_str)).collect()
    }

    #[test]
    fn a_client_sidecar_reports_as_the_source() {
        let productpage = node("productpage-v1", "default", "productpage", "v1");
        let reviews = node("reviews-v1", "default", "reviews", "v1");
        let facts = RequestFacts {
            local: &productpage,
            peer: Some(&reviews),
            authority: "reviews:9080",
            cluster: Some("outbound|9080|v1|reviews.default.svc.cluster.local"),
            response_code: 200,
            response_flags: "-",
            host_header_fallback: true,
            ..Default::default()
        };
        let got = dimensions(&facts);
        let expected = [
            ("reporter", "source"),
            ("source_workload", "productpage-v1"),
            ("source_workload_namespace", "default"),
            ("source_principal", "unknown"),
            ("source_app", "productpage"),
            ("source_version", "v1"),
            ("destination_workload", "reviews-v1"),
            ("destination_workload_namespace", "default"),
            ("destination_principal", "unknown"),
            ("destination_app", "reviews"),
            ("destination_version", "v1"),
            ("destination_service", "reviews.default.svc.cluster.local"),
            ("destination_service_name", "reviews"),
            ("destination_service_namespace", "default"),
            ("request_protocol", "http"),
            ("response_code", "200"),
            ("response_flags", "-"),
            ("connection_security_policy", "unknown"),
            ("permissive_response_code", "none"),
            ("permissive_response_policyid", "none"),
        ];
        assert_eq!(labels(&got), expected);
    }

    #[test]
    fn a_server_sidecar_reports_as_the_destination_with_its_tls() {
        let productpage = node("productpage-v1", "default", "productpage", "v1");
        let reviews = node("reviews-v1", "default", "reviews", "v1");
        let facts = RequestFacts {
            inbound: true,
            local: &reviews,
            peer: Some(&productpage),
            source_principal: Some("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"),
            authority: "reviews:9080",
            grpc: true,
            cluster: Some("inbound|9080|http|reviews.default.svc.cluster.local"),
            response_code: 503,
            response_flags: "UF,URX",
            mutual_tls: true,
            host_header_fallback: true,
            ..Default::default()
        };
        let got = dimensions(&facts);
        assert_eq!(got[0], "destination");
        assert_eq!((got[1].as_str(), got[6].as_str()), ("productpage-v1", "reviews-v1"));
        assert_eq!(got[3], "spiffe://cluster.local/ns/default/sa/bookinfo-productpage");
        assert_eq!(
            (got[14].as_str(), got[15].as_str(), got[16].as_str(), got[17].as_str()),
            ("grpc", "503", "UF,URX", "MUTUAL_TLS")
        );
        let plain = RequestFacts { mutual_tls: false, ..facts };
        assert_eq!(dimensions(&plain)[17], "NONE");
    }

    #[test]
    fn without_a_peer_or_a_route_what_is_not_known_is_unknown() {
        let productpage = node("productpage-v1", "default", "productpage", "v1");
        let facts = RequestFacts {
            local: &productpage,
            authority: "reviews.default.svc.cluster.local:9080",
            response_code: 404,
            response_flags: "NR",
            host_header_fallback: true,
            ..Default::default()
        };
        let got = dimensions(&facts);
        assert_eq!(got[6], "unknown");
        assert_eq!(got[11], "reviews.default.svc.cluster.local:9080", "the authority stands in for the service");
        assert_eq!(got[12], "reviews.default.svc.cluster.local:9080", "no destination namespace: the whole host");
        assert_eq!(got[13], "unknown");
        let no_fallback = RequestFacts { host_header_fallback: false, ..facts.clone() };
        assert_eq!(dimensions(&no_fallback)[11], "unknown");
        let passthrough = RequestFacts { cluster: Some("PassthroughCluster"), authority: "example.com", ..facts };
        let got = dimensions(&passthrough);
        assert_eq!((got[11].as_str(), got[12].as_str()), ("example.com", "PassthroughCluster"));
    }

    #[test]
    fn service_names_follow_the_destination_namespace() {
        assert_eq!(service_name("127.0.0.1:8080", "default"), "127.0.0.1:8080");
        assert_eq!(service_name("reviews:9080", "x"), "reviews");
        assert_eq!(service_name("reviews.default.svc.cluster.local", "default"), "reviews");
        assert_eq!(service_name("reviews.default.svc.cluster.local", "other"), "reviews.default.svc.cluster.local");
        assert_eq!(service_name("reviews", "default"), "reviews");
        assert!(is_grpc(Some("application/grpc")) && !is_grpc(Some("application/grpc-web")) && !is_grpc(None));
    }
}
