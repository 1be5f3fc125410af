//! Admission, as the API server does it: Istio objects go to Galley's validating webhook
//! before they are stored, and new pods in namespaces labelled `istio-injection=enabled` go to
//! the sidecar injector, whose JSONPatch is applied to the pod. Both are called over HTTPS
//! with AdmissionReview v1, trusting the installation's CA.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};

/// Where a webhook is and how to trust it.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub address: SocketAddr,
    pub server_name: String,
    pub ca_pem: Vec<u8>,
}

/// How long a webhook may take, as the API server's default timeout for webhooks.
const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn call(webhook: &Webhook, path: &str, review: &Value) -> anyhow::Result<Value> {
    tokio::time::timeout(
        WEBHOOK_TIMEOUT,
        istio_runtime::https::post_json(webhook.address, &webhook.server_name, &webhook.ca_pem, path, review),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{} did not answer within {WEBHOOK_TIMEOUT:?}", webhook.server_name))?
    .map_err(anyhow::Error::from)
}

fn review(request: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn request_uid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Asks Galley whether an Istio object may be stored; `Err` carries Galley's reasons.
pub(crate) async fn validate(galley: &Webhook, object: &Value) -> anyhow::Result<()> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(found) = istio_api::kinds::lookup(api_version, kind) else {
        return Ok(());
    };
    let request = json!({
        "uid": request_uid(),
        "kind": {"group": found.group, "version": found.version, "kind": kind},
        "resource": {"group": found.group, "version": found.version, "resource": found.plural},
        "name": object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
        "operation": "CREATE",
        // Cluster-scoped kinds (MeshPolicy, ClusterRbacConfig) are sent without a namespace.
        "namespace": if found.namespaced {
            object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default")
        } else {
            ""
        },
        "object": object,
    });
    let answer =
        call(galley, found.webhook.path(), &review(request)).await.context("calling Galley's validation webhook")?;
    if answer.pointer("/response/allowed").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let message =
        answer.pointer("/response/status/message").and_then(Value::as_str).unwrap_or("denied without a reason");
    let webhook = match found.webhook {
        istio_api::kinds::Webhook::Pilot => "pilot.validation.istio.io",
        istio_api::kinds::Webhook::Mixer => "mixer.validation.istio.io",
    };
    bail!("admission webhook \"{webhook}\" denied the request: {message}")
}

/// Sends a new pod to the injector and returns it as the injector patched it.
pub(crate) async fn inject(injector: &Webhook, pod: &Value, namespace: &str) -> anyhow::Result<Value> {
    let request = json!({
        "uid": request_uid(),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": namespace,
        "object": pod,
    });
    let answer = call(injector, "/inject", &review(request)).await.context("calling the sidecar injector")?;
    let response = &answer["response"];
    if response["allowed"].as_bool() != Some(true) {
        bail!(
            "admission webhook \"sidecar-injector.istio.io\" denied the request: {}",
            response.pointer("/status/message").and_then(Value::as_str).unwrap_or("no reason given")
        );
    }
    let Some(encoded) = response.get("patch").and_then(Value::as_str) else {
        return Ok(pod.clone());
    };
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded).context("the injector's patch is not base64")?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).context("the injector's patch is not a JSONPatch")?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).context("applying the injector's patch")?;
    Ok(patched)
}
