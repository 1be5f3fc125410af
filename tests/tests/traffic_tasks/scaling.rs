//! The classic first exercise with the kubectl verbs: scale a Deployment and watch Pilot and
//! the proxies see the new endpoints (`/debug/edsz`, `istioctl proxy-config endpoint`).

use super::*;

/// Pilot's debug port on the local platform (istio-pilot's address).
const PILOT_DEBUG: &str = "10.44.0.10:8080";
const DETAILS_CLUSTER: &str = "outbound|9080||details.default.svc.cluster.local";

/// The endpoints `/debug/edsz` lists for details' cluster.
fn edsz_details() -> Vec<String> {
    let (status, body) = e2e::http_get(PILOT_DEBUG, "/debug/edsz");
    assert_eq!(status, 200, "/debug/edsz: {body}");
    let clusters: serde_json::Value = serde_json::from_str(&body).expect("/debug/edsz JSON");
    clusters
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cluster| cluster["cluster"] == DETAILS_CLUSTER)
        .flat_map(|cluster| cluster["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|endpoint| endpoint.as_str().map(str::to_string))
        .collect()
}

/// The HEALTHY rows productpage's proxy holds for details' cluster.
fn proxy_details(mesh: &LocalMesh) -> Result<usize, String> {
    let pod = mesh.pod_name("app", "productpage").ok_or("no productpage pod")?;
    let (code, table, err) =
        mesh.istioctl(&["proxy-config", "endpoint", &format!("{pod}.default"), "--cluster", DETAILS_CLUSTER]);
    if code != 0 {
        return Err(format!("proxy-config endpoint: {err}"));
    }
    Ok(table.lines().skip(1).filter(|line| line.contains("HEALTHY")).count())
}

fn scale(mesh: &LocalMesh, replicas: &str) {
    let (code, out, err) = mesh.istioctl(&["x", "local", "scale", "deployment", "details-v1", "--replicas", replicas]);
    assert_eq!((code, out.trim()), (0, "deployment.apps/details-v1 scaled"), "{err}");
}

/// details-v1 scaled to two replicas: both pods become ready, Pilot's EDS lists both, and
/// productpage's proxy holds both as healthy; the page still has its details. Scaled back to
/// one, both views shrink again.
pub(crate) fn scaling(mesh: &LocalMesh) {
    assert_eq!(edsz_details().len(), 1, "one details endpoint before scaling: {:?}", edsz_details());
    scale(mesh, "2");
    mesh.wait_ready("details", "default", 2);
    until("two details endpoints in /debug/edsz", Duration::from_secs(30), || expect(edsz_details().len(), 2));
    until("two details endpoints at productpage's proxy", Duration::from_secs(30), || expect(proxy_details(mesh)?, 2));
    mesh.settle(None, "the page's details with two details pods", 4, |_, page| page.contains("Book Details"));

    scale(mesh, "1");
    until("one details endpoint in /debug/edsz", Duration::from_secs(60), || expect(edsz_details().len(), 1));
    until("one details endpoint at productpage's proxy", Duration::from_secs(30), || expect(proxy_details(mesh)?, 1));
    let (code, _, err) = mesh.istioctl(&["x", "local", "scale", "service", "details", "--replicas", "2"]);
    assert_eq!(code, 2, "scaling a Service is refused");
    assert!(err.contains("only Deployments can be scaled"), "{err}");
    let (code, _, err) = mesh.istioctl(&["x", "local", "scale", "deployment/missing", "--replicas", "2"]);
    assert_eq!(code, 2);
    assert!(err.contains("deployments.apps \"missing\" not found"), "{err}");
}
