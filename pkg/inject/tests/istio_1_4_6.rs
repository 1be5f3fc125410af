//! Istio 1.4.6's injection goldens (`pkg/kube/inject/testdata/inject`, kept in
//! `testdata/istio-1.4.6`): for every case of 1.4.6's `TestIntoResourceFile` and
//! `TestRewriteAppProbe`, the injector given that case's values and mesh config (as files,
//! loaded as `istioctl kube-inject --valuesFile --meshConfigFile --injectConfigFile` loads
//! them) must produce the golden objects. The input of each case is the golden with the injection taken out
//! (what the status annotation says was added, and the pod's original labels and annotations
//! as the proxy's `ISTIO_METAJSON_*` variables recorded them), so no input is copied.
//! Objects are compared, not text: empty and null fields are dropped, resource quantities are
//! compared by amount, and the status annotation's template version is ignored, as 1.4.6's
//! test ignored it.

use std::path::{Path, PathBuf};

use istio_inject::config::{default_values, merge};
use istio_inject::inject::{kube_inject_yaml, pod_template_pointer};
use istio_inject::{ConfigFiles, Injector, InjectorConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// One case of 1.4.6's table: the golden and the parameters it was made with.
struct Case {
    golden: &'static str,
    /// Helm values set by the case (over 1.4.6's test parameters).
    values: Value,
    /// Mesh `defaultConfig` fields set by the case.
    mesh: Value,
    /// Inject the golden itself (injecting an injected object changes nothing).
    reinject: bool,
}

fn case(golden: &'static str) -> Case {
    Case { golden, values: json!({}), mesh: json!({}), reinject: false }
}

fn with_values(golden: &'static str, values: Value) -> Case {
    Case { values, ..case(golden) }
}

fn proxy(fields: Value) -> Value {
    json!({"global": {"proxy": fields}})
}

/// `TestIntoResourceFile`'s table.
fn into_resource_cases() -> Vec<Case> {
    vec![
        case("hello.yaml.injected"),
        with_values("hello.yaml.cni.injected", json!({"istio_cni": {"enabled": true}})),
        Case { reinject: true, ..case("hello.yaml.injected") },
        case("hello-mtls-not-ready.yaml.injected"),
        case("hello-namespace.yaml.injected"),
        case("hello-proxy-override.yaml.injected"),
        // This case of 1.4.6's table left every traffic and status parameter at its zero value.
        Case {
            mesh: json!({"interceptionMode": "TPROXY"}),
            values: proxy(json!({
                "includeIPRanges": "",
                "includeInboundPorts": "",
                "statusPort": 0,
                "readinessInitialDelaySeconds": 0,
                "readinessPeriodSeconds": 0,
                "readinessFailureThreshold": 0,
            })),
            ..case("hello-tproxy.yaml.injected")
        },
        case("hello-config-map-name.yaml.injected"),
        case("frontend.yaml.injected"),
        case("hello-service.yaml.injected"),
        case("hello-multi.yaml.injected"),
        with_values("hello-always.yaml.injected", json!({"global": {"imagePullPolicy": "Always"}})),
        with_values("hello-never.yaml.injected", json!({"global": {"imagePullPolicy": "Never"}})),
        case("hello-ignore.yaml.injected"),
        case("multi-init.yaml.injected"),
        case("statefulset.yaml.injected"),
        with_values("enable-core-dump.yaml.injected", proxy(json!({"enableCoreDump": true}))),
        case("auth.yaml.injected"),
        case("auth.non-default-service-account.yaml.injected"),
        case("auth.cert-dir.yaml.injected"),
        case("daemonset.yaml.injected"),
        case("job.yaml.injected"),
        case("replicaset.yaml.injected"),
        case("replicationcontroller.yaml.injected"),
        case("cronjob.yaml.injected"),
        case("pod.yaml.injected"),
        case("hello-host-network.yaml.injected"),
        case("list.yaml.injected"),
        case("list-frontend.yaml.injected"),
        case("deploymentconfig.yaml.injected"),
        case("deploymentconfig-multi.yaml.injected"),
        Case {
            mesh: json!({"drainDuration": "42s", "parentShutdownDuration": "42s", "connectTimeout": "42s"}),
            ..case("format-duration.yaml.injected")
        },
        with_values(
            "traffic-params.yaml.injected",
            proxy(json!({
                "includeIPRanges": "127.0.0.1/24,10.96.0.1/24",
                "excludeIPRanges": "10.96.0.2/24,10.96.0.3/24",
                "includeInboundPorts": "1,2,3",
                "excludeInboundPorts": "4,5,6",
                "statusPort": 0,
            })),
        ),
        with_values(
            "traffic-params-empty-includes.yaml.injected",
            proxy(json!({"includeIPRanges": "", "excludeIPRanges": ""})),
        ),
        case("traffic-annotations.yaml.injected"),
        case("traffic-annotations-wildcards.yaml.injected"),
        case("traffic-annotations-empty-includes.yaml.injected"),
        case("multi-container.yaml.injected"),
        with_values(
            "status_params.yaml.injected",
            proxy(json!({
                "statusPort": 123,
                "readinessInitialDelaySeconds": 100,
                "readinessPeriodSeconds": 200,
                "readinessFailureThreshold": 300,
            })),
        ),
        case("status_annotations.yaml.injected"),
        case("kubevirtInterfaces.yaml.injected"),
        case("kubevirtInterfaces_list.yaml.injected"),
        with_values(
            "hello-template-in-values.yaml.injected",
            json!({"global": {"podDNSSearchNamespaces":
                ["global", "{{ valueOrDefault .DeploymentMeta.Namespace \"default\" }}.global"]}}),
        ),
    ]
}

/// 1.4.6's chart values as its test read them, with the test's parameters
/// (`newTestParams`/`intoHelmValues`): images from `docker.io/istio` tagged `unittest`, no
/// tracer, no trust domain, default log levels.
fn test_values() -> Value {
    let mut values = default_values();
    merge(
        &mut values,
        &json!({
            "global": {
                "hub": "docker.io/istio",
                "tag": "unittest",
                "imagePullPolicy": "IfNotPresent",
                "trustDomain": "",
                "meshID": "",
                "sds": {"enabled": false},
                "proxy_init": {"image": "docker.io/istio/proxy_init:unittest"},
                "proxy": {
                    "image": "docker.io/istio/proxyv2:unittest",
                    "enableCoreDump": false,
                    "privileged": false,
                    "statusPort": 15020,
                    "tracer": "",
                    "logLevel": "",
                    "componentLogLevel": "",
                    "readinessInitialDelaySeconds": 1,
                    "readinessPeriodSeconds": 2,
                    "readinessFailureThreshold": 30,
                    "includeIPRanges": "*",
                    "excludeIPRanges": "",
                    "includeInboundPorts": "*",
                    "excludeInboundPorts": "",
                },
            },
            "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": false},
            "istio_cni": {"enabled": false, "repair": {"enabled": true}},
        }),
    );
    values
}

/// 1.4.6's `mesh.DefaultMeshConfig()` proxy defaults, as a mesh config.
fn test_mesh(overrides: &Value) -> Value {
    let mut default_config = json!({
        "configPath": "/etc/istio/proxy",
        "binaryPath": "/usr/local/bin/envoy",
        "serviceCluster": "istio-proxy",
        "drainDuration": "45s",
        "parentShutdownDuration": "60s",
        "discoveryAddress": "istio-pilot:15010",
        "connectTimeout": "1s",
        "proxyAdminPort": 15000,
        "controlPlaneAuthPolicy": "NONE",
        "concurrency": 0,
        "interceptionMode": "REDIRECT",
    });
    merge(&mut default_config, overrides);
    json!({"defaultConfig": default_config})
}

fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/istio-1.4.6").join(relative)
}

fn documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|error| panic!("{origin}: {error}")))
        .filter(|document| !document.is_null())
        .collect()
}

/// The proxy container's environment variable `name`, parsed as JSON.
fn proxy_env_json(spec: &Value, name: &str) -> Option<Value> {
    let proxy = spec["containers"].as_array()?.iter().find(|c| c["name"] == "istio-proxy")?;
    let value = proxy["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()?;
    Some(serde_json::from_str(value).expect("JSON environment value"))
}

/// Removes from a list the items the status annotation names.
fn remove_listed(spec: &mut Value, field: &str, names: &Value) {
    let names: Vec<&str> = names.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if let Some(items) = spec.get_mut(field).and_then(Value::as_array_mut) {
        items.retain(|item| !names.contains(&item["name"].as_str().unwrap_or_default()));
        if items.is_empty() {
            spec.as_object_mut().expect("spec").remove(field);
        }
    }
}

/// Takes the injection back out of one pod template, leaving what the workload was before.
fn uninjected_template(template: &mut Value, dns_added: bool) {
    let Some(status) = template.pointer("/metadata/annotations/sidecar.istio.io~1status").and_then(Value::as_str)
    else {
        return;
    };
    let status: Value = serde_json::from_str(status).expect("status annotation");
    let spec = &mut template["spec"];
    let annotations = proxy_env_json(spec, "ISTIO_METAJSON_ANNOTATIONS");
    let labels = proxy_env_json(spec, "ISTIO_METAJSON_LABELS");
    let probers = proxy_env_json(spec, "ISTIO_KUBE_APP_PROBERS").unwrap_or_else(|| json!({}));
    remove_listed(spec, "initContainers", &status["initContainers"]);
    remove_listed(spec, "containers", &status["containers"]);
    remove_listed(spec, "volumes", &status["volumes"]);
    remove_listed(spec, "imagePullSecrets", &status["imagePullSecrets"]);
    if dns_added {
        spec.as_object_mut().expect("spec").remove("dnsConfig");
    }
    for container in spec["containers"].as_array_mut().into_iter().flatten() {
        let name = container["name"].as_str().unwrap_or_default().to_string();
        for (field, suffix) in [("readinessProbe", "readyz"), ("livenessProbe", "livez")] {
            if let Some(original) = probers.get(format!("/app-health/{name}/{suffix}")) {
                container[field]["httpGet"] = original.clone();
            }
        }
    }
    let metadata = template["metadata"].as_object_mut().expect("metadata");
    for (field, original) in [("annotations", annotations), ("labels", labels)] {
        match original {
            Some(original) => metadata.insert(field.to_string(), original),
            None => metadata.remove(field),
        };
    }
}

fn uninjected(mut object: Value, dns_added: bool) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    if kind == "List" {
        for item in object["items"].as_array_mut().into_iter().flatten() {
            *item = uninjected(item.take(), dns_added);
        }
    } else if let Some(pointer) = pod_template_pointer(&kind) {
        if let Some(template) = object.pointer_mut(pointer) {
            uninjected_template(template, dns_added);
        }
    }
    object
}

/// The golden as our injection deliberately differs from 1.4.6's (listed in the injector's
/// README): a CronJob's pod template, not its job template, gets the status annotation, the
/// traffic annotations and the `security.istio.io/tlsMode` label, so that its pods carry them.
fn deliberate_differences(mut document: Value) -> Value {
    if document["kind"] == "CronJob" {
        if let Some(Value::Object(job_metadata)) = document.pointer_mut("/spec/jobTemplate/metadata") {
            let moved: Vec<(String, Value)> =
                ["annotations", "labels"].iter().filter_map(|f| job_metadata.remove_entry(*f)).collect();
            let pod_metadata = &mut document["spec"]["jobTemplate"]["spec"]["template"]["metadata"];
            for (field, value) in moved {
                pod_metadata[field] = value;
            }
        }
    }
    document
}

/// A Kubernetes quantity as an amount (millis for CPU-style suffixes, bytes otherwise).
fn quantity_amount(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// The object as compared: no nulls or empty maps, quantities as amounts, the status
/// annotation without its version.
fn normalized(value: &Value, key: &str) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let mut out = Map::new();
            for (field, item) in map {
                let item = if field == "sidecar.istio.io/status" {
                    let mut status: Value = serde_json::from_str(item.as_str().unwrap_or("{}")).expect("status");
                    status.as_object_mut().map(|s| s.remove("version"));
                    status
                } else if (key == "limits" || key == "requests") && item.is_string() {
                    let text = item.as_str().unwrap_or_default();
                    quantity_amount(text).map_or_else(|| item.clone(), |amount| json!(format!("{amount:.6}")))
                } else {
                    item.clone()
                };
                if let Some(item) = normalized(&item, field) {
                    out.insert(field.clone(), item);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|item| normalized(item, key)).collect())),
        other => Some(other.clone()),
    }
}

/// The injector as `istioctl kube-inject --injectConfigFile --valuesFile --meshConfigFile`
/// loads it, from files holding the case's parameters, as 1.4.6's test passed them.
fn injector_from_files(values: &Value, mesh: &Value) -> Injector {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, value: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_yaml::to_string(value).expect("yaml")).expect("write");
        Some(path)
    };
    ConfigFiles {
        inject_config: write("config", &json!({"policy": "enabled"})),
        values: write("values", values),
        mesh_config: write("mesh", mesh),
    }
    .load()
    .expect("the files load")
}

/// Injects each case's input and compares with its golden; returns the mismatches.
fn run(directory: &str, cases: Vec<Case>, base_values: &Value) -> Vec<String> {
    let mut mismatches = Vec::new();
    for case in &cases {
        let path = testdata(&format!("{directory}/{}", case.golden));
        let golden_text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let golden: Vec<Value> = documents(&golden_text, case.golden).into_iter().map(deliberate_differences).collect();
        let dns_added = case.values.pointer("/global/podDNSSearchNamespaces").is_some();
        let input: Vec<Value> = if case.reinject {
            golden.clone()
        } else {
            golden.iter().cloned().map(|document| uninjected(document, dns_added)).collect()
        };
        let input_text =
            input.iter().map(|d| serde_yaml::to_string(d).expect("yaml")).collect::<Vec<_>>().join("---\n");
        let mut values = base_values.clone();
        merge(&mut values, &case.values);
        let injector = injector_from_files(&values, &test_mesh(&case.mesh));
        let output = match kube_inject_yaml(&injector, &input_text, case.golden) {
            Ok(output) => output,
            Err(error) => {
                mismatches.push(format!("{}: {error}", case.golden));
                continue;
            }
        };
        let got: Vec<Option<Value>> = documents(&output, case.golden).iter().map(|d| normalized(d, "")).collect();
        let want: Vec<Option<Value>> = golden.iter().map(|d| normalized(d, "")).collect();
        if got != want {
            let got = serde_yaml::to_string(&got).expect("yaml");
            let want = serde_yaml::to_string(&want).expect("yaml");
            let diff = similar::TextDiff::from_lines(&want, &got);
            mismatches.push(format!(
                "{}:\n{}",
                case.golden,
                diff.unified_diff().context_radius(2).header("golden", "injected")
            ));
        }
    }
    mismatches
}

#[test]
fn into_resource_file_goldens_of_istio_1_4_6() {
    let mismatches = run("inject", into_resource_cases(), &test_values());
    assert!(mismatches.is_empty(), "{} cases differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn rewrite_app_probe_goldens_of_istio_1_4_6() {
    // TestRewriteAppProbe's parameters: the readiness timings shifted by one field, as 1.4.6's
    // test set them, and no traffic ranges.
    let mut values = test_values();
    merge(
        &mut values,
        &proxy(json!({
            "readinessInitialDelaySeconds": 2,
            "readinessPeriodSeconds": 30,
            "readinessFailureThreshold": 30,
            "includeIPRanges": "",
            "includeInboundPorts": "",
        })),
    );
    let rewrite = json!({"sidecarInjectorWebhook": {"rewriteAppHTTPProbe": true}});
    let cases = [
        ("hello-probes.yaml.injected", true),
        ("hello-readiness.yaml.injected", true),
        ("named_port.yaml.injected", true),
        ("one_container.yaml.injected", true),
        ("two_container.yaml.injected", true),
        ("ready_only.yaml.injected", true),
        ("https-probes.yaml.injected", true),
        ("hello-probes-with-flag-set-in-annotation.yaml.injected", false),
        ("hello-probes-with-flag-unset-in-annotation.yaml.injected", true),
        ("ready_live.yaml.injected", true),
    ]
    .into_iter()
    .map(|(golden, rewrite_probes)| if rewrite_probes { with_values(golden, rewrite.clone()) } else { case(golden) })
    .collect();
    let mismatches = run("app_probe", cases, &values);
    assert!(mismatches.is_empty(), "{} cases differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

/// 1.4.6's `TestInvalidParams` and `TestInvalidAnnotations`: bad traffic values and annotations
/// fail the injection, naming the value or annotation (inputs written here).
#[test]
fn bad_traffic_settings_are_refused_by_name() {
    let hello = |annotations: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello"},
               "spec": {"template": {"metadata": {"labels": {"app": "hello"}, "annotations": annotations},
                        "spec": {"containers": [{"name": "hello", "image": "hello:1"}]}}}})
    };
    let inject = |values: Value, object: &Value| {
        let mut merged = test_values();
        merge(&mut merged, &values);
        let injector = Injector::new(InjectorConfig::default(), merged, &test_mesh(&json!({}))).expect("injector");
        let text = serde_yaml::to_string(object).expect("yaml");
        kube_inject_yaml(&injector, &text, "hello.yaml").map(|_| ()).map_err(|error| error.to_string())
    };
    for (field, value) in [
        ("includeIPRanges", "bad"),
        ("excludeIPRanges", "*"),
        ("includeInboundPorts", "bad"),
        ("excludeInboundPorts", "*"),
    ] {
        let error = inject(proxy(json!({field: value})), &hello(json!({}))).expect_err(field);
        assert!(error.contains(&format!("global.proxy.{field}")) && error.contains(value), "{error}");
    }
    for annotation in [
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "traffic.sidecar.istio.io/includeInboundPorts",
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "traffic.sidecar.istio.io/excludeOutboundPorts",
    ] {
        let error = inject(json!({}), &hello(json!({annotation: "bad"}))).expect_err(annotation);
        assert!(error.contains("hello.yaml") && error.contains(annotation) && error.contains("bad"), "{error}");
    }
    let error = inject(json!({}), &hello(json!({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "*"})))
        .expect_err("excluding everything");
    assert!(error.contains("excludeOutboundIPRanges"), "{error}");
    let error = inject(json!({"global": {"podDNSSearchNamespaces": ["{{ .Values.global.x }}"]}}), &hello(json!({})))
        .expect_err("unknown template expression");
    assert!(error.contains("podDNSSearchNamespaces") && error.contains(".Values.global.x"), "{error}");
}

/// With no concurrency in the mesh config, the proxy gets one worker per CPU of its limit, or
/// of its request when it has no limit (1.4's `applyConcurrency`).
#[test]
fn concurrency_follows_the_proxys_cpu() {
    let args = |resources: Value, annotations: Value| -> Vec<String> {
        let mut values = test_values();
        values["global"]["proxy"]["resources"] = resources;
        let injector = Injector::new(InjectorConfig::default(), values, &test_mesh(&json!({}))).expect("injector");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": annotations},
                         "spec": {"containers": [{"name": "app"}]}});
        let text = kube_inject_yaml(&injector, &serde_yaml::to_string(&pod).expect("yaml"), "p").expect("inject");
        let pod = documents(&text, "p").remove(0);
        serde_json::from_value(pod["spec"]["containers"][1]["args"].clone()).expect("args")
    };
    let concurrency = |args: Vec<String>| -> Option<String> {
        args.iter().position(|arg| arg == "--concurrency").map(|index| args[index + 1].clone())
    };
    let limits = json!({"limits": {"cpu": "2500m"}, "requests": {"cpu": "100m"}});
    assert_eq!(concurrency(args(limits, json!({}))).as_deref(), Some("3"));
    assert_eq!(concurrency(args(json!({"requests": {"cpu": "1"}}), json!({}))).as_deref(), Some("1"));
    assert_eq!(concurrency(args(json!({}), json!({}))), None);
    let annotated = json!({"sidecar.istio.io/proxyCPU": "1500m"});
    assert_eq!(concurrency(args(json!({}), annotated)).as_deref(), Some("2"));
}
