//! `istioctl manifest apply`, `verify-install`, `manifest diff` and `profile diff`, run as the
//! real binary. The cluster is the scripted API server on loopback (`e2e::kube_api` with its
//! object store): it establishes CRDs and rolls Deployments out after a few reads, serves
//! Istio's kinds only once their CRD is established, and plays the failures an installer meets
//! (conflicts, refused rights, a Deployment that never gets ready).

use std::collections::BTreeSet;
use std::path::Path;

use e2e::kube_api::FakeApiServer;
use e2e::kube_store::{names_with_label, Script};

const COMPONENT_LABEL: &str = "operator.istio.io/component";

/// Runs istioctl with `args` (and `stdin`): (exit code, stdout + stderr).
fn istioctl(args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(e2e::binary("istioctl"))
        .args(args)
        // No local installation and no default kubeconfig: only what the test names.
        .env("ISTIO_LOCAL_ROOT", "/nonexistent/istio-rs-manifest-apply-test")
        .env("HOME", "/nonexistent")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run istioctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("istioctl output");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn apply(kubeconfig: &Path, extra: &[&str]) -> (i32, String) {
    let mut args =
        vec!["manifest", "apply", "--kubeconfig", kubeconfig.to_str().expect("utf-8"), "--readiness-timeout", "30s"];
    args.extend_from_slice(extra);
    istioctl(&args, "")
}

/// `Kind namespace/name` of every object `manifest generate` makes with these settings.
fn generated(sets: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["manifest", "generate"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (code, text) = istioctl(&args, "");
    assert_eq!(code, 0, "{text}");
    let objects: Vec<serde_json::Value> = text
        .split("\n---\n")
        .filter_map(|document| serde_yaml::from_str::<serde_json::Value>(document.trim_start_matches("---\n")).ok())
        .filter(|object| object.is_object())
        .map(|mut object| {
            object["metadata"]["labels"][COMPONENT_LABEL] = serde_json::json!("any");
            object
        })
        .collect();
    names_with_label(&objects, COMPONENT_LABEL)
}

fn position(requests: &[String], predicate: impl Fn(&str) -> bool) -> usize {
    requests.iter().position(|request| predicate(request)).unwrap_or(usize::MAX)
}

#[test]
fn the_demo_profile_is_applied_in_order_and_waited_for() {
    let mut script = Script::default();
    script.conflicts.insert("deployments/istio-pilot".into(), 2);
    let server = FakeApiServer::start_with(Vec::new(), script);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());

    let (code, out) = apply(&kubeconfig, &["--set", "profile=demo"]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "- Applying manifest for component Base...",
        "✔ Finished applying manifest for component Base.",
        "✔ Finished applying manifest for component Pilot.",
        "✔ Finished applying manifest for component Telemetry.",
        "Waiting for resources ready with timeout of 30s",
        "Deployment istio-system/istio-pilot is not ready:",
        "✔ Deployment istio-system/istio-pilot is ready",
        "✔ Installation complete",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // Everything `manifest generate` makes is in the cluster, labelled with its component.
    let objects = server.objects();
    let stored = names_with_label(&objects, COMPONENT_LABEL);
    assert_eq!(stored, generated(&["profile=demo"]));
    let pilot = objects
        .iter()
        .find(|object| object["kind"] == "Deployment" && object["metadata"]["name"] == "istio-pilot")
        .expect("istio-pilot");
    assert_eq!(pilot["metadata"]["labels"][COMPONENT_LABEL], "Pilot");
    assert_eq!(pilot["metadata"]["labels"]["operator.istio.io/managed"], "Reconcile");

    // Server-side apply as istioctl, CRDs before their kinds, and CRDs established first.
    let requests = server.requests();
    let patches: Vec<&String> = requests.iter().filter(|request| request.starts_with("PATCH")).collect();
    assert!(
        patches.iter().all(|request| request.contains("fieldManager=istioctl") && request.contains("force=true")),
        "{patches:#?}"
    );
    let last_crd_patch = requests
        .iter()
        .rposition(|request| request.starts_with("PATCH /apis/apiextensions.k8s.io/v1/customresourcedefinitions/"))
        .expect("CRDs applied");
    let first_crd_read =
        position(&requests, |r| r.starts_with("GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/"));
    let first_istio_kind = position(&requests, |r| r.starts_with("PATCH /apis/config.istio.io/"));
    let first_deployment = position(&requests, |r| r.starts_with("PATCH /apis/apps/v1/"));
    assert!(last_crd_patch < first_crd_read && first_crd_read < first_istio_kind, "{requests:#?}");
    assert!(first_crd_read < first_deployment, "{requests:#?}");
    // The two conflicts were retried.
    let pilot_patches = patches.iter().filter(|r| r.contains("/deployments/istio-pilot?")).count();
    assert_eq!(pilot_patches, 3, "{patches:#?}");

    // verify-install agrees, from the profile and from the generated file.
    let config = kubeconfig.to_str().expect("utf-8");
    let (code, out) = istioctl(&["verify-install", "--kubeconfig", config, "--set", "profile=demo"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Deployment: istio-pilot.istio-system checked successfully"), "{out}");
    assert!(out.contains("Checked 23 crds") && out.contains("Istio is installed successfully"), "{out}");
    let (_, manifest) = istioctl(&["manifest", "generate", "--set", "profile=demo"], "");
    let file = dir.path().join("istio-demo.yaml");
    std::fs::write(&file, manifest).expect("write");
    let (code, out) = istioctl(&["verify-install", "--kubeconfig", config, "-f", file.to_str().expect("utf-8")], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Checked 9 Istio Deployments"), "{out}");

    // A second apply with the egress gateway off prunes it and keeps the rest.
    let (code, out) =
        apply(&kubeconfig, &["--set", "profile=demo", "--set", "gateways.components.egressGateway.enabled=false"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("- Pruning objects for component EgressGateway..."), "{out}");
    assert!(out.contains("pruned Deployment istio-system/istio-egressgateway"), "{out}");
    let stored = names_with_label(&server.objects(), COMPONENT_LABEL);
    assert_eq!(stored, generated(&["profile=demo", "gateways.components.egressGateway.enabled=false"]));

    // verify-install for the demo now names the missing gateway and fails.
    let (code, out) = istioctl(&["verify-install", "--kubeconfig", config, "--set", "profile=demo"], "");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the required Deployment:istio-egressgateway is not ready due to: deployments.apps \"istio-egressgateway\" not found"),
        "{out}"
    );
}

#[test]
fn refused_rights_are_named_and_nothing_after_base_is_half_done() {
    let script = Script { forbidden: vec![("patch".into(), "clusterroles".into())], ..Script::default() };
    let server = FakeApiServer::start_with(Vec::new(), script);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let (code, out) = apply(&kubeconfig, &["--set", "profile=minimal"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘ Finished applying manifest for component Base."), "{out}");
    assert!(out.contains("apply ClusterRole istio-reader was refused (403 Forbidden)"), "{out}");
    assert!(
        out.contains(
            "needs the right to patch clusterroles in API group rbac.authorization.k8s.io at the cluster scope"
        ),
        "{out}"
    );
    assert!(out.contains("✘ Errors were logged during apply operation"), "{out}");
    assert!(!out.contains("component Pilot"), "Base failed, so nothing else is applied:\n{out}");

    // The pre-check says the same before an installation.
    let (code, out) = istioctl(&["verify-install", "--kubeconfig", kubeconfig.to_str().expect("utf-8")], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Istio is compatible with Kubernetes: v1.29.0."), "{out}");
    assert!(
        out.contains("Istio cannot be installed because the Istio namespace 'istio-system' is already in use"),
        "{out}"
    );
    assert!(out.contains("Can not create necessary Kubernetes configurations: clusterroles."), "{out}");
    assert!(out.contains("supports automatic sidecar injection"), "{out}");
}

#[test]
fn a_fresh_cluster_passes_the_pre_check_and_a_dry_run_stores_nothing() {
    let server = FakeApiServer::start_with(Vec::new(), Script::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let (code, out) = istioctl(&["verify-install", "--kubeconfig", kubeconfig.to_str().expect("utf-8")], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Istio will be installed in the istio-system namespace."), "{out}");
    assert!(out.contains("Install Pre-Check passed! The cluster is ready for Istio installation."), "{out}");

    let (code, out) = apply(&kubeconfig, &["--set", "profile=demo", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Not waiting for resources ready in dry run mode."), "{out}");
    assert!(out.contains("objects of Istio's kinds not checked (their CRDs are not installed yet)"), "{out}");
    assert!(server.objects().is_empty(), "a dry run stores nothing");
    assert!(server.requests().iter().filter(|r| r.starts_with("PATCH")).all(|r| r.contains("dryRun=All")));
}

#[test]
fn a_deployment_that_never_gets_ready_fails_the_apply_with_its_name() {
    let script = Script { stuck: vec!["istio-system/istio-pilot".into()], ..Script::default() };
    let server = FakeApiServer::start_with(Vec::new(), script);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let config = kubeconfig.to_str().expect("utf-8");
    let (code, out) = istioctl(
        &["manifest", "apply", "--kubeconfig", config, "--set", "profile=minimal", "--readiness-timeout", "3s"],
        "",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Deployment istio-system/istio-pilot is not ready: 0 of 1 updated replicas are available"),
        "{out}"
    );
    assert!(
        out.contains("Failed to wait for resources ready: timed out after 3s: Deployment istio-system/istio-pilot"),
        "{out}"
    );

    // Without waiting, the same apply succeeds.
    let (code, out) =
        istioctl(&["manifest", "apply", "--kubeconfig", config, "--set", "profile=minimal", "--wait=false"], "");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Waiting for resources"), "{out}");
}

#[test]
fn applying_the_default_profile_asks_first() {
    let server = FakeApiServer::start_with(Vec::new(), Script::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let (code, out) = istioctl(&["manifest", "apply", "--kubeconfig", kubeconfig.to_str().expect("utf-8")], "n\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("This will install the default Istio profile. Proceed? (y/N)") && out.contains("Cancelled."),
        "{out}"
    );
    assert!(server.requests().is_empty(), "nothing was sent: {:?}", server.requests());
}

#[test]
fn manifest_and_profile_diffs_as_1_4_printed_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, sets: &[&str]| {
        let mut args = vec!["manifest", "generate"];
        for set in sets {
            args.extend(["--set", set]);
        }
        let (code, text) = istioctl(&args, "");
        assert_eq!(code, 0, "{text}");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_string()
    };
    let a = write("a.yaml", &["profile=demo"]);
    let b = write(
        "b.yaml",
        &["profile=demo", "values.pilot.traceSampling=5", "trafficManagement.components.pilot.k8s.replicaCount=2"],
    );
    let (code, out) = istioctl(&["manifest", "diff", &a, &a], "");
    assert_eq!((code, out.trim()), (0, "Manifests are identical"));
    let (code, out) = istioctl(&["manifest", "diff", &a, &b], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("Differences of manifests are:"), "{out}");
    assert!(out.contains("Object Deployment:istio-system:istio-pilot has diffs:"), "{out}");
    assert!(out.contains("replicas: 1 -> 2"), "{out}");
    assert!(out.contains("traceSampling: 100 -> 5"), "the injector's values are compared as a tree:\n{out}");
    let (code, out) = istioctl(
        &["manifest", "diff", &a, &b, "--select", "Deployment:*:*", "--ignore", "Deployment:*:istio-pilot:spec.*"],
        "",
    );
    assert_eq!((code, out.trim()), (0, "Manifests are identical"), "{out}");

    // Directories: each side's files as one manifest.
    let (left, right) = (dir.path().join("left"), dir.path().join("right"));
    for (side, sets) in [(&left, vec!["profile=demo"]), (&right, vec!["profile=demo"])] {
        let mut args = vec!["manifest".to_string(), "generate".into(), "-o".into(), side.display().to_string()];
        for set in sets {
            args.extend(["--set".to_string(), set.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(istioctl(&args, "").0, 0);
    }
    let (code, out) =
        istioctl(&["manifest", "diff", "-r", left.to_str().expect("utf-8"), right.to_str().expect("utf-8")], "");
    assert_eq!((code, out.trim()), (0, "Manifests are identical"), "{out}");

    let (code, out) = istioctl(&["profile", "diff", "default", "demo"], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("Difference of profiles are:"), "{out}");
    assert!(out.contains("-  name: default\n+  name: demo"), "{out}");
    assert!(out.contains("-        enabled: false\n+        enabled: true"), "{out}");
    let (code, out) = istioctl(&["profile", "diff", "demo", "demo"], "");
    assert_eq!((code, out.trim()), (0, "Profiles are identical"));
    let (code, out) = istioctl(&["profile", "diff", "demo", "/nonexistent/profile.yaml"], "");
    assert_eq!(code, 2, "an error, not a difference: {out}");
    assert!(out.contains("\"/nonexistent/profile.yaml\": not a built-in profile or a readable file"), "{out}");
}

#[test]
fn kube_inject_reads_the_injector_config_the_cluster_has() {
    let server = FakeApiServer::start_with(Vec::new(), Script::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let config = kubeconfig.to_str().expect("utf-8");
    let workload = dir.path().join("ratings.yaml");
    std::fs::write(
        &workload,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ratings-v1}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  \
         template:\n    metadata: {labels: {app: ratings, version: v1}}\n    spec:\n      containers:\n      - {name: ratings, image: \
         docker.io/istio/examples-bookinfo-ratings-v1:1.15.0, ports: [{containerPort: 9080}]}\n",
    )
    .expect("write");
    let workload = workload.to_str().expect("utf-8");

    // Nothing installed yet: 1.4's message, naming the ConfigMap and the way around it.
    let (code, out) = istioctl(&["kube-inject", "-f", workload, "--kubeconfig", config], "");
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("could not read valid configmap \"istio-sidecar-injector\" from namespace \"istio-system\""),
        "{out}"
    );
    assert!(out.contains("Use --injectConfigFile"), "{out}");

    // Installed with a hub and tag of its own: the sidecar comes from the cluster's values.
    let (code, out) = apply(
        &kubeconfig,
        &["--set", "profile=demo", "--set", "hub=registry.example.com/mesh", "--set", "tag=9.9.9", "--wait=false"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = istioctl(&["kube-inject", "-f", workload, "--kubeconfig", config], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("image: registry.example.com/mesh/proxyv2:9.9.9"), "{out}");
    assert!(out.contains("name: istio-init") && out.contains("name: istio-proxy"), "{out}");
    let requests = server.requests();
    for path in [
        "/api/v1/namespaces/istio-system/configmaps/istio-sidecar-injector",
        "/api/v1/namespaces/istio-system/configmaps/istio",
    ] {
        assert!(requests.iter().any(|r| r.starts_with(&format!("GET {path}?"))), "{path} read: {requests:?}");
    }
}

#[test]
fn bookinfos_istio_objects_apply_against_the_installed_crds() {
    let server = FakeApiServer::start_with(Vec::new(), Script::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let (code, out) = apply(&kubeconfig, &["--set", "profile=minimal", "--wait=false"]);
    assert_eq!(code, 0, "{out}");
    // kind → (plural, namespaced), from the CRDs the installation applied.
    let crds: std::collections::BTreeMap<String, (String, bool)> = server
        .objects()
        .into_iter()
        .filter(|object| object["kind"] == "CustomResourceDefinition")
        .map(|crd| {
            let names = &crd["spec"]["names"];
            (
                names["kind"].as_str().unwrap_or_default().to_string(),
                (names["plural"].as_str().unwrap_or_default().to_string(), crd["spec"]["scope"] == "Namespaced"),
            )
        })
        .collect();
    let address = server.url().trim_start_matches("http://").to_string();
    let patch = |object: &serde_json::Value| {
        let kind = object["kind"].as_str().unwrap_or_default();
        let (plural, namespaced) = crds.get(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let scope = if *namespaced {
            format!("namespaces/{}/", object["metadata"]["namespace"].as_str().unwrap_or("default"))
        } else {
            String::new()
        };
        let path = format!("/apis/{api_version}/{scope}{plural}/{name}?fieldManager=bookinfo");
        let mut object = object.clone();
        if *namespaced && object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = serde_json::json!("default");
        }
        let (status, _, body) = e2e::http_request(
            &address,
            "PATCH",
            &path,
            &[("content-type", "application/apply-patch+yaml")],
            &object.to_string(),
        );
        (status, body)
    };
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/networking");
    let mut applied = 0;
    let mut files: Vec<_> = std::fs::read_dir(&samples).expect("samples").flatten().map(|entry| entry.path()).collect();
    files.sort();
    for file in files.iter().filter(|file| file.extension().is_some_and(|ext| ext == "yaml")) {
        let text = std::fs::read_to_string(file).expect("read");
        for document in text.split("\n---") {
            let object: serde_json::Value = serde_yaml::from_str(document).expect("yaml");
            if object.is_null() {
                continue;
            }
            let (status, body) = patch(&object);
            assert!(status == 200 || status == 201, "{}: {status} {body}", file.display());
            applied += 1;
        }
    }
    assert!(applied >= 20, "only {applied} objects in {}", samples.display());

    // What the API server would refuse is refused: an unserved version, an undeclared field.
    let mut wrong_version = serde_json::json!({"apiVersion": "networking.istio.io/v1beta9", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"}, "spec": {"hosts": ["reviews"]}});
    let (status, _) = patch(&wrong_version);
    assert_eq!(status, 404);
    wrong_version["apiVersion"] = serde_json::json!("networking.istio.io/v1alpha3");
    wrong_version["specs"] = serde_json::json!({});
    let (status, body) = patch(&wrong_version);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(".specs: field not declared in schema"), "{body}");
}

#[test]
fn bad_input_is_named_and_nothing_is_applied() {
    let server = FakeApiServer::start_with(Vec::new(), Script::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let overlay = dir.path().join("overlay.yaml");
    std::fs::write(
        &overlay,
        "apiVersion: install.istio.io/v1alpha2\nkind: IstioControlPlane\nspec:\n  trafficManagement:\n    components:\n      \
         pilots: {enabled: true}\n",
    )
    .expect("write");
    let (code, out) = apply(&kubeconfig, &["-f", overlay.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("overlay.yaml") && out.contains("pilots"), "the file and the component: {out}");
    let (code, out) = apply(&kubeconfig, &["--set", "trafficManagement.components.pilot.k8s.replicaCounts=2"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("replicaCounts"), "{out}");
    let (code, out) = apply(&kubeconfig, &["--set", "profile=nonexistent"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("nonexistent"), "{out}");
    assert!(server.requests().is_empty(), "nothing sent: {:?}", server.requests());
}
