//! A small model of Grafana 6 dashboards for the generated Istio dashboards: panels (single
//! stats, graphs, tables) with their PromQL targets, rows, query variables, and the layout
//! that places panels left to right with rows spanning the width.

use serde_json::{json, Value};

/// How a panel shows its queries.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// One number: `ops`, `percentunit`, `Bps`, `none`.
    Stat(&'static str),
    /// Lines over time, in a unit.
    Graph(&'static str),
    /// One row per series.
    Table,
}

pub(crate) struct Panel {
    title: String,
    kind: Kind,
    targets: Vec<(String, String)>,
}

pub(crate) fn panel(title: &str, kind: Kind, targets: Vec<(String, String)>) -> Panel {
    Panel { title: title.to_string(), kind, targets }
}

pub(crate) fn target(expr: &str, legend: &str) -> (String, String) {
    (expr.to_string(), legend.to_string())
}

/// A section of a dashboard: an optional row title and its panels.
pub(crate) struct Section {
    row: Option<&'static str>,
    panels: Vec<Panel>,
}

pub(crate) fn section(row: Option<&'static str>, panels: Vec<Panel>) -> Section {
    Section { row, panels }
}

/// A query variable (`label_values(destination_service)`), multi-valued with "All" unless it
/// names one subject.
pub(crate) fn variable(name: &str, label: &str, query: &str, multi: bool) -> Value {
    json!({
        "name": name, "label": label, "type": "query", "datasource": "Prometheus", "query": query,
        "refresh": 1, "includeAll": multi, "multi": multi, "allValue": if multi { Value::from(".*") } else { Value::Null },
        "regex": if query.starts_with("query_result") { "/.*[a-z]+=\"([^\"]+)\".*/" } else { "" },
        "sort": 1, "hide": 0,
    })
}

/// The dashboard model: panels laid out left to right, rows spanning the width.
pub(crate) fn dashboard(title: &str, uid: &str, variables: Vec<Value>, sections: Vec<Section>) -> Value {
    let mut panels = Vec::new();
    let (mut x, mut y, mut id) = (0, 0, 1);
    for section in sections {
        if let Some(row) = section.row {
            if x > 0 {
                y += 7;
                x = 0;
            }
            panels.push(json!({"id": id, "type": "row", "title": row, "collapsed": false,
                               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}));
            id += 1;
            y += 1;
        }
        for item in section.panels {
            let width = match item.kind {
                Kind::Stat(_) => 6,
                Kind::Graph(_) => 12,
                Kind::Table => 24,
            };
            if x + width > 24 {
                x = 0;
                y += 7;
            }
            let targets: Vec<Value> = item
                .targets
                .iter()
                .enumerate()
                .map(|(index, (expr, legend))| {
                    let ref_id = char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string();
                    let mut target = json!({"expr": expr, "legendFormat": legend, "refId": ref_id,
                                            "format": "time_series", "intervalFactor": 1});
                    if matches!(item.kind, Kind::Table) {
                        target["format"] = json!("table");
                        target["instant"] = json!(true);
                    }
                    target
                })
                .collect();
            let mut model = json!({"id": id, "title": item.title, "datasource": "Prometheus", "targets": targets,
                                   "gridPos": {"h": 7, "w": width, "x": x, "y": y}});
            match item.kind {
                Kind::Stat(unit) => {
                    model["type"] = json!("singlestat");
                    model["format"] = json!(unit);
                    model["valueName"] = json!("current");
                    model["sparkline"] = json!({"show": true});
                }
                Kind::Graph(unit) => {
                    model["type"] = json!("graph");
                    model["lines"] = json!(true);
                    model["linewidth"] = json!(1);
                    model["legend"] = json!({"show": true, "values": false});
                    model["yaxes"] =
                        json!([{"format": unit, "show": true, "min": 0}, {"format": "short", "show": false}]);
                    model["xaxis"] = json!({"mode": "time", "show": true});
                }
                Kind::Table => {
                    model["type"] = json!("table");
                    model["transform"] = json!("table");
                }
            }
            panels.push(model);
            id += 1;
            x += width;
        }
        if x > 0 {
            x = 0;
            y += 7;
        }
    }
    json!({
        "title": title, "uid": uid, "tags": ["istio"], "editable": false, "schemaVersion": 20, "version": 1,
        "timezone": "browser", "refresh": "10s", "time": {"from": "now-5m", "to": "now"},
        "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels,
    })
}
