//! The mesh config of a cluster installation (the `mesh` key of the `istio` ConfigMap), as
//! 1.4's chart rendered it: the control plane's Service names in the Istio namespace, Mixer's
//! check and report servers, Galley as the config source, the proxies' defaults. The local
//! platform writes its own, with its addresses in place of Service names.

use serde_json::{json, Value};

use crate::install::Install;

/// The mesh config for `install`.
pub(crate) fn mesh_config(install: &Install) -> Value {
    let namespace = install.namespace();
    let global = |path: &str| install.value(&format!("global.{path}"));
    let mut mesh = json!({
        "disablePolicyChecks": !install.enabled("policy") || global("disablePolicyChecks").as_bool().unwrap_or(true),
        "disableMixerHttpReports": telemetry_v2(install),
        "reportBatchMaxEntries": 100,
        "reportBatchMaxTime": "1s",
        "enableTracing": global("enableTracing").as_bool().unwrap_or(true),
        "accessLogFile": global("proxy.accessLogFile").as_str().unwrap_or_default(),
        "accessLogFormat": global("proxy.accessLogFormat").as_str().unwrap_or_default(),
        "accessLogEncoding": global("proxy.accessLogEncoding").as_str().unwrap_or("TEXT"),
        "enableEnvoyAccessLogService": false,
        "policyCheckFailOpen": global("policyCheckFailOpen").as_bool().unwrap_or(false),
        "connectTimeout": "10s",
        "protocolDetectionTimeout": "100ms",
        "dnsRefreshRate": "300s",
        "sdsUdsPath": if install.node_agent() {
            global("sds.udsPath").as_str().unwrap_or("unix:/var/run/sds/uds_path")
        } else {
            ""
        },
        "trustDomain": install.trust_domain(),
        "enableAutoMtls": global("mtls.auto").as_bool().unwrap_or(false),
        "outboundTrafficPolicy": {"mode": global("outboundTrafficPolicy.mode").as_str().unwrap_or("ALLOW_ANY")},
        "rootNamespace": namespace,
        "defaultConfig": {
            "connectTimeout": "10s",
            "configPath": "/etc/istio/proxy",
            "binaryPath": "/usr/local/bin/envoy",
            "serviceCluster": "istio-proxy",
            "drainDuration": "45s",
            "parentShutdownDuration": "1m0s",
            "proxyAdminPort": 15000,
            "concurrency": global("proxy.concurrency").as_i64().unwrap_or(2),
            "tracing": {"zipkin": {"address": format!("zipkin.{namespace}:9411")}},
            "controlPlaneAuthPolicy": "NONE",
            "discoveryAddress": format!("istio-pilot.{namespace}:15010"),
        },
    });
    if install.enabled("policy") {
        mesh["mixerCheckServer"] = json!(format!("istio-policy.{namespace}.svc.cluster.local:9091"));
    }
    if install.enabled("telemetry") {
        mesh["mixerReportServer"] = json!(format!("istio-telemetry.{namespace}.svc.cluster.local:9091"));
    }
    if install.enabled("gateways") || install.enabled("gateways.components.ingressGateway") {
        mesh["ingressService"] = json!("istio-ingressgateway");
    }
    let (ingress_mode, ingress_class) = crate::k8s_ingress::mesh_settings(install.value(""));
    // `OFF` is the default and left out: YAML 1.1 readers would take the word for a boolean.
    if ingress_mode != "OFF" {
        mesh["ingressControllerMode"] = json!(ingress_mode);
    }
    mesh["ingressClass"] = json!(ingress_class);
    if install.enabled("configManagement") {
        mesh["configSources"] = json!([{"address": format!("istio-galley.{namespace}.svc:9901")}]);
    }
    if let Some(setting) = locality_lb_setting(install.value("global")) {
        mesh["localityLbSetting"] = setting;
    }
    mesh
}

/// The mesh config's `localityLbSetting` from `values.global.localityLbSetting`: on unless
/// `enabled` is false (as 1.4's chart had it), with its `distribute` or `failover`; the
/// `enabled` switch itself is not a MeshConfig field and stays out.
pub fn locality_lb_setting(global: &Value) -> Option<Value> {
    let values = &global["localityLbSetting"];
    if values["enabled"].as_bool() == Some(false) {
        return None;
    }
    let mut setting = serde_json::Map::new();
    for field in ["distribute", "failover"] {
        if let Some(value) = values.get(field).filter(|value| !value.is_null()) {
            setting.insert(field.to_string(), value.clone());
        }
    }
    Some(Value::Object(setting))
}

/// `values.telemetry.v2.enabled`: the proxies count requests and Mixer's HTTP reports are off.
pub(crate) fn telemetry_v2(install: &Install) -> bool {
    install.bool_value("telemetry.enabled", true) && install.bool_value("telemetry.v2.enabled", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_config_names_the_control_plane_services_and_is_valid() {
        let demo = Install::resolve(&["profile=demo".into()], &[]).expect("demo");
        let mesh = mesh_config(&demo);
        assert_eq!(mesh["mixerCheckServer"], "istio-policy.istio-system.svc.cluster.local:9091");
        assert_eq!(mesh["accessLogFile"], "/dev/stdout");
        assert_eq!(mesh["disablePolicyChecks"], false);
        assert_eq!(mesh["configSources"][0]["address"], "istio-galley.istio-system.svc:9901");
        assert_eq!(istio_config::validation::mesh_config_violations(&mesh), Vec::new());
        let minimal = Install::resolve(&["profile=minimal".into()], &[]).expect("minimal");
        let mesh = mesh_config(&minimal);
        assert!(mesh.get("configSources").is_none() && mesh.get("mixerCheckServer").is_none());
        assert_eq!(mesh["disablePolicyChecks"], true);
        let sds = Install::resolve(&["profile=sds".into()], &[]).expect("sds");
        assert_eq!(mesh_config(&sds)["sdsUdsPath"], "unix:/var/run/sds/uds_path");
    }
}
