//! `istioctl manifest apply` on a cluster, as 1.4's did it but with server-side apply instead of
//! `kubectl apply`: the `Base` component first (the namespace, then the CRDs, waiting until the
//! API server has established them), then every other component, each object applied with field
//! manager `istioctl` and labelled with its component and version (1.4's
//! `operator.istio.io/component`, `…/managed`, `…/version`); objects an earlier apply made that
//! the installation no longer has are pruned (never the namespace or CRDs, which hold the user's
//! config); then it waits until the Deployments and DaemonSets are ready, printing progress.
//! Conflicts, throttling, server errors and dropped connections are retried; a request the
//! user's account may not make is reported with the right it lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use istio_manifest::{object_key, Manifest};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The label naming an object's component; pruning selects on it.
pub(crate) const COMPONENT_LABEL: &str = "operator.istio.io/component";
const MANAGED_LABEL: &str = "operator.istio.io/managed";
const VERSION_LABEL: &str = "operator.istio.io/version";
const FIELD_MANAGER: &str = "istioctl";
/// How long the API server gets to establish the CRDs.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPTS: u32 = 6;

/// How `manifest apply` runs.
pub(crate) struct ApplyOptions {
    /// Server-side dry run: the API server checks every object and stores nothing.
    pub dry_run: bool,
    /// Wait for the Deployments and DaemonSets to be ready.
    pub wait: bool,
    pub readiness_timeout: Duration,
    /// Retries back off from this delay.
    pub retry_delay: Duration,
}

/// The API resource (group, version, plural, scope) of each kind an installation applies.
pub(crate) struct Resources {
    custom: BTreeMap<(String, String), ApiResource>,
}

impl Resources {
    /// Istio's own kinds take their plurals from the CRDs being applied; Kubernetes' kinds
    /// follow the API's regular plurals.
    pub(crate) fn new<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Resources {
        let mut custom = BTreeMap::new();
        for crd in objects.into_iter().filter(|object| object["kind"] == "CustomResourceDefinition") {
            let spec = &crd["spec"];
            let group = spec["group"].as_str().unwrap_or_default();
            let kind = spec["names"]["kind"].as_str().unwrap_or_default();
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            for version in spec["versions"].as_array().into_iter().flatten() {
                let version = version["name"].as_str().unwrap_or_default();
                let gvk = GroupVersionKind::gvk(group, version, kind);
                custom.insert(
                    (format!("{group}/{version}"), kind.to_string()),
                    ApiResource::from_gvk_with_plural(&gvk, plural),
                );
            }
        }
        Resources { custom }
    }

    pub(crate) fn of(&self, object: &Value) -> ApiResource {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        if let Some(resource) = self.custom.get(&(api_version.to_string(), kind.to_string())) {
            return resource.clone();
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
    }

    fn is_custom(&self, object: &Value) -> bool {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        self.custom.contains_key(&(api_version.to_string(), kind.to_string()))
    }
}

pub(crate) fn api_for(client: &Client, resource: &ApiResource, object: &Value) -> Api<DynamicObject> {
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Adds 1.4's operator labels to an object.
fn labelled(manifest: &Manifest, version: &str) -> Value {
    let mut object = manifest.object.clone();
    let metadata = &mut object["metadata"];
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    let labels = &mut metadata["labels"];
    labels[COMPONENT_LABEL] = json!(manifest.component);
    labels[MANAGED_LABEL] = json!("Reconcile");
    labels[VERSION_LABEL] = json!(version);
    object
}

pub(crate) fn display(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Whether a failed request is worth repeating: a conflict, throttling, a server error, a
/// dropped connection, or (for Istio's kinds, just after their CRDs) a not-yet-served resource.
fn retryable(error: &kube::Error, custom_kind: bool) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.is_conflict()
                || matches!(status.code, 429 | 500 | 502 | 503 | 504)
                || (custom_kind && status.is_not_found())
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// A failed request in words; a refusal names the right the account lacks.
fn explain(error: &kube::Error, verb: &str, object: &Value, resource: &ApiResource) -> anyhow::Error {
    if let kube::Error::Api(status) = error {
        if status.is_forbidden() {
            let scope = match object["metadata"]["namespace"].as_str() {
                Some(namespace) => format!("in namespace {namespace}"),
                None => "at the cluster scope".to_string(),
            };
            let group = if resource.group.is_empty() { "\"\" (core)".to_string() } else { resource.group.clone() };
            // Server-side apply is a patch to RBAC.
            let right = if verb == "apply" { "patch" } else { verb };
            return anyhow::anyhow!(
                "{verb} {} was refused (403 Forbidden): {}\n  the kubeconfig's account needs the right to {right} {} in API group {group} {scope}; \
                 installing Istio needs cluster-admin, as it did in 1.4",
                display(object),
                status.message,
                resource.plural
            );
        }
        return anyhow::anyhow!("{verb} {}: {} ({} {})", display(object), status.message, status.code, status.reason);
    }
    anyhow::anyhow!("{verb} {}: {error}", display(object))
}

/// Runs `request` until it succeeds, fails for good, or runs out of attempts.
async fn with_retries<T, F, Fut>(options: &ApplyOptions, custom_kind: bool, mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = options.retry_delay;
    let mut attempt = 1;
    loop {
        match request().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < ATTEMPTS && retryable(&error, custom_kind) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Server-side applies one object. In a dry run an object of Istio's kinds whose CRD is not
/// installed yet cannot be checked; that is answered `Ok(false)` so the caller can say so.
async fn apply_object(
    client: &Client,
    resources: &Resources,
    object: &Value,
    options: &ApplyOptions,
) -> anyhow::Result<bool> {
    let resource = resources.of(object);
    let api = api_for(client, &resource, object);
    let name = object["metadata"]["name"].as_str().context("an object without a name")?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = options.dry_run;
    let patch = Patch::Apply(object);
    let custom = resources.is_custom(object);
    if options.dry_run && custom {
        return match api.patch(name, &params, &patch).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
            Err(error) => Err(explain(&error, "apply", object, &resource)),
        };
    }
    with_retries(options, custom, || api.patch(name, &params, &patch))
        .await
        .map_err(|error| explain(&error, "apply", object, &resource))?;
    Ok(true)
}

/// Polls the CRDs until the API server reports each Established (or its names rejected).
async fn wait_for_crds(client: &Client, crds: &[&Value], options: &ApplyOptions) -> anyhow::Result<()> {
    if options.dry_run || crds.is_empty() {
        return Ok(());
    }
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition")),
    );
    let deadline = Instant::now() + CRD_TIMEOUT;
    let mut waiting: BTreeSet<String> =
        crds.iter().filter_map(|crd| crd["metadata"]["name"].as_str().map(str::to_string)).collect();
    while !waiting.is_empty() {
        for name in waiting.clone() {
            let crd =
                with_retries(options, false, || api.get(&name)).await.with_context(|| format!("reading CRD {name}"))?;
            let conditions = crd.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let condition = |kind: &str| conditions.iter().find(|condition| condition["type"] == kind).cloned();
            if condition("NamesAccepted").is_some_and(|accepted| accepted["status"] == "False") {
                let message = condition("NamesAccepted").map(|c| c["message"].to_string()).unwrap_or_default();
                bail!("the API server refused the names of CRD {name}: {message}");
            }
            if condition("Established").is_some_and(|established| established["status"] == "True") {
                waiting.remove(&name);
            }
        }
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "CRDs not established within {CRD_TIMEOUT:?}: {}",
                waiting.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Applies one component's objects in order; `Base` applies its namespace, then its CRDs
/// (and waits for them), then the rest. Returns how many objects a dry run could not check.
async fn apply_component(
    client: &Client,
    resources: &Resources,
    objects: &[Value],
    options: &ApplyOptions,
) -> anyhow::Result<usize> {
    let mut unchecked = 0;
    for namespace in objects.iter().filter(|object| object["kind"] == "Namespace") {
        apply_object(client, resources, namespace, options).await?;
    }
    let crds: Vec<&Value> = objects.iter().filter(|object| object["kind"] == "CustomResourceDefinition").collect();
    for crd in &crds {
        apply_object(client, resources, crd, options).await?;
    }
    wait_for_crds(client, &crds, options).await?;
    for object in
        objects.iter().filter(|object| object["kind"] != "Namespace" && object["kind"] != "CustomResourceDefinition")
    {
        if !apply_object(client, resources, object, options).await? {
            unchecked += 1;
        }
    }
    Ok(unchecked)
}

/// Applies an installation; prints progress through `say` and returns whether every
/// component was applied (and, with `wait`, became ready).
pub(crate) async fn apply(
    client: &Client,
    manifests: &[Manifest],
    version: &str,
    options: &ApplyOptions,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<bool> {
    let resources = Resources::new(manifests.iter().map(|manifest| &manifest.object));
    let mut components: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for manifest in manifests {
        let object = labelled(manifest, version);
        match components.iter_mut().find(|(component, _)| *component == manifest.component) {
            Some((_, objects)) => objects.push(object),
            None => components.push((manifest.component, vec![object])),
        }
    }
    // Base (the namespace and the CRDs) first: everything else needs it.
    components.sort_by_key(|(component, _)| *component != "Base");
    let mut failed = false;
    for (component, objects) in &components {
        say(&format!("- Applying manifest for component {component}..."));
        match apply_component(client, &resources, objects, options).await {
            Ok(unchecked) => {
                if unchecked > 0 {
                    say(&format!("  dry run: {unchecked} objects of Istio's kinds not checked (their CRDs are not installed yet)"));
                }
                say(&format!("✔ Finished applying manifest for component {component}."));
            }
            Err(error) => {
                say(&format!("✘ Finished applying manifest for component {component}."));
                say(&format!("\nComponent {component} - manifest apply returned the following errors:"));
                say(&format!("Error: {error:#}\n"));
                failed = true;
                if *component == "Base" {
                    break;
                }
            }
        }
    }
    if failed {
        say("\n\n✘ Errors were logged during apply operation. Please check component installation logs above.");
        return Ok(false);
    }
    let applied: BTreeSet<String> = components.iter().flat_map(|(_, objects)| objects.iter().map(object_key)).collect();
    let kinds: Vec<&Value> = unique_kinds(&components);
    if let Err(error) = prune(client, &resources, &kinds, &applied, options, say).await {
        say(&format!("Error: {error:#}"));
        say("\n\n✘ Errors were logged during apply operation. Please check component installation logs above.");
        return Ok(false);
    }
    if options.wait {
        let workloads: Vec<&Value> = components
            .iter()
            .flat_map(|(_, objects)| objects.iter())
            .filter(|object| object["kind"] == "Deployment" || object["kind"] == "DaemonSet")
            .collect();
        if let Err(error) = wait_until_ready(client, &workloads, options, say).await {
            say(&format!("Failed to wait for resources ready: {error:#}"));
            say("\n\n✘ Errors were logged during apply operation. Please check component installation logs above.");
            return Ok(false);
        }
    }
    say("\n\n✔ Installation complete");
    Ok(true)
}

/// One object of each kind applied (its apiVersion and kind stand for the resource).
fn unique_kinds<'a>(components: &'a [(&'static str, Vec<Value>)]) -> Vec<&'a Value> {
    let mut seen = BTreeSet::new();
    components
        .iter()
        .flat_map(|(_, objects)| objects.iter())
        .filter(|object| seen.insert((object["apiVersion"].to_string(), object["kind"].to_string())))
        .collect()
}

/// Deletes what an earlier apply labelled and this one no longer has: a disabled component's
/// objects, or an object a component dropped. Namespaces and CRDs are kept, as 1.4 kept them.
async fn prune(
    client: &Client,
    resources: &Resources,
    kinds: &[&Value],
    applied: &BTreeSet<String>,
    options: &ApplyOptions,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let mut stale: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for sample in kinds {
        if sample["kind"] == "Namespace" || sample["kind"] == "CustomResourceDefinition" {
            continue;
        }
        let resource = resources.of(sample);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let labelled = ListParams::default().labels(COMPONENT_LABEL);
        let listed = match with_retries(options, false, || api.list(&labelled)).await {
            Ok(listed) => listed,
            // A kind the cluster does not serve (a dry run's CRDs) has nothing to prune.
            Err(kube::Error::Api(status)) if status.is_not_found() => continue,
            Err(error) => {
                return Err(explain(&error, "list", &json!({"kind": resource.plural, "metadata": {}}), &resource))
            }
        };
        for item in listed.items {
            let mut object = serde_json::to_value(&item).context("reading a listed object")?;
            object["apiVersion"] = json!(resource.api_version);
            object["kind"] = json!(resource.kind);
            let component = object["metadata"]["labels"][COMPONENT_LABEL].as_str().unwrap_or_default().to_string();
            if component != "Base" && !applied.contains(&object_key(&object)) {
                stale.entry(component).or_default().push(object);
            }
        }
    }
    for (component, objects) in stale {
        say(&format!("- Pruning objects for component {component}..."));
        for object in &objects {
            let resource = resources.of(object);
            let api = api_for(client, &resource, object);
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let params = DeleteParams { dry_run: options.dry_run, ..DeleteParams::background() };
            match with_retries(options, false, || api.delete(name, &params)).await {
                Ok(_) => say(&format!("  pruned {}", display(object))),
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(explain(&error, "delete", object, &resource)),
            }
        }
        say(&format!("✔ Finished pruning objects for component {component}."));
    }
    Ok(())
}

/// Why a Deployment has not rolled out yet, by 1.4's `verify-install` rules; None once it has.
pub(crate) fn deployment_progress(deployment: &Deployment) -> Option<String> {
    let status = deployment.status.clone().unwrap_or_default();
    let wanted = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Some("the deployment controller has not seen the new spec yet".to_string());
    }
    let conditions = status.conditions.unwrap_or_default();
    if conditions.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Some("exceeded its progress deadline".to_string());
    }
    if updated < wanted {
        return Some(format!("{updated} out of {wanted} new replicas have been updated"));
    }
    let total = status.replicas.unwrap_or(0);
    if total > updated {
        return Some(format!("{} old replicas are pending termination", total - updated));
    }
    if available < updated {
        return Some(format!("{available} of {updated} updated replicas are available"));
    }
    None
}

/// Why a DaemonSet is not ready yet; None once it is.
pub(crate) fn daemon_set_progress(daemon_set: &DaemonSet) -> Option<String> {
    let status = daemon_set.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < daemon_set.metadata.generation.unwrap_or(0) {
        return Some("the daemon set controller has not seen the new spec yet".to_string());
    }
    if status.number_ready < status.desired_number_scheduled {
        return Some(format!("{} of {} pods are ready", status.number_ready, status.desired_number_scheduled));
    }
    None
}

/// Polls the workloads until all are ready, saying which are not (once per change).
async fn wait_until_ready(
    client: &Client,
    workloads: &[&Value],
    options: &ApplyOptions,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    if options.dry_run {
        say("Not waiting for resources ready in dry run mode.");
        return Ok(());
    }
    say(&format!(
        "Waiting for resources ready with timeout of {}",
        humantime::format_duration(options.readiness_timeout)
    ));
    let deadline = Instant::now() + options.readiness_timeout;
    let mut last_said: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut not_ready = BTreeMap::new();
        for workload in workloads {
            let namespace = workload["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = workload["metadata"]["name"].as_str().unwrap_or_default();
            let progress = if workload["kind"] == "Deployment" {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                let deployment = with_retries(options, false, || api.get(name))
                    .await
                    .map_err(|error| explain(&error, "get", workload, &ApiResource::erase::<Deployment>(&())))?;
                deployment_progress(&deployment)
            } else {
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
                let daemon_set = with_retries(options, false, || api.get(name))
                    .await
                    .map_err(|error| explain(&error, "get", workload, &ApiResource::erase::<DaemonSet>(&())))?;
                daemon_set_progress(&daemon_set)
            };
            let label = format!("{} {namespace}/{name}", workload["kind"].as_str().unwrap_or_default());
            match progress {
                None => {
                    if last_said.remove(&label).is_some() {
                        say(&format!("  ✔ {label} is ready"));
                    }
                }
                Some(reason) => {
                    not_ready.insert(label, reason);
                }
            }
        }
        for (label, reason) in &not_ready {
            if last_said.get(label) != Some(reason) {
                say(&format!("  {label} is not ready: {reason}"));
                last_said.insert(label.clone(), reason.clone());
            }
        }
        if not_ready.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {}: {}", humantime::format_duration(options.readiness_timeout), {
                not_ready.keys().cloned().collect::<Vec<_>>().join(", ")
            });
        }
        tokio::time::sleep(Duration::from_secs(1).min(options.readiness_timeout / 10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta { generation: Some(2), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(status),
        }
    }

    #[test]
    fn a_deployment_is_ready_when_1_4_would_say_so() {
        let ready = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        };
        assert_eq!(deployment_progress(&deployment(2, ready.clone())), None);
        let unseen = DeploymentStatus { observed_generation: Some(1), ..ready.clone() };
        assert!(deployment_progress(&deployment(2, unseen)).is_some());
        let rolling = DeploymentStatus { updated_replicas: Some(1), ..ready.clone() };
        assert_eq!(
            deployment_progress(&deployment(2, rolling)),
            Some("1 out of 2 new replicas have been updated".into())
        );
        let old = DeploymentStatus { replicas: Some(3), ..ready.clone() };
        assert_eq!(deployment_progress(&deployment(2, old)), Some("1 old replicas are pending termination".into()));
        let unavailable = DeploymentStatus { available_replicas: Some(0), ..ready };
        assert_eq!(
            deployment_progress(&deployment(2, unavailable)),
            Some("0 of 2 updated replicas are available".into())
        );
    }

    #[test]
    fn objects_carry_the_component_labels() {
        let manifest =
            Manifest { component: "Pilot", object: json!({"kind": "Service", "metadata": {"name": "istio-pilot"}}) };
        let object = labelled(&manifest, "1.4.6");
        assert_eq!(object["metadata"]["labels"][COMPONENT_LABEL], "Pilot");
        assert_eq!(object["metadata"]["labels"][MANAGED_LABEL], "Reconcile");
        assert_eq!(object["metadata"]["labels"][VERSION_LABEL], "1.4.6");
    }

    #[test]
    fn istio_kinds_take_their_plural_from_the_crds() {
        let crds = istio_manifest::crds();
        let resources = Resources::new(&crds);
        let policy = json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy"});
        assert_eq!(resources.of(&policy).plural, "meshpolicies");
        assert!(resources.is_custom(&policy));
        let handler = json!({"apiVersion": "config.istio.io/v1alpha2", "kind": "handler"});
        assert_eq!(resources.of(&handler).plural, "handlers");
        let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"});
        assert_eq!(resources.of(&hpa).plural, "horizontalpodautoscalers");
        assert_eq!(resources.of(&hpa).group, "autoscaling");
        assert!(!resources.is_custom(&hpa));
    }
}
