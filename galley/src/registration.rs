//! Galley's ValidatingWebhookConfiguration on Kubernetes, kept as 1.4's Galley kept it: built
//! from the template file (`--validation-webhook-config-file`, the `istio-galley-configuration`
//! ConfigMap) with each webhook's `caBundle` set to the CA that signed Galley's certificate
//! (`--caCertFile`), `failurePolicy: Fail` where the template names none, and owned by the
//! Istio namespace so that removing the namespace removes it. It is written once the webhook
//! server is up, rewritten whenever the template or the CA changes or someone else edits or
//! deletes it, retried every second after a failure, and deleted instead when validation is
//! off. Only the fields Galley sets are compared, so the API server's defaults do not cause
//! endless rewrites. When Galley shuts down it deregisters the configuration, so that a cluster
//! without a running Galley does not refuse Istio config for want of a webhook; another
//! replica still running sees the deletion and registers it again at once.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{ValidatingWebhook, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::metrics::{ErrorLabel, Metrics};

/// How long after a failed write the next try comes (1.4's `retryUpdateAfterFailureTimeout`).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often the template and CA files are looked at.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Where the webhook configuration comes from and what it is called.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The ValidatingWebhookConfiguration template (YAML).
    pub config_file: PathBuf,
    /// The CA certificate (PEM) that signed the webhook's serving certificate.
    pub ca_cert_file: PathBuf,
    /// The namespace that owns the configuration (Galley's own).
    pub namespace: String,
    /// The configuration's name (`istio-galley`).
    pub webhook_name: String,
    /// Validation on: keep the configuration; off: delete it.
    pub enabled: bool,
}

/// Why the desired configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistrationError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// The CA bundle: the PEM, checked to hold X.509 certificates only.
pub(crate) fn ca_bundle(pem: &[u8], file: &str) -> Result<Vec<u8>, RegistrationError> {
    let failed = |message: String| RegistrationError::File { file: file.to_string(), message };
    let mut found = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|error| failed(format!("not PEM: {error}")))?;
        if block.label != "CERTIFICATE" {
            return Err(failed(format!("ca bundle contains wrong pem type: {:?}", block.label)));
        }
        block.parse_x509().map_err(|error| failed(format!("ca bundle contains invalid x509 certificate: {error}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(failed("no certificate in the CA bundle".to_string()));
    }
    Ok(pem.to_vec())
}

/// The configuration Galley wants: the template with the CA bundle, default failure policy
/// and owner filled in.
pub(crate) fn desired(
    template: &str,
    template_file: &str,
    ca: &[u8],
    owner: Option<OwnerReference>,
) -> Result<ValidatingWebhookConfiguration, RegistrationError> {
    let failed = |message: String| RegistrationError::File { file: template_file.to_string(), message };
    let value: serde_json::Value = serde_yaml::from_str(template).map_err(|error| failed(error.to_string()))?;
    if value["apiVersion"] != "admissionregistration.k8s.io/v1" || value["kind"] != "ValidatingWebhookConfiguration" {
        return Err(failed(format!(
            "expected an admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration, found {} {}",
            value["apiVersion"], value["kind"]
        )));
    }
    let mut configuration: ValidatingWebhookConfiguration =
        serde_json::from_value(value).map_err(|error| failed(format!("could not decode it: {error}")))?;
    for webhook in configuration.webhooks.iter_mut().flatten() {
        webhook.failure_policy.get_or_insert_with(|| "Fail".to_string());
        webhook.client_config.ca_bundle = Some(ByteString(ca.to_vec()));
    }
    configuration.metadata.owner_references = owner.map(|owner| vec![owner]);
    Ok(configuration)
}

/// What of a webhook Galley decides, with the API server's defaults applied to both sides.
fn essentials(webhook: &ValidatingWebhook) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = webhook
        .rules
        .iter()
        .flatten()
        .map(|rule| {
            json!({"operations": rule.operations, "apiGroups": rule.api_groups, "apiVersions": rule.api_versions,
                   "resources": rule.resources, "scope": rule.scope.clone().unwrap_or_else(|| "*".to_string())})
        })
        .collect();
    let service = webhook.client_config.service.as_ref().map(|service| {
        json!({"name": service.name, "namespace": service.namespace, "path": service.path,
               "port": service.port.unwrap_or(443)})
    });
    json!({
        "name": webhook.name,
        "url": webhook.client_config.url,
        "service": service,
        "caBundle": webhook.client_config.ca_bundle.as_ref().map(|bundle| base64::engine::general_purpose::STANDARD.encode(&bundle.0)),
        "rules": rules,
        "failurePolicy": webhook.failure_policy.clone().unwrap_or_else(|| "Fail".to_string()),
        "sideEffects": webhook.side_effects,
    })
}

/// Whether the cluster's configuration already says what Galley wants.
pub(crate) fn same(current: &ValidatingWebhookConfiguration, wanted: &ValidatingWebhookConfiguration) -> bool {
    let hooks = |configuration: &ValidatingWebhookConfiguration| -> Vec<serde_json::Value> {
        configuration.webhooks.iter().flatten().map(essentials).collect()
    };
    hooks(current) == hooks(wanted) && current.metadata.owner_references == wanted.metadata.owner_references
}

/// Creates the configuration, or replaces what differs from `wanted`.
pub(crate) async fn reconcile_once(
    api: &Api<ValidatingWebhookConfiguration>,
    wanted: &ValidatingWebhookConfiguration,
) -> Result<Outcome, kube::Error> {
    let name = wanted.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), wanted).await?;
            Ok(Outcome::Created)
        }
        Some(current) if same(&current, wanted) => Ok(Outcome::Unchanged),
        Some(current) => {
            let mut updated = current.clone();
            updated.webhooks = wanted.webhooks.clone();
            updated.metadata.owner_references = wanted.metadata.owner_references.clone();
            if let Some(labels) = &wanted.metadata.labels {
                updated.metadata.labels.get_or_insert_with(Default::default).extend(labels.clone());
            }
            // The resource version read above makes a concurrent edit a 409, retried later.
            api.replace(&name, &PostParams::default(), &updated).await?;
            Ok(Outcome::Updated)
        }
    }
}

/// Deletes the configuration; true if there was one.
pub(crate) async fn delete(api: &Api<ValidatingWebhookConfiguration>, name: &str) -> Result<bool, kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// The Istio namespace as the configuration's controlling owner, if it can be read.
async fn namespace_owner(client: &Client, namespace: &str) -> Option<OwnerReference> {
    match Api::<Namespace>::all(client.clone()).get(namespace).await {
        Ok(found) => Some(OwnerReference {
            api_version: "v1".to_string(),
            kind: "Namespace".to_string(),
            name: namespace.to_string(),
            uid: found.metadata.uid.unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }),
        Err(error) => {
            tracing::warn!(%error, "could not find the {namespace} namespace to own the validatingwebhookconfiguration; it must be deleted by hand");
            None
        }
    }
}

fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.reason.clone(),
        other => other.to_string(),
    }
}

/// Reads both files; None (and a load error counted) when either cannot be used.
fn load(
    registration: &Registration,
    owner: &Option<OwnerReference>,
    metrics: &Metrics,
) -> Option<ValidatingWebhookConfiguration> {
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|error| RegistrationError::File { file: path.display().to_string(), message: error.to_string() })
    };
    let built = read(&registration.config_file).and_then(|template| {
        let ca = ca_bundle(&read(&registration.ca_cert_file)?, &registration.ca_cert_file.display().to_string())?;
        let text = String::from_utf8_lossy(&template);
        desired(&text, &registration.config_file.display().to_string(), &ca, owner.clone())
    });
    match built {
        Ok(mut configuration) => {
            configuration.metadata.name = Some(registration.webhook_name.clone());
            metrics.validation_config_load.inc();
            Some(configuration)
        }
        Err(error) => {
            tracing::error!(%error, "validatingwebhookconfiguration (re)load failed");
            metrics.validation_config_load_error.get_or_create(&ErrorLabel { error: error.to_string() }).inc();
            None
        }
    }
}

/// How long deregistering may take at shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the configuration in place (or deleted) until `shutdown`, then deregisters it.
pub(crate) async fn run(
    client: Client,
    registration: Registration,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let owner = namespace_owner(&client, &registration.namespace).await;
    let watched = watcher::Config::default().fields(&format!("metadata.name={}", registration.webhook_name));
    let mut changes = watcher(api.clone(), watched).boxed();
    let mut files = tokio::time::interval(FILE_POLL);
    let mut last_files: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut wanted = None;
    let mut retry_at: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                if registration.enabled {
                    deregister(&api, &registration.webhook_name).await;
                }
                return;
            }
            () = istio_runtime::backoff::until(retry_at) => {}
            change = changes.next() => {
                // Someone else's edit or delete (or the watch restarting): look again.
                if let Some(Err(error)) = change {
                    tracing::debug!(%error, "watching the validatingwebhookconfiguration");
                }
            }
            _ = files.tick() => {
                let current = (
                    std::fs::read(&registration.config_file).unwrap_or_default(),
                    std::fs::read(&registration.ca_cert_file).unwrap_or_default(),
                );
                if last_files.as_ref() == Some(&current) {
                    continue;
                }
                last_files = Some(current);
                wanted = None;
            }
        }
        retry_at = None;
        if !registration.enabled {
            match delete(&api, &registration.webhook_name).await {
                Ok(deleted) => {
                    if deleted {
                        tracing::info!("deleted validatingwebhookconfiguration {}", registration.webhook_name);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "{} validatingwebhookconfiguration delete failed", registration.webhook_name);
                    metrics.validation_config_delete_error.get_or_create(&ErrorLabel { error: reason(&error) }).inc();
                    retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER_FAILURE);
                }
            }
            continue;
        }
        if wanted.is_none() {
            wanted = load(&registration, &owner, &metrics);
        }
        let Some(configuration) = &wanted else { continue };
        match reconcile_once(&api, configuration).await {
            Ok(Outcome::Unchanged) => {}
            Ok(outcome) => {
                tracing::info!(?outcome, "{} validatingwebhookconfiguration updated", registration.webhook_name);
                metrics.validation_config_updates.inc();
            }
            Err(error) => {
                tracing::error!(%error, "{} validatingwebhookconfiguration update failed; retrying every {RETRY_AFTER_FAILURE:?}", registration.webhook_name);
                metrics.validation_config_update_error.get_or_create(&ErrorLabel { error: reason(&error) }).inc();
                retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER_FAILURE);
            }
        }
    }
}

/// Deletes the configuration at shutdown, within [`DEREGISTER_TIMEOUT`].
async fn deregister(api: &Api<ValidatingWebhookConfiguration>, name: &str) {
    match tokio::time::timeout(DEREGISTER_TIMEOUT, delete(api, name)).await {
        Ok(Ok(_)) => tracing::info!("deregistered validatingwebhookconfiguration {name}"),
        Ok(Err(error)) => tracing::warn!(%error, "could not deregister validatingwebhookconfiguration {name}"),
        Err(_) => tracing::warn!("deregistering validatingwebhookconfiguration {name} timed out"),
    }
}

#[cfg(test)]
#[path = "registration/tests.rs"]
mod tests;
