//! `istioctl manifest generate` checked against Kubernetes' own schemas: every object of every
//! profile validates, strictly (no unknown fields), for Kubernetes 1.25 and 1.29 with PyPI's
//! `kubernetes-validate` (installed by `./test.sh`, named by `KUBERNETES_VALIDATE`).

use std::path::PathBuf;
use std::process::Command;

use e2e::run;

fn validator() -> PathBuf {
    std::env::var_os("KUBERNETES_VALIDATE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("kubernetes-validate"))
}

#[test]
#[ignore = "needs kubernetes-validate (PyPI); run by ./test.sh"]
fn every_profile_validates_against_kubernetes_1_25_and_1_29() {
    let dir = tempfile::tempdir().expect("temp dir");
    for profile in ["default", "demo", "minimal", "sds"] {
        let (code, yaml, stderr) =
            run("istioctl", &["manifest", "generate", "--set", &format!("profile={profile}")], None);
        assert_eq!(code, 0, "{profile}: {stderr}");
        // Istio's own kinds (MeshPolicy, Mixer's rules) have no schema in Kubernetes' set.
        let istio_kind = |document: &str| {
            document
                .lines()
                .find(|line| line.starts_with("apiVersion: "))
                .is_none_or(|line| line.contains(".istio.io/"))
        };
        let documents: Vec<&str> =
            yaml.split("---\n").filter(|document| !document.trim().is_empty() && !istio_kind(document)).collect();
        assert!(documents.len() > 30, "{profile}: {} Kubernetes objects", documents.len());
        let path = dir.path().join(format!("{profile}.yaml"));
        std::fs::write(&path, documents.join("---\n")).expect("write");
        for version in ["1.25.0", "1.29.0"] {
            let output = Command::new(validator())
                .args(["--strict", "-k", version, "--quiet"])
                .arg(&path)
                .output()
                .unwrap_or_else(|error| panic!("running {}: {error}", validator().display()));
            let report =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(
                output.status.success() && !report.contains("ERROR"),
                "{profile} on Kubernetes {version}:\n{report}"
            );
        }
    }
}

#[test]
fn manifest_generate_refuses_bad_input_with_the_path() {
    let (code, stdout, stderr) = run("istioctl", &["manifest", "generate", "--set", "policy.enable=true"], None);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "nothing printed: {stdout}");
    assert!(stderr.contains("policy.enable"), "{stderr}");
    let dir = tempfile::tempdir().expect("temp dir");
    let overlay = dir.path().join("overlay.yaml");
    std::fs::write(
        &overlay,
        "kind: IstioControlPlane\nspec:\n  gateways:\n    components:\n      ilbGateway: {enabled: true}\n",
    )
    .expect("write");
    let (code, _, stderr) = run("istioctl", &["manifest", "generate", "-f", overlay.to_str().expect("path")], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("overlay.yaml") && stderr.contains("ilbGateway"), "{stderr}");
    let (code, _, stderr) = run("istioctl", &["manifest", "generate", "--set", "profile=nosuch"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown profile \"nosuch\""), "{stderr}");
}
