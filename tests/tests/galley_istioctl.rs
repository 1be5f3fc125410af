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
