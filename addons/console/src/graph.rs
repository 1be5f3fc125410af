//! The service graph (Kiali's role): a node per workload, an edge per caller and callee with the
//! request rate, the share of 5xx answers and the p99 latency over a window, and TCP edges with
//! their byte rate, all from the telemetry in Prometheus. Edges come from what the callee's
//! proxy reported; where no callee proxy reported (a service outside the mesh), from the caller's.
//! Drawn as SVG in columns by distance from the callers, with a table of the same edges.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::page::{escape, number};
use crate::promql::duration_quantile;
use crate::sources::Sample;

/// A workload in the graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    pub namespace: String,
    pub workload: String,
}

impl Node {
    fn name(&self) -> String {
        if self.namespace.is_empty() || self.namespace == "unknown" {
            self.workload.clone()
        } else {
            format!("{} ({})", self.workload, self.namespace)
        }
    }
}

/// Traffic from one workload to another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edge {
    /// Requests per second (HTTP) or bytes per second both ways (TCP).
    pub rate: f64,
    /// Requests answered 5xx per second.
    pub errors: f64,
    pub p99_ms: Option<f64>,
    pub tcp: bool,
}

impl Edge {
    pub fn error_share(&self) -> f64 {
        if self.rate > 0.0 {
            self.errors / self.rate
        } else {
            0.0
        }
    }
}

/// The graph's queries over a Prometheus range such as `5m`.
pub struct Queries {
    pub http_destination: String,
    pub http_source: String,
    pub p99: String,
    pub tcp: String,
}

const PAIR: &str = "source_workload, source_workload_namespace, destination_workload, destination_workload_namespace";

pub fn queries(window: &str) -> Queries {
    Queries {
        http_destination: format!(
            "sum(rate(istio_requests_total{{reporter=\"destination\"}}[{window}])) by ({PAIR}, destination_service_name, response_code)"
        ),
        http_source: format!(
            "sum(rate(istio_requests_total{{reporter=\"source\"}}[{window}])) by ({PAIR}, destination_service_name, response_code)"
        ),
        p99: duration_quantile("0.99", "reporter=\"destination\"", window, PAIR),
        tcp: format!(
            "sum(rate(istio_tcp_sent_bytes_total{{reporter=\"destination\"}}[{window}]) + rate(istio_tcp_received_bytes_total{{reporter=\"destination\"}}[{window}])) by ({PAIR})"
        ),
    }
}

/// The graph: edges keyed by (caller, callee).
#[derive(Debug, Default)]
pub struct Graph {
    pub edges: BTreeMap<(Node, Node, bool), Edge>,
}

fn endpoints(sample: &Sample, outside_name: bool) -> (Node, Node) {
    let node = |workload: &str, namespace: &str| Node {
        workload: if workload.is_empty() { "unknown".into() } else { workload.to_string() },
        namespace: namespace.to_string(),
    };
    let from = node(sample.label("source_workload"), sample.label("source_workload_namespace"));
    let mut to = node(sample.label("destination_workload"), sample.label("destination_workload_namespace"));
    if outside_name && to.workload == "unknown" && !sample.label("destination_service_name").is_empty() {
        to = Node { workload: sample.label("destination_service_name").to_string(), namespace: String::new() };
    }
    (from, to)
}

fn add_requests(edges: &mut BTreeMap<(Node, Node, bool), Edge>, samples: &[Sample], outside_name: bool) {
    for sample in samples {
        let (from, to) = endpoints(sample, outside_name);
        let edge = edges.entry((from, to, false)).or_default();
        edge.rate += sample.value;
        if sample.label("response_code").starts_with('5') {
            edge.errors += sample.value;
        }
    }
}

impl Graph {
    pub fn build(http_destination: &[Sample], http_source: &[Sample], p99: &[Sample], tcp: &[Sample]) -> Graph {
        let mut edges = BTreeMap::new();
        add_requests(&mut edges, http_destination, false);
        // Calls no callee proxy reported: to services outside the mesh, or callees without one.
        let served: std::collections::BTreeSet<(Node, &str)> = http_destination
            .iter()
            .map(|sample| (endpoints(sample, false).0, sample.label("destination_service_name")))
            .collect();
        let unserved: Vec<Sample> = http_source
            .iter()
            .filter(|sample| !served.contains(&(endpoints(sample, false).0, sample.label("destination_service_name"))))
            .cloned()
            .collect();
        let mut outside = BTreeMap::new();
        add_requests(&mut outside, &unserved, true);
        for ((from, to, tcp), edge) in outside {
            let reported = edges.keys().any(|(known_from, known_to, _)| known_from == &from && known_to == &to);
            if !reported && to.workload != "unknown" {
                edges.insert((from, to, tcp), edge);
            }
        }
        for sample in p99 {
            let (from, to) = endpoints(sample, false);
            if let Some(edge) = edges.get_mut(&(from, to, false)) {
                edge.p99_ms = Some(sample.value * 1000.0);
            }
        }
        for sample in tcp {
            let (from, to) = endpoints(sample, false);
            edges.insert((from, to, true), Edge { rate: sample.value, tcp: true, ..Edge::default() });
        }
        Graph { edges }
    }

    /// Nodes in drawing order with their column: callers left of their callees.
    fn columns(&self) -> Vec<(Node, usize)> {
        let mut depth: BTreeMap<Node, usize> = BTreeMap::new();
        for (from, to, _) in self.edges.keys() {
            depth.entry(from.clone()).or_insert(0);
            depth.entry(to.clone()).or_insert(0);
        }
        // Longest path from a caller, bounded so cycles end.
        for _ in 0..depth.len() {
            let mut changed = false;
            for (from, to, _) in self.edges.keys() {
                if from == to {
                    continue;
                }
                let wanted = depth[from] + 1;
                if wanted > depth[to] && wanted < depth.len() {
                    depth.insert(to.clone(), wanted);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut nodes: Vec<(Node, usize)> = depth.into_iter().collect();
        nodes.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        nodes
    }

    /// The graph as SVG followed by a table of its edges.
    pub fn render(&self) -> String {
        let nodes = self.columns();
        let (box_width, box_height, column_gap, row_gap) = (180.0, 40.0, 420.0, 80.0);
        let mut rows_used: HashMap<usize, usize> = HashMap::new();
        let mut place: HashMap<&Node, (f64, f64)> = HashMap::new();
        for (node, column) in &nodes {
            let row = rows_used.entry(*column).or_insert(0);
            place.insert(node, (20.0 + *column as f64 * column_gap, 20.0 + *row as f64 * row_gap));
            *row += 1;
        }
        let width = place.values().map(|(x, _)| x + box_width + 20.0).fold(400.0, f64::max);
        let height = place.values().map(|(_, y)| y + box_height + 40.0).fold(120.0, f64::max);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"graph\" width=\"{width}\" height=\"{height}\">\
             <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
        );
        for ((from, to, _), edge) in &self.edges {
            let (Some(&(x1, y1)), Some(&(x2, y2))) = (place.get(from), place.get(to)) else { continue };
            let (start, end) = ((x1 + box_width, y1 + box_height / 2.0), (x2, y2 + box_height / 2.0));
            let colour = if edge.tcp {
                "#4a90d9"
            } else if edge.error_share() > 0.2 {
                "#c0392b"
            } else if edge.error_share() > 0.01 {
                "#f0a020"
            } else {
                "#2a7d2a"
            };
            let dash = if edge.tcp { " stroke-dasharray=\"6 4\"" } else { "" };
            let bend = if end.0 <= start.0 { 60.0 } else { 0.0 };
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{:.0},{:.0} C{:.0},{:.0} {:.0},{:.0} {:.0},{:.0}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} marker-end=\"url(#arrow)\"/>\
                 <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\" paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"4\">{}</text>",
                start.0,
                start.1,
                start.0 + 80.0,
                start.1 + bend,
                end.0 - 80.0,
                end.1 + bend,
                end.0,
                end.1,
                (start.0 + end.0) / 2.0,
                (start.1 + end.1) / 2.0 - 6.0 + bend,
                escape(&edge_label(edge)),
            );
        }
        for (node, _) in &nodes {
            let (x, y) = place[node];
            let _ = write!(
                svg,
                "<g class=\"node\"><rect x=\"{x}\" y=\"{y}\" width=\"{box_width}\" height=\"{box_height}\" rx=\"8\" fill=\"#eef3fa\" stroke=\"#1f3a5f\"/>\
                 <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"13\" text-anchor=\"middle\">{}</text>\
                 <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\">{}</text></g>",
                x + box_width / 2.0,
                y + 17.0,
                escape(&node.workload),
                x + box_width / 2.0,
                y + 32.0,
                escape(&node.namespace),
            );
        }
        svg.push_str("</svg>");
        let mut table = String::from(
            "<table id=\"edges\"><tr><th>From</th><th>To</th><th>Protocol</th><th>Rate</th><th>Errors (5xx)</th><th>p99</th></tr>",
        );
        for ((from, to, _), edge) in &self.edges {
            let (rate, errors, p99) = if edge.tcp {
                (format!("{} B/s", number(edge.rate, 1)), "-".to_string(), "-".to_string())
            } else {
                (
                    format!("{} rps", number(edge.rate, 3)),
                    format!("{}%", number(edge.error_share() * 100.0, 1)),
                    edge.p99_ms.map_or("-".to_string(), |ms| format!("{} ms", number(ms, 1))),
                )
            };
            let _ = write!(
                table,
                "<tr class=\"edge\"><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td><td>{errors}</td><td>{p99}</td></tr>",
                escape(&from.name()),
                escape(&to.name()),
                if edge.tcp { "TCP" } else { "HTTP" },
            );
        }
        table.push_str("</table>");
        svg + &table
    }
}

fn edge_label(edge: &Edge) -> String {
    if edge.tcp {
        return format!("{} B/s", number(edge.rate, 1));
    }
    let mut label = format!("{} rps · {}% 5xx", number(edge.rate, 2), number(edge.error_share() * 100.0, 1));
    if let Some(ms) = edge.p99_ms {
        let _ = write!(label, " · p99 {} ms", number(ms, 0));
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample { labels: pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(), value }
    }

    fn call(from: &str, to: &str, code: &str, value: f64) -> Sample {
        sample(
            &[
                ("source_workload", from),
                ("source_workload_namespace", "default"),
                ("destination_workload", to),
                ("destination_workload_namespace", "default"),
                ("response_code", code),
            ],
            value,
        )
    }

    #[test]
    fn edges_rates_errors_and_latency() {
        let http = [
            call("istio-ingressgateway", "productpage-v1", "200", 2.0),
            call("productpage-v1", "reviews-v3", "200", 1.5),
            call("productpage-v1", "reviews-v3", "503", 0.5),
            call("reviews-v3", "ratings-v1", "200", 2.0),
        ];
        let outside = [sample(
            &[
                ("source_workload", "productpage-v1"),
                ("source_workload_namespace", "default"),
                ("destination_workload", "unknown"),
                ("destination_service_name", "httpbin.org"),
                ("response_code", "200"),
            ],
            0.25,
        )];
        let mut p99 = call("productpage-v1", "reviews-v3", "", 0.0421);
        p99.labels.remove("response_code");
        let graph = Graph::build(&http, &outside, &[p99], &[]);
        let reviews = graph
            .edges
            .iter()
            .find(|((_, to, _), _)| to.workload == "reviews-v3")
            .map(|(_, edge)| edge.clone())
            .expect("edge");
        assert_eq!((reviews.rate, reviews.error_share()), (2.0, 0.25));
        assert_eq!(reviews.p99_ms.map(|ms| ms.round()), Some(42.0));
        assert!(graph.edges.keys().any(|(_, to, _)| to.workload == "httpbin.org"), "calls leaving the mesh are drawn");
        // A caller's report of a service whose workloads reported the call adds nothing.
        let mut served = call("istio-ingressgateway", "productpage-v1", "200", 2.0);
        served.labels.insert("destination_service_name".into(), "productpage".into());
        let mut unresolved = served.clone();
        unresolved.labels.insert("destination_workload".into(), "unknown".into());
        let gateway_only = Graph::build(&[served], &[unresolved], &[], &[]);
        assert_eq!(gateway_only.edges.len(), 1, "{:?}", gateway_only.edges);
        // Columns follow the calls: gateway, productpage, reviews, ratings.
        let columns: Vec<(String, usize)> =
            graph.columns().into_iter().map(|(node, column)| (node.workload, column)).collect();
        assert!(columns.contains(&("istio-ingressgateway".into(), 0)) && columns.contains(&("ratings-v1".into(), 3)));
        let html = graph.render();
        assert!(html.contains("<td>productpage-v1 (default)</td><td>reviews-v3 (default)</td><td>HTTP</td><td>2 rps</td><td>25%</td><td>42.1 ms</td>"), "{html}");
        assert!(html.contains("stroke=\"#c0392b\""), "a quarter failing is drawn red");
    }

    #[test]
    fn tcp_edges_and_cycles() {
        let mut tcp = call("istio-ingressgateway", "tcp-echo-v1", "", 512.0);
        tcp.labels.remove("response_code");
        let http = [call("a", "b", "200", 1.0), call("b", "a", "200", 1.0)];
        let graph = Graph::build(&http, &[], &[], &[tcp]);
        assert_eq!(graph.columns().len(), 4);
        assert!(graph.render().contains("<td>TCP</td><td>512 B/s</td>"));
    }
}
