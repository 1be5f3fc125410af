//! Galley and istioctl as real processes: `galley server --configPath` serving MCP, watched by
//! `istioctl x mcp --watch`; an edit reaches the sink, an invalid edit is reported and not
//! served; `istioctl validate` exit codes and output through the binary.

use std::time::Duration;

use e2e::{run, start_galley, Process};

const VIRTUAL_SERVICES: &str = "istio/networking/v1alpha3/virtualservices";

fn virtual_service(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v1}}\n      weight: {v1}\n    - destination: {{host: reviews, subset: v2}}\n      weight: {v2}\n"
    )
}

fn weights(response: &serde_json::Value) -> Vec<u64> {
    response["resources"][0]["body"]["http"][0]["route"]
        .as_array()
        .map(|routes| routes.iter().map(|r| r["weight"].as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

#[test]
fn istioctl_x_mcp_shows_galley_collections_and_updates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("reviews.yaml");
    std::fs::write(&file, virtual_service(50, 50)).expect("write");
    let (galley, address) = start_galley(dir.path());

    // A one-shot sink sees every collection Galley serves.
    let (code, stdout, stderr) = run("istioctl", &["x", "mcp", "--address", &address], None);
    assert_eq!(code, 0, "{stderr}");
    let collections = stdout.matches("\"collection\"").count();
    assert!(collections >= 50, "{collections} collections:\n{stdout}");
    assert!(
        stdout.contains(VIRTUAL_SERVICES)
            && stdout.contains("istio/networking/v1alpha3/synthetic/serviceentries")
            && stdout.contains("istio/mesh/v1alpha1/MeshConfig")
    );

    // A watching sink sees the initial state, then an edit.
    let watcher =
        Process::start("istioctl", &["x", "mcp", "--address", &address, "--collection", VIRTUAL_SERVICES, "--watch"]);
    let initial = watcher
        .next_json(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no initial response: {}", watcher.stderr()));
    assert_eq!(initial["resources"][0]["name"], "default/reviews");
    assert_eq!(weights(&initial), vec![50, 50]);
    std::fs::write(&file, virtual_service(80, 20)).expect("write");
    let update = watcher.next_json(Duration::from_secs(5)).expect("an update after the edit");
    assert_eq!(weights(&update), vec![80, 20]);

    // An invalid edit is logged with its reason and never reaches the sink: whatever the sink
    // hears afterwards still carries the last good version.
    std::fs::write(&file, virtual_service(70, 20)).expect("write");
    galley.wait_for_stderr("total destination weight 90 != 100", Duration::from_secs(5));
    if let Some(response) = watcher.next_json(Duration::from_millis(700)) {
        assert_eq!(weights(&response), vec![80, 20], "invalid config must not be served: {response}");
    }
}

#[test]
fn istioctl_validate_binary_reports_problems_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, virtual_service(50, 50)).expect("write");
    let (code, stdout, _) = run("istioctl", &["validate", "-f", &good.display().to_string()], None);
    assert_eq!((code, stdout.as_str()), (0, ""));

    let (code, stdout, _) = run("istioctl", &["validate", "-f", "-"], Some(&virtual_service(60, 20)));
    assert_eq!(code, 1);
    assert_eq!(
        stdout.trim(),
        "<stdin>:1: VirtualService default/reviews: spec.http[0].route: total destination weight 80 != 100"
    );

    let (code, _, stderr) = run("istioctl", &["validate", "-f", "/no/such/file.yaml"], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such/file.yaml"), "{stderr}");
}

const BOOKINFO_GATEWAY_VS: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: bookinfo\nspec:\n  hosts: [\"*\"]\n  gateways: [bookinfo-gateway]\n  http:\n  - route:\n    - destination: {host: productpage, port: {number: 9080}}\n";

/// `istioctl x analyze` through the binary: 1.4's lines and exit codes, thresholds, JSON
/// output, discovery, a file that does not parse next to one that does, and a missing file.
#[test]
fn istioctl_x_analyze_binary_reports_messages_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("vs.yaml"), BOOKINFO_GATEWAY_VS).expect("write");
    std::fs::write(
        path("gateway.yaml"),
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: bookinfo-gateway}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
    )
    .expect("write");
    std::fs::write(
        path("service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: productpage}\nspec:\n  selector: {app: productpage}\n  ports: [{name: http, port: 9080}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bookinfo-productpage}\n",
    )
    .expect("write");
    std::fs::write(path("broken.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: [\n").expect("write");

    // The gateway is missing: 1.4's line, on stdout, and exit code 79.
    let (code, stdout, stderr) = run("istioctl", &["x", "analyze", &path("vs.yaml")], None);
    assert_eq!(code, 79, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "Error [IST0101] (VirtualService bookinfo.default) Referenced gateway not found: \"bookinfo-gateway\""
    );
    assert!(stderr.contains("Error: Analyzer found issues."), "{stderr}");

    // With the gateway, files alone are clean; the Service's host is only checked with
    // service discovery, and then it is found. Kinds analysis does not read are ignored.
    let (code, _, stderr) = run("istioctl", &["x", "analyze", &path("vs.yaml"), &path("gateway.yaml")], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("\u{2714} No validation issues found."), "{stderr}");
    let (code, stdout, stderr) =
        run("istioctl", &["x", "analyze", "-d", &path("vs.yaml"), &path("gateway.yaml"), &path("service.yaml")], None);
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    let (code, stdout, _) =
        run("istioctl", &["x", "analyze", "--discovery=true", &path("vs.yaml"), &path("gateway.yaml")], None);
    assert_eq!(code, 79);
    assert!(stdout.contains("Referenced host not found: \"productpage\""), "{stdout}");

    // A namespace on the command line places the file's objects; JSON output.
    let (code, stdout, _) = run("istioctl", &["x", "analyze", "-n", "shop", "-o", "json", &path("vs.yaml")], None);
    assert_eq!(code, 79);
    let messages: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(messages[0]["origin"], "VirtualService bookinfo.shop");
    assert_eq!(messages[0]["code"], "IST0101");
    assert_eq!(messages[0]["level"], "Error");

    // Thresholds: errors are hidden above --output-threshold and pass under --failure-threshold.
    let (code, stdout, _) = run(
        "istioctl",
        &["x", "analyze", "--output-threshold", "ERROR", "--failure-threshold", "Error", &path("vs.yaml")],
        None,
    );
    assert_eq!(code, 79);
    assert!(stdout.contains("IST0101"));
    let (code, _, stderr) = run("istioctl", &["x", "analyze", "--failure-threshold", "Fatal", &path("vs.yaml")], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("\"Fatal\" not a valid option"), "{stderr}");

    // A file that does not parse is named with its line; the other files are still analysed.
    let (code, stdout, stderr) = run("istioctl", &["x", "analyze", &path("broken.yaml"), &path("vs.yaml")], None);
    assert_eq!(code, 79, "{stderr}");
    assert!(stderr.contains(&format!("{}:4: invalid YAML", path("broken.yaml"))), "{stderr}");
    assert!(stdout.contains("Referenced gateway not found"), "{stdout}");
    let (code, _, stderr) = run("istioctl", &["x", "analyze", &path("broken.yaml"), &path("gateway.yaml")], None);
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("No validation issues found (but 1 file could not be parsed)"), "{stderr}");

    // A file that does not exist.
    let (code, _, stderr) = run("istioctl", &["x", "analyze", &path("missing.yaml")], None);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("could not find file {:?}", path("missing.yaml"))), "{stderr}");
}

/// `galley server --enableAnalysis` logs what the analyzers find in its config.
#[test]
fn galley_logs_its_analysis() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vs.yaml"),
        BOOKINFO_GATEWAY_VS.replace("name: bookinfo\n", "name: bookinfo\n  namespace: default\n"),
    )
    .expect("write");
    let (galley, _) = e2e::start_galley_with(dir.path(), &["--enableAnalysis"]);
    galley.wait_for_stderr(
        "Error [IST0101] (VirtualService bookinfo.default) Referenced gateway not found: \"bookinfo-gateway\"",
        Duration::from_secs(10),
    );
}

/// `istioctl x kube-uninject` through the binary takes out what `istioctl kube-inject` put in:
/// Bookinfo comes back as it was, each workload marked not to be injected.
#[test]
fn istioctl_kube_uninject_reverses_kube_inject() {
    let bookinfo =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/platform/kube/bookinfo.yaml");
    let bookinfo = bookinfo.display().to_string();
    let documents = |text: &str| -> Vec<serde_json::Value> {
        text.split("\n---")
            .map(|document| serde_yaml::from_str::<serde_json::Value>(document).expect("yaml"))
            .filter(|value| !value.is_null())
            .collect()
    };
    let (code, injected, stderr) = run("istioctl", &["kube-inject", "-f", &bookinfo], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(injected.contains("istio-proxy"));
    let (code, uninjected, stderr) = run("istioctl", &["x", "kube-uninject", "-f", "-"], Some(&injected));
    assert_eq!(code, 0, "{stderr}");
    let mut expected = documents(&std::fs::read_to_string(&bookinfo).expect("bookinfo"));
    for document in &mut expected {
        if document["kind"] == "Deployment" {
            document["spec"]["template"]["metadata"]["annotations"] =
                serde_json::json!({"sidecar.istio.io/inject": "false"});
        }
    }
    assert_eq!(documents(&uninjected), expected);

    let (code, _, stderr) = run("istioctl", &["x", "kube-uninject"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("filename not specified (see --filename or -f)"), "{stderr}");
    let (code, _, stderr) = run("istioctl", &["x", "kube-uninject", "-f", "missing.yaml"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("open missing.yaml"), "{stderr}");
}
