//! `manifest generate`'s output for each profile and for a set of overrides, against the files
//! under `testdata/` (the CRDs, the same for every profile, in `crds.yaml`). After a deliberate
//! change, `UPDATE_GOLDEN=1 cargo test -p istio-manifest --test golden` rewrites them; review the
//! diff.

use std::path::PathBuf;

use istio_manifest::{generate, to_yaml, Install, Manifest};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn check(name: &str, actual: &str) -> Option<String> {
    let path = testdata(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("testdata");
        std::fs::write(&path, actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        format!(
            "{name} differs from line {}: expected {:?}, got {:?}",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        )
    })
}

/// The objects a profile's golden file holds: not the CRDs (in `crds.yaml`), nor Mixer's config
/// objects, which come as they are from `install/mixer/*.yaml` (only their count is kept).
fn golden_objects(manifests: Vec<Manifest>) -> (Vec<Manifest>, usize) {
    let is_mixer_config =
        |manifest: &Manifest| manifest.object["apiVersion"].as_str().is_some_and(|v| v.starts_with("config.istio.io/"));
    let mixer_config = manifests.iter().filter(|manifest| is_mixer_config(manifest)).count();
    let kept = manifests
        .into_iter()
        .filter(|manifest| manifest.object["kind"] != "CustomResourceDefinition" && !is_mixer_config(manifest))
        .collect();
    (kept, mixer_config)
}

#[test]
fn each_profile_and_overrides_generate_the_reviewed_manifests() {
    let cases: [(&str, &[&str]); 5] = [
        ("default", &[]),
        ("demo", &["profile=demo"]),
        ("minimal", &["profile=minimal"]),
        ("sds", &["profile=sds"]),
        (
            "overrides",
            &[
                "profile=demo",
                "hub=registry.example.com/istio-rs",
                "tag=1.4.10",
                "values.global.mtls.enabled=true",
                "values.pilot.autoscaleEnabled=true",
                "values.meshConsole.enabled=true",
                "values.global.k8sIngress.enabled=true",
                "values.gateways.istio-egressgateway.secretVolumes[0].name=nginx-client-certs",
                "values.gateways.istio-egressgateway.secretVolumes[0].secretName=nginx-client-certs",
                "values.gateways.istio-egressgateway.secretVolumes[0].mountPath=/etc/nginx-client-certs",
                "trafficManagement.components.pilot.k8s.replicaCount=2",
                "trafficManagement.components.pilot.k8s.resources.requests.memory=512Mi",
            ],
        ),
    ];
    let mut differences = Vec::new();
    let mut crds = None;
    for (name, sets) in cases {
        let sets: Vec<String> = sets.iter().map(|set| set.to_string()).collect();
        let install = Install::resolve(&sets, &[]).unwrap_or_else(|error| panic!("{name}: {error}"));
        let manifests = generate(&install).unwrap_or_else(|error| panic!("{name}: {error}"));
        let these: Vec<Manifest> = manifests
            .iter()
            .filter(|manifest| manifest.object["kind"] == "CustomResourceDefinition")
            .cloned()
            .collect();
        assert_eq!(these.len(), 23, "{name}: every profile installs the 23 CRDs");
        crds.get_or_insert(these);
        let (kept, mixer_config) = golden_objects(manifests);
        let text =
            format!("# Mixer config objects from install/mixer: {mixer_config}\n{}", to_yaml(&kept).expect("yaml"));
        differences.extend(check(&format!("{name}.yaml"), &text));
    }
    differences.extend(check("crds.yaml", &to_yaml(&crds.expect("crds")).expect("yaml")));
    assert!(differences.is_empty(), "UPDATE_GOLDEN=1 to accept after review:\n{}", differences.join("\n"));
}

#[test]
fn the_demo_profile_installs_1_4s_deployments_and_services() {
    let install = Install::resolve(&["profile=demo".into()], &[]).expect("demo");
    let manifests = generate(&install).expect("demo");
    let names = |kind: &str| -> Vec<String> {
        let mut names: Vec<String> = manifests
            .iter()
            .filter(|manifest| manifest.object["kind"] == kind)
            .map(|manifest| manifest.object["metadata"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    };
    let control_plane = [
        "istio-citadel",
        "istio-egressgateway",
        "istio-galley",
        "istio-ingressgateway",
        "istio-pilot",
        "istio-policy",
        "istio-sidecar-injector",
        "istio-telemetry",
    ];
    // The demo's addons, with 1.4's names and the upstream images a cluster can pull.
    let addons = [
        ("grafana", "grafana/grafana:6.4.3"),
        ("istio-tracing", "docker.io/jaegertracing/all-in-one:1.14"),
        ("kiali", "quay.io/kiali/kiali:v1.9"),
        ("prometheus", "docker.io/prom/prometheus:v2.12.0"),
    ];
    let mut deployments: Vec<&str> =
        control_plane.iter().copied().chain(addons.iter().map(|(name, _)| *name)).collect();
    deployments.sort_unstable();
    assert_eq!(names("Deployment"), deployments);
    let mut services: Vec<&str> = control_plane.to_vec();
    services.extend([
        "grafana",
        "jaeger-agent",
        "jaeger-collector",
        "jaeger-query",
        "kiali",
        "prometheus",
        "tracing",
        "zipkin",
    ]);
    services.sort_unstable();
    assert_eq!(names("Service"), services);
    assert_eq!(names("PodDisruptionBudget"), control_plane);
    assert!(names("HorizontalPodAutoscaler").is_empty(), "demo turns autoscaling off");
    // Every control-plane Deployment has a replica count in demo, and names an image from the hub.
    for manifest in manifests.iter().filter(|manifest| manifest.object["kind"] == "Deployment") {
        let name = manifest.object["metadata"]["name"].as_str().unwrap_or_default();
        let image = manifest.object["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
        match addons.iter().find(|(addon, _)| *addon == name) {
            Some((_, upstream)) => assert_eq!(image, *upstream),
            None => {
                assert_eq!(manifest.object["spec"]["replicas"], 1, "{}", manifest.display_name());
                assert!(image.starts_with("docker.io/istio/"), "{image}");
            }
        }
    }
    // The addons' sidecar stays off; 1.4's tracing chart named no replica count.
    let tracing = manifests.iter().find(|m| m.object["metadata"]["name"] == "istio-tracing").expect("istio-tracing");
    assert!(tracing.object["spec"]["replicas"].is_null());
    assert_eq!(tracing.object["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"], "false");
    // The order: namespace and CRDs first, workloads after their accounts and config.
    let kinds: Vec<&str> =
        manifests.iter().map(|manifest| manifest.object["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds[0], "Namespace");
    assert_eq!(kinds[1], "CustomResourceDefinition");
    let position = |kind: &str| kinds.iter().position(|candidate| *candidate == kind).expect(kind);
    assert!(position("ServiceAccount") < position("Deployment") && position("ConfigMap") < position("Deployment"));
    let default = generate(&Install::resolve(&[], &[]).expect("default")).expect("default");
    let autoscaled: Vec<&str> = default
        .iter()
        .filter(|manifest| manifest.object["kind"] == "HorizontalPodAutoscaler")
        .map(|manifest| manifest.object["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(autoscaled, ["istio-pilot", "istio-policy", "istio-telemetry", "istio-ingressgateway"]);
}

#[test]
fn bad_settings_name_their_path() {
    let error = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|set| set.to_string()).collect();
        match Install::resolve(&sets, &[]).and_then(|install| generate(&install)) {
            Ok(_) => panic!("{sets:?} accepted"),
            Err(error) => error.to_string(),
        }
    };
    let message = error(&["trafficManagement.components.pilot.k8s.tolerations=everywhere"]);
    assert!(message.starts_with("trafficManagement.components.pilot.k8s.tolerations:"), "{message}");
    let message = error(&["values.pilot.resources.requests.cpu=true"]);
    assert!(message.contains("values.pilot.resources.requests.cpu"), "{message}");
    let message = error(&["gateways.components.ilbGateway.enabled=true"]);
    assert!(message.contains("gateways has no component \"ilbGateway\""), "{message}");
}
