//! The injector's CA bundle in its MutatingWebhookConfiguration, kept as 1.4's injector kept it
//! (`--webhookConfigName`, `--caCertFile`): the installation creates the configuration without a
//! bundle, and the injector fills in every webhook's `caBundle` with the CA that signed its
//! serving certificate, then again whenever the CA file changes or someone else's write (an
//! `istioctl manifest apply`, a `kubectl edit`) leaves a webhook with another bundle. Each patch
//! is conditional on the resource version it was computed from; a failed one is retried every
//! second.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{json, Value};

/// How long after a failed patch the next try comes.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often the CA file is looked at.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Which configuration to keep, with which CA.
#[derive(Debug, Clone)]
pub struct CaBundlePatching {
    pub webhook_config_name: String,
    pub ca_cert_file: PathBuf,
}

/// The JSON patch that gives every webhook the bundle `ca` (base64 in JSON, as the API has it),
/// guarded by the configuration's resource version; None when all have it already.
pub(crate) fn patch_for(configuration: &MutatingWebhookConfiguration, ca: &[u8]) -> Option<Value> {
    let mut operations = Vec::new();
    for (index, webhook) in configuration.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref().map(|bundle| bundle.0.as_slice()) != Some(ca) {
            let op = if webhook.client_config.ca_bundle.is_some() { "replace" } else { "add" };
            operations.push(json!({
                "op": op,
                "path": format!("/webhooks/{index}/clientConfig/caBundle"),
                "value": base64::engine::general_purpose::STANDARD.encode(ca),
            }));
        }
    }
    if operations.is_empty() {
        return None;
    }
    let version = configuration.metadata.resource_version.clone().unwrap_or_default();
    operations.insert(0, json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}));
    Some(Value::Array(operations))
}

/// Reads the configuration and patches the webhooks whose bundle is not `ca`; true if it patched.
pub(crate) async fn patch_once(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    ca: &[u8],
) -> Result<bool, kube::Error> {
    let configuration = api.get(name).await?;
    let Some(patch) = patch_for(&configuration, ca) else {
        return Ok(false);
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(true)
}

/// Keeps the bundle in place until `shutdown`.
pub(crate) async fn run(client: Client, patching: CaBundlePatching, shutdown: impl std::future::Future<Output = ()>) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let name = patching.webhook_config_name.clone();
    let watched = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), watched).boxed();
    let mut files = tokio::time::interval(FILE_POLL);
    let mut ca: Option<Vec<u8>> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = istio_runtime::backoff::until(retry_at) => {}
            change = changes.next() => {
                if let Some(Err(error)) = change {
                    tracing::debug!(%error, "watching the mutatingwebhookconfiguration");
                }
            }
            _ = files.tick() => {
                match std::fs::read(&patching.ca_cert_file) {
                    Ok(current) if ca.as_ref() != Some(&current) => ca = Some(current),
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "reading the CA certificate {}", patching.ca_cert_file.display());
                        continue;
                    }
                }
            }
        }
        retry_at = None;
        let Some(bundle) = &ca else { continue };
        match patch_once(&api, &name, bundle).await {
            Ok(true) => tracing::info!("patched the CA bundle of mutatingwebhookconfiguration {name}"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "patching the CA bundle of mutatingwebhookconfiguration {name}; retrying every {RETRY_AFTER_FAILURE:?}");
                retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER_FAILURE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    use super::*;

    fn configuration(bundles: &[Option<&str>]) -> Value {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(index, bundle)| {
                let mut config = json!({"service": {"name": "istio-sidecar-injector", "namespace": "istio-system", "path": "/inject"}});
                if let Some(bundle) = bundle {
                    config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(bundle));
                }
                json!({"name": format!("hook{index}.istio.io"), "clientConfig": config, "sideEffects": "None",
                       "admissionReviewVersions": ["v1"]})
            })
            .collect();
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": "istio-sidecar-injector", "resourceVersion": "12"}, "webhooks": webhooks})
    }

    #[test]
    fn only_webhooks_without_the_bundle_are_patched_and_only_from_the_version_read() {
        let typed = |value: Value| -> MutatingWebhookConfiguration { serde_json::from_value(value).expect("typed") };
        let patch = patch_for(&typed(configuration(&[None, Some("CA"), Some("old")])), b"CA").expect("a patch");
        let encoded = base64::engine::general_purpose::STANDARD.encode("CA");
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "12"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": encoded},
                {"op": "replace", "path": "/webhooks/2/clientConfig/caBundle", "value": encoded},
            ])
        );
        assert_eq!(patch_for(&typed(configuration(&[Some("CA")])), b"CA"), None);
    }

    fn reply(status: u16, body: &Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response")
    }

    #[tokio::test]
    async fn a_stale_bundle_is_patched_and_a_missing_configuration_is_an_error() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<MutatingWebhookConfiguration> = Api::all(Client::new(service, "default"));
        let path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-sidecar-injector";
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("get");
            assert_eq!((request.method().as_str(), request.uri().path()), ("GET", path));
            send.send_response(reply(200, &configuration(&[Some("old")])));
            let (request, send) = handle.next_request().await.expect("patch");
            assert_eq!((request.method().as_str(), request.uri().path()), ("PATCH", path));
            assert_eq!(request.headers()["content-type"], "application/json-patch+json");
            let body = http_body_util::BodyExt::collect(request.into_body()).await.expect("body").to_bytes();
            let patch: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(patch[0]["op"], "test");
            send.send_response(reply(200, &configuration(&[Some("CA")])));
            let (_, send) = handle.next_request().await.expect("get");
            send.send_response(reply(
                404,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "mutatingwebhookconfigurations.admissionregistration.k8s.io \"istio-sidecar-injector\" not found"}),
            ));
        });
        assert!(patch_once(&api, "istio-sidecar-injector", b"CA").await.expect("patched"));
        let error = patch_once(&api, "istio-sidecar-injector", b"CA").await.expect_err("missing");
        assert!(error.to_string().contains("not found"), "{error}");
        server.await.expect("server");
    }
}
