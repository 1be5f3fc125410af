//! `istioctl proxy-status POD`: the difference between what Pilot would send a proxy now
//! (Pilot's `/debug/config_dump?proxyID=`) and what the proxy holds (its admin `config_dump`),
//! for clusters, listeners and routes, as 1.4 printed it: `Clusters Match`, or a unified diff
//! (`--- Pilot Clusters` / `+++ Envoy Clusters`, 7 lines of context) of the dynamic resources
//! sorted by name, without versions and load times; routes with when RDS last loaded them.

use anyhow::Context as _;
use serde_json::Value;

use crate::proxy_status::ProxyStatusArgs;

/// What a config dump holds of one kind, in a form both sides share.
fn resources(dump: &Value, section: &str, list: &str, inner: &[&str]) -> Value {
    let mut items: Vec<Value> = crate::proxy_config::section(dump, section)
        .and_then(|section| section[list].as_array())
        .into_iter()
        .flatten()
        .filter_map(|entry| inner.iter().try_fold(entry, |value, key| value.get(*key)).cloned())
        .map(|mut item| {
            // Pilot's dump names each resource's type; the proxy's does not.
            if let Value::Object(fields) = &mut item {
                fields.remove("@type");
            }
            normalize_numbers(&mut item);
            item
        })
        .collect();
    items.sort_by_key(|item| item["name"].as_str().unwrap_or_default().to_string());
    Value::Array(items)
}

/// Whole floating-point numbers as integers: proto3 JSON writes `100` where a JSON library
/// may write `100.0`, and the two mean the same.
fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(fields) => fields.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Where Envoy shows `[redacted]` (fields its API marks sensitive), Pilot's side is redacted
/// too: the proxy does not say what it holds there.
fn redact_like(pilot: &mut Value, envoy: &Value) {
    match (pilot, envoy) {
        (pilot, Value::String(text)) if text == "[redacted]" => *pilot = envoy.clone(),
        (Value::Array(items), Value::Array(others)) => {
            items.iter_mut().zip(others).for_each(|(item, other)| redact_like(item, other))
        }
        (Value::Object(fields), Value::Object(others)) => {
            for (key, value) in fields.iter_mut() {
                if let Some(other) = others.get(key) {
                    redact_like(value, other);
                }
            }
        }
        _ => {}
    }
}

/// JSON as 1.4 printed it for the comparison: indented by three spaces.
fn pretty(value: &Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("JSON is UTF-8") + "\n"
}

fn unified(pilot: &str, envoy: &str, what: &str) -> String {
    similar::TextDiff::from_lines(pilot, envoy)
        .unified_diff()
        .context_radius(7)
        .header(&format!("Pilot {what}"), &format!("Envoy {what}"))
        .to_string()
}

/// The newest `last_updated` of the proxy's route configs, as Go's RFC 1123 in UTC.
fn routes_loaded(envoy: &Value) -> Option<String> {
    let latest = crate::proxy_config::section(envoy, "RoutesConfigDump")?["dynamic_route_configs"]
        .as_array()?
        .iter()
        .filter_map(|entry| entry["last_updated"].as_str())
        .filter_map(|text| time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok())
        .max()?;
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC",
    )
    .ok()?;
    latest.to_offset(time::UtcOffset::UTC).format(&format).ok()
}

/// The comparison, as printed.
pub(crate) fn compare(pilot: &Value, envoy: &Value) -> String {
    let mut out = String::new();
    let kinds = [
        ("Clusters", "ClustersConfigDump", "dynamic_active_clusters", &["cluster"][..]),
        ("Listeners", "ListenersConfigDump", "dynamic_listeners", &["active_state", "listener"][..]),
        ("Routes", "RoutesConfigDump", "dynamic_route_configs", &["route_config"][..]),
    ];
    for (what, section, list, inner) in kinds {
        let envoy_resources = resources(envoy, section, list, inner);
        let mut pilot_resources = resources(pilot, section, list, inner);
        redact_like(&mut pilot_resources, &envoy_resources);
        let diff = unified(&pretty(&pilot_resources), &pretty(&envoy_resources), what);
        let loaded = if what == "Routes" {
            routes_loaded(envoy).map(|at| format!(" (RDS last loaded at {at})")).unwrap_or_default()
        } else {
            String::new()
        };
        match (diff.is_empty(), what) {
            (true, _) => out.push_str(&format!("{what} Match{loaded}\n")),
            (false, "Routes") => out.push_str(&format!("Routes Don't Match{loaded}\n{diff}\n")),
            (false, _) => out.push_str(&format!("{diff}\n")),
        }
    }
    out
}

pub(crate) fn run(args: &ProxyStatusArgs, pod: &str) -> anyhow::Result<i32> {
    let layout = istio_local::Layout::from_env();
    let (name, namespace) = pod.split_once('.').unwrap_or((pod, "default"));
    let (pilot_text, envoy_text) = if args.pilot.is_none() && args.kube.wants_cluster(&layout) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = args.kube.client().await?;
            let system = &args.kube.istio_namespace;
            let pilot = crate::kube::first_pod(&client, system, "istio=pilot", "Pilot").await?;
            let path = format!("/debug/config_dump?proxyID={name}.{namespace}");
            let pilot_text = crate::kube::pod_http(&client, system, &pilot, 8080, "GET", &path).await?;
            let envoy_text = crate::kube::pod_http(&client, namespace, name, 15000, "GET", "/config_dump").await?;
            anyhow::Ok((pilot_text, envoy_text))
        })?
    } else {
        let pod = runtime_find_pod(&layout, name, namespace)?;
        let pilot = crate::proxy_status::pilot_debug_address(args.pilot.as_deref());
        let pilot_text =
            crate::proxy_status::http_get(&pilot, &format!("/debug/config_dump?proxyID={pod}.{namespace}"))?;
        let envoy_text = crate::proxy_config::admin_text(&format!("{pod}.{namespace}"), "config_dump")?;
        (pilot_text, envoy_text)
    };
    let pilot: Value = serde_json::from_str(&pilot_text).context("Pilot's config dump is not JSON")?;
    let envoy: Value = serde_json::from_str(&envoy_text).context("the proxy's config dump is not JSON")?;
    print!("{}", compare(&pilot, &envoy));
    Ok(0)
}

/// A pod's full name on this host (a Deployment's name picks its only pod).
fn runtime_find_pod(layout: &istio_local::Layout, name: &str, namespace: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(istio_local::kubectl::find_pod(layout, name, namespace))?.name().to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dump(clusters: Value, routes: Value) -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": clusters},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": []},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": routes},
        ]})
    }

    #[test]
    fn matching_dumps_say_so_and_ignore_versions_and_order() {
        let pilot = dump(
            json!([{"version_info": "1", "cluster": {"name": "b"}}, {"version_info": "1", "cluster": {"name": "a"}}]),
            json!([{"route_config": {"name": "80"}}]),
        );
        let envoy = dump(
            json!([{"version_info": "7", "cluster": {"name": "a"}, "last_updated": "x"}, {"cluster": {"name": "b"}}]),
            json!([{"route_config": {"name": "80"}, "last_updated": "2026-12-07T04:19:38.004Z"}]),
        );
        assert_eq!(
            compare(&pilot, &envoy),
            "Clusters Match\nListeners Match\nRoutes Match (RDS last loaded at Mon, 07 Dec 2026 04:19:38 UTC)\n"
        );
    }

    #[test]
    fn differences_are_unified_diffs() {
        let pilot = dump(json!([{"cluster": {"name": "a", "connect_timeout": "1s"}}]), json!([]));
        let envoy = dump(
            json!([{"cluster": {"name": "a", "connect_timeout": "10s"}}]),
            json!([{"route_config": {"name": "80"}}]),
        );
        let text = compare(&pilot, &envoy);
        assert!(text.starts_with("--- Pilot Clusters\n+++ Envoy Clusters\n@@"), "{text}");
        assert!(text.contains("-      \"connect_timeout\": \"1s\",\n+      \"connect_timeout\": \"10s\",\n"), "{text}");
        assert!(text.contains("Listeners Match\nRoutes Don't Match\n--- Pilot Routes\n+++ Envoy Routes\n"), "{text}");
    }
}
