//! The object store behind the scripted API server: get, list (with label selectors, in a
//! namespace or across all), server-side apply (`PATCH` as `application/apply-patch+yaml`, with
//! `fieldManager`, `force` and `dryRun`), and delete, for any resource path. It plays the
//! controllers a real cluster runs just enough for an installer: a CRD becomes Established, and
//! Deployments and DaemonSets report ready, after a scripted number of reads; the resources of
//! a custom group are served only once a CRD for them is established (so applying in the wrong
//! order fails as it would). A `Script` adds the failures an installer must survive or report:
//! refused verbs (403), conflicts (409) the first few times, Deployments that never get ready.

use std::collections::{BTreeMap, BTreeSet};

use hyper::StatusCode;
use serde_json::{json, Value};

/// API groups a bare API server serves without CRDs.
const BUILT_IN_GROUPS: [&str; 9] = [
    "",
    "apps",
    "rbac.authorization.k8s.io",
    "policy",
    "autoscaling",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "networking.k8s.io",
    "authorization.k8s.io",
];

/// Failures and timings the fake cluster plays.
#[derive(Clone, Debug)]
pub struct Script {
    /// `(verb, plural)` pairs answered 403 (`("patch", "clusterroles")`); verbs are `get`,
    /// `list`, `patch`, `delete`.
    pub forbidden: Vec<(String, String)>,
    /// `plural/name` → how many applies are answered 409 before one succeeds.
    pub conflicts: BTreeMap<String, u32>,
    /// Deployments (`namespace/name`) that never become ready.
    pub stuck: Vec<String>,
    /// Reads of a CRD, Deployment or DaemonSet before it is established or ready.
    pub reads_until_ready: u32,
}

impl Default for Script {
    fn default() -> Script {
        Script { forbidden: Vec::new(), conflicts: BTreeMap::new(), stuck: Vec::new(), reads_until_ready: 2 }
    }
}

/// Where a request points: `/api/v1/…` or `/apis/GROUP/VERSION/…`, then an optional
/// `namespaces/NS/`, a plural and an optional name.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
}

impl ResourcePath {
    /// Parses a request path; None for paths that are not resources.
    pub fn parse(path: &str) -> Option<ResourcePath> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, plural, name) = match rest {
            [plural] => (None, *plural, None),
            ["namespaces", namespace, plural] => (Some(*namespace), *plural, None),
            ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name)),
            [plural, name] => (None, *plural, Some(*name)),
            _ => return None,
        };
        Some(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.map(str::to_string),
            plural: plural.to_string(),
            name: name.map(str::to_string),
        })
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    reads: u32,
}

/// Objects by (group, plural, namespace, name).
type Key = (String, String, String, String);

/// The fake cluster's objects.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<Key, Stored>,
    script: Script,
    resource_version: u64,
    conflicts_left: BTreeMap<String, u32>,
}

fn status(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
               "reason": reason, "code": code.as_u16()}),
    )
}

/// Equality (`a=b`, `a==b`), inequality (`a!=b`), existence (`a`) and absence (`!a`) terms.
fn selector_matches(labels: &Value, selector: &str) -> bool {
    selector.split(',').map(str::trim).filter(|term| !term.is_empty()).all(|term| {
        let label = |key: &str| labels.get(key.trim()).and_then(Value::as_str).map(str::to_string);
        if let Some((key, value)) = term.split_once("!=") {
            label(key).as_deref() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once('=') {
            label(key).as_deref() == Some(value.trim_start_matches('=').trim())
        } else if let Some(key) = term.strip_prefix('!') {
            label(key).is_none()
        } else {
            label(term).is_some()
        }
    })
}

impl Store {
    pub fn new(script: Script) -> Store {
        let conflicts_left = script.conflicts.clone();
        Store { script, conflicts_left, ..Store::default() }
    }

    /// Every stored object, for a test to look at.
    pub fn objects(&self) -> Vec<Value> {
        self.objects.values().map(|stored| stored.object.clone()).collect()
    }

    fn forbidden(&self, verb: &str, path: &ResourcePath) -> Option<(StatusCode, Value)> {
        if !self.script.forbidden.iter().any(|(v, plural)| v == verb && *plural == path.plural) {
            return None;
        }
        let group = if path.group.is_empty() { String::new() } else { format!(".{}", path.group) };
        let scope = match &path.namespace {
            Some(namespace) => format!("in the namespace \"{namespace}\""),
            None => "at the cluster scope".to_string(),
        };
        let name = path.name.clone().unwrap_or_default();
        Some(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{}{group} \"{name}\" is forbidden: User \"fake\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                path.plural, path.plural, path.group
            ),
        ))
    }

    /// The established CRD serving a custom resource path (its version served).
    fn crd_for(&self, path: &ResourcePath) -> Option<&Value> {
        self.objects.values().map(|stored| &stored.object).find(|crd| {
            crd["kind"] == "CustomResourceDefinition"
                && crd["spec"]["group"] == path.group.as_str()
                && crd["spec"]["names"]["plural"] == path.plural.as_str()
                && crd["spec"]["versions"].as_array().is_some_and(|versions| {
                    versions.iter().any(|v| v["name"] == path.version.as_str() && v["served"] == true)
                })
                && crd["status"]["conditions"].as_array().is_some_and(|conditions| {
                    conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True")
                })
        })
    }

    /// A custom group's resource is served once an established CRD defines it.
    fn served(&self, path: &ResourcePath) -> bool {
        BUILT_IN_GROUPS.contains(&path.group.as_str()) || self.crd_for(path).is_some()
    }

    /// What the API server would refuse in a custom resource, by its CRD.
    fn schema_violation(&self, path: &ResourcePath, object: &Value) -> Option<String> {
        let crd = self.crd_for(path)?;
        if object["kind"] != crd["spec"]["names"]["kind"] {
            return Some(format!("kind {} is not the CRD's {}", object["kind"], crd["spec"]["names"]["kind"]));
        }
        let namespaced = crd["spec"]["scope"] == "Namespaced";
        if namespaced != path.namespace.is_some() {
            return Some(format!("the resource is {}", if namespaced { "namespaced" } else { "cluster-scoped" }));
        }
        let version = crd["spec"]["versions"].as_array()?.iter().find(|v| v["name"] == path.version.as_str())?;
        let schema = &version["schema"]["openAPIV3Schema"];
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return None;
        }
        let known = ["apiVersion", "kind", "metadata", "spec", "status"];
        for field in object.as_object()?.keys() {
            if !known.contains(&field.as_str()) && schema["properties"].get(field).is_none() {
                return Some(format!(".{field}: field not declared in schema"));
            }
        }
        if schema["properties"]["spec"]["type"] == "object" && !object["spec"].is_object() && !object["spec"].is_null()
        {
            return Some(".spec: expected an object".to_string());
        }
        None
    }

    fn key(path: &ResourcePath, name: &str) -> Key {
        (path.group.clone(), path.plural.clone(), path.namespace.clone().unwrap_or_default(), name.to_string())
    }

    /// Answers one resource request.
    pub fn handle(&mut self, method: &str, path: &ResourcePath, query: &str, body: &[u8]) -> (StatusCode, Value) {
        let verb = match (method, &path.name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            ("POST", None) if path.plural == "selfsubjectaccessreviews" => return self.review_access(body),
            _ => {
                return status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{method} not supported here"),
                )
            }
        };
        if let Some(refused) = self.forbidden(verb, path) {
            return refused;
        }
        if !self.served(path) {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".into(),
            );
        }
        let name = path.name.clone().unwrap_or_default();
        match verb {
            "get" => self.get(path, &name),
            "list" => self.list(path, query),
            "patch" => self.apply(path, &name, query, body),
            _ => self.delete(path, &name, query),
        }
    }

    /// A SelfSubjectAccessReview: allowed unless the script forbids the verb on the resource.
    fn review_access(&self, body: &[u8]) -> (StatusCode, Value) {
        let mut review: Value = serde_json::from_slice(body).unwrap_or_default();
        let attributes = &review["spec"]["resourceAttributes"];
        let verb = attributes["verb"].as_str().unwrap_or_default();
        let resource = attributes["resource"].as_str().unwrap_or_default();
        let allowed =
            !self.script.forbidden.iter().any(|(v, plural)| (v == verb || v == "patch") && plural == resource);
        review["status"] = json!({"allowed": allowed});
        (StatusCode::CREATED, review)
    }

    fn not_found(path: &ResourcePath, name: &str) -> (StatusCode, Value) {
        status(StatusCode::NOT_FOUND, "NotFound", format!("{}.{} \"{name}\" not found", path.plural, path.group))
    }

    fn get(&mut self, path: &ResourcePath, name: &str) -> (StatusCode, Value) {
        let reads_until_ready = self.script.reads_until_ready;
        let stuck = self.script.stuck.clone();
        let Some(stored) = self.objects.get_mut(&Store::key(path, name)) else {
            return Store::not_found(path, name);
        };
        stored.reads += 1;
        if stored.reads >= reads_until_ready {
            let label = format!("{}/{name}", path.namespace.clone().unwrap_or_default());
            become_ready(&mut stored.object, stuck.contains(&label));
        }
        (StatusCode::OK, stored.object.clone())
    }

    fn list(&self, path: &ResourcePath, query: &str) -> (StatusCode, Value) {
        let selector = query_value(query, "labelSelector").unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((group, plural, namespace, _), _)| {
                *group == path.group
                    && *plural == path.plural
                    && path.namespace.as_ref().is_none_or(|ns| ns == namespace)
            })
            .map(|(_, stored)| &stored.object)
            .filter(|object| selector_matches(&object["metadata"]["labels"], &selector))
            .cloned()
            .collect();
        let kind = items.first().and_then(|item| item["kind"].as_str()).unwrap_or("Object").to_string();
        (
            StatusCode::OK,
            json!({"apiVersion": path.api_version(), "kind": format!("{kind}List"),
                   "metadata": {"resourceVersion": self.resource_version.to_string()}, "items": items}),
        )
    }

    fn apply(&mut self, path: &ResourcePath, name: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
        if query_value(query, "fieldManager").is_none_or(|manager| manager.is_empty()) {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "PATCH of type apply requires fieldManager".into());
        }
        let parsed: Result<Value, String> = serde_json::from_slice(body)
            .or_else(|_| serde_yaml::from_slice(body))
            .map_err(|error: serde_yaml::Error| error.to_string());
        let mut object = match parsed {
            Ok(object) => object,
            Err(error) => {
                return status(StatusCode::BAD_REQUEST, "BadRequest", format!("error decoding the body: {error}"))
            }
        };
        if object["metadata"]["name"] != name
            || object["apiVersion"] != path.api_version().as_str()
            || object["metadata"]["namespace"].as_str() != path.namespace.as_deref()
        {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the object's apiVersion, namespace and name do not match the URL {path:?}"),
            );
        }
        if let Some(violation) = self.schema_violation(path, &object) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{}.{} \"{name}\" is invalid: {violation}", path.plural, path.group),
            );
        }
        let conflict_key = format!("{}/{name}", path.plural);
        if let Some(left) = self.conflicts_left.get_mut(&conflict_key).filter(|left| **left > 0) {
            *left -= 1;
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified", path.plural),
            );
        }
        let key = Store::key(path, name);
        let previous = self.objects.get(&key).cloned();
        self.resource_version += 1;
        let generation = previous.as_ref().and_then(|p| p.object["metadata"]["generation"].as_i64()).unwrap_or(0) + 1;
        let metadata = &mut object["metadata"];
        metadata["resourceVersion"] = json!(self.resource_version.to_string());
        metadata["generation"] = json!(generation);
        metadata["uid"] = json!(format!("uid-{}-{name}", path.plural));
        if let Some(status) = previous.as_ref().and_then(|p| p.object.get("status")).cloned() {
            object["status"] = status;
        } else if object["kind"] == "CustomResourceDefinition" {
            object["status"] = json!({"conditions": []});
        }
        if query_value(query, "dryRun").as_deref() != Some("All") {
            self.objects.insert(key, Stored { object: object.clone(), reads: 0 });
        }
        let code = if previous.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        (code, object)
    }

    fn delete(&mut self, path: &ResourcePath, name: &str, query: &str) -> (StatusCode, Value) {
        let key = Store::key(path, name);
        if !self.objects.contains_key(&key) {
            return Store::not_found(path, name);
        }
        if query_value(query, "dryRun").as_deref() != Some("All") {
            self.objects.remove(&key);
        }
        (StatusCode::OK, json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}))
    }
}

/// What the cluster's controllers would have done by now: CRDs established, workloads rolled
/// out (unless the script keeps one stuck).
fn become_ready(object: &mut Value, stuck: bool) {
    let generation = object["metadata"]["generation"].clone();
    match object["kind"].as_str() {
        Some("CustomResourceDefinition") => {
            object["status"] = json!({"conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]});
        }
        Some("Deployment") => {
            let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let available = if stuck { 0 } else { replicas };
            object["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": available, "readyReplicas": available});
        }
        Some("DaemonSet") => {
            object["status"] = json!({"observedGeneration": generation, "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": if stuck { 0 } else { 1 }});
        }
        _ => {}
    }
}

/// A query parameter's decoded value.
pub fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == key).map(|(_, value)| value.into_owned())
}

/// The set of `Kind namespace/name` of objects carrying a label, for assertions.
pub fn names_with_label(objects: &[Value], label: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|object| object["metadata"]["labels"].get(label).is_some())
        .map(|object| {
            format!(
                "{} {}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_resource() {
        let path = ResourcePath::parse("/apis/apps/v1/namespaces/istio-system/deployments/istio-pilot").expect("path");
        assert_eq!(path.group, "apps");
        assert_eq!(path.namespace.as_deref(), Some("istio-system"));
        assert_eq!(path.name.as_deref(), Some("istio-pilot"));
        let path = ResourcePath::parse("/api/v1/namespaces/istio-system").expect("path");
        assert_eq!(
            (path.plural.as_str(), path.name.as_deref(), path.namespace),
            ("namespaces", Some("istio-system"), None)
        );
        let path = ResourcePath::parse("/apis/apps/v1/deployments").expect("path");
        assert_eq!((path.plural.as_str(), path.name, path.namespace), ("deployments", None, None));
        assert_eq!(ResourcePath::parse("/version"), None);
    }

    #[test]
    fn selectors_match_as_the_api_server_does() {
        let labels = json!({"app": "pilot", "operator.istio.io/component": "Pilot"});
        assert!(selector_matches(&labels, "app=pilot"));
        assert!(selector_matches(&labels, "app==pilot,operator.istio.io/component"));
        assert!(selector_matches(&labels, "app!=mixer,!istio"));
        assert!(!selector_matches(&labels, "istio"));
        assert!(!selector_matches(&labels, "app=mixer"));
    }

    #[test]
    fn custom_resources_wait_for_their_crd() {
        let mut store = Store::new(Script { reads_until_ready: 1, ..Script::default() });
        let policy = ResourcePath::parse("/apis/authentication.istio.io/v1alpha1/meshpolicies/default").expect("path");
        let body =
            br#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"MeshPolicy","metadata":{"name":"default"}}"#;
        assert_eq!(store.handle("PATCH", &policy, "fieldManager=t", body).0, StatusCode::NOT_FOUND);
        let crd_path = ResourcePath::parse(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/meshpolicies.authentication.istio.io",
        )
        .expect("path");
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "meshpolicies.authentication.istio.io"},
            "spec": {"group": "authentication.istio.io", "scope": "Cluster", "names": {"plural": "meshpolicies", "kind": "MeshPolicy"},
                     "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}});
        let (code, _) = store.handle("PATCH", &crd_path, "fieldManager=t", crd.to_string().as_bytes());
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(
            store.handle("PATCH", &policy, "fieldManager=t", body).0,
            StatusCode::NOT_FOUND,
            "not established yet"
        );
        let (_, read) = store.handle("GET", &crd_path, "", b"");
        assert_eq!(read["status"]["conditions"][1]["type"], "Established");
        assert_eq!(store.handle("PATCH", &policy, "fieldManager=t", body).0, StatusCode::CREATED);
        assert_eq!(store.handle("PATCH", &policy, "", body).0, StatusCode::BAD_REQUEST, "no field manager");
        // Checked against the CRD as the API server checks.
        let typo = br#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"MeshPolicy","metadata":{"name":"default"},"specs":{}}"#;
        let (code, answer) = store.handle("PATCH", &policy, "fieldManager=t", typo);
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            answer["message"].as_str().unwrap_or_default().contains(".specs: field not declared in schema"),
            "{answer}"
        );
        let other_version =
            ResourcePath::parse("/apis/authentication.istio.io/v1beta9/meshpolicies/default").expect("path");
        assert_eq!(store.handle("PATCH", &other_version, "fieldManager=t", body).0, StatusCode::NOT_FOUND);
    }
}
