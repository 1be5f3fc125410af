//! `istioctl x authz convert`: turns v1alpha1 RBAC (ClusterRbacConfig, ServiceRoles and their
//! ServiceRoleBindings) into v1beta1 AuthorizationPolicies, as 1.4's converter did. The RBAC
//! objects come from files (`-f`) or the live mesh (this host's, or a cluster's); the Services
//! that map a role's services to workload selectors from files (`-s`) or the live mesh; the
//! root namespace from a mesh config file (`-m`) or the live mesh config.
//!
//! As 1.4's: a ClusterRbacConfig becomes deny-all / allow-all policies (in the root namespace
//! for the mesh-wide modes), service-level inclusion or exclusion is refused, each rule of a
//! bound role becomes one policy per matching Service (`service-NAME-ruleI-targetJ`, or
//! `all-workloads` for a rule without services), and a binding's `group`, or a property other
//! than `source.namespace`, `source.ip` and `request.auth.principal`, stops the conversion.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use istio_config::object::{Object, TypeKey};
use serde_json::{json, Map, Value};

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// v1alpha1 RBAC policy files to convert (comma-separated or repeated); default: the live mesh's.
    #[arg(short = 'f', long = "file", value_delimiter = ',')]
    files: Vec<String>,
    /// Kubernetes Service files mapping services to workloads; default: the live mesh's.
    #[arg(short = 's', long = "service", value_delimiter = ',')]
    services: Vec<String>,
    /// Mesh config file that gives the root namespace; default: the live mesh config.
    #[arg(short = 'm', long = "meshConfigFile")]
    mesh_config_file: Option<String>,
    /// The mesh config's ConfigMap on a cluster.
    #[arg(long = "meshConfigMapName", default_value = "istio")]
    mesh_config_map_name: String,
    #[command(flatten)]
    kube: crate::kube::KubeArgs,
}

/// What the conversion reads.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    /// ServiceRoles, ServiceRoleBindings, ClusterRbacConfig and RbacConfig objects.
    pub rbac: Vec<Object>,
    /// Services by namespace, then name: their selectors.
    pub services: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    pub root_namespace: String,
}

const ALLOW_ALL: &str =
    "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {SCOPE}-allow-all\n  namespace: {NAMESPACE}\nspec:\n  rules:\n    - {}\n---\n";
const DENY_ALL: &str =
    "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {SCOPE}-deny-all\n  namespace: {NAMESPACE}\nspec:\n  {}\n---\n";

fn fill(template: &str, scope: &str, namespace: &str) -> String {
    template.replace("{SCOPE}", scope).replace("{NAMESPACE}", namespace)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The mesh-wide RBAC switch as policies; problems are warnings, as in 1.4.
fn cluster_rbac_config(inputs: &Inputs, out: &mut String) -> Result<(), String> {
    let find = |kind: &str| inputs.rbac.iter().find(|o| o.kind == kind && o.name() == "default");
    let Some(config) = find("ClusterRbacConfig").or_else(|| find("RbacConfig")) else {
        return Err("no ClusterRbacConfig found".to_string());
    };
    let spec = config.spec();
    let root = inputs.root_namespace.as_str();
    let namespaces = |key: &str| strings(&spec[key]["namespaces"]);
    let has_services = |key: &str| !strings(&spec[key]["services"]).is_empty();
    match spec["mode"].as_str().unwrap_or("OFF") {
        "OFF" => out.push_str(&fill(ALLOW_ALL, "global", root)),
        "ON" => out.push_str(&fill(DENY_ALL, "global", root)),
        "ON_WITH_INCLUSION" => {
            if has_services("inclusion") {
                return Err(
                    "service-level ClusterRbacConfig (found in ON_WITH_INCLUSION rule) is not supported".to_string()
                );
            }
            for namespace in namespaces("inclusion") {
                out.push_str(&fill(DENY_ALL, &namespace, &namespace));
            }
        }
        "ON_WITH_EXCLUSION" => {
            if has_services("exclusion") {
                return Err(
                    "service-level ClusterRbacConfig (found in ON_WITH_EXCLUSION rule) is not supported".to_string()
                );
            }
            out.push_str(&fill(DENY_ALL, "global", root));
            for namespace in namespaces("exclusion") {
                out.push_str(&fill(ALLOW_ALL, &namespace, &namespace));
            }
        }
        other => return Err(format!("unknown ClusterRbacConfig mode {other:?}")),
    }
    Ok(())
}

/// A binding's subjects as `from` sources.
fn sources(bindings: &[&Object]) -> anyhow::Result<Vec<Value>> {
    let mut from = Vec::new();
    for binding in bindings {
        for subject in binding.spec()["subjects"].as_array().into_iter().flatten() {
            if subject["group"].as_str().is_some_and(|group| !group.is_empty()) {
                bail!("serviceRoleBinding with group is not supported");
            }
            let mut source = Map::new();
            if let Some(user) = subject["user"].as_str().filter(|user| !user.is_empty()) {
                source.insert("principals".into(), json!([user]));
            }
            for (key, value) in subject["properties"].as_object().into_iter().flatten() {
                let field = match key.as_str() {
                    "source.namespace" => "namespaces",
                    "source.ip" => "ipBlocks",
                    "request.auth.principal" => "requestPrincipals",
                    other => bail!("property {other} is not supported"),
                };
                source.insert(field.into(), json!([value.as_str().unwrap_or_default()]));
            }
            from.push(json!({"source": source}));
        }
    }
    Ok(from)
}

/// The selectors of the Services a role's service names, as 1.4 matched them: `*` is every
/// workload, `prefix*` and `*suffix` match Service names, anything else its first label.
fn selectors(inputs: &Inputs, service: &str, namespace: &str) -> Vec<Map<String, Value>> {
    if service == "*" {
        return vec![Map::new()];
    }
    let services = inputs.services.get(namespace);
    let matches = |name: &str| {
        if let Some(suffix) = service.strip_prefix('*') {
            name.ends_with(suffix)
        } else if let Some(prefix) = service.strip_suffix('*') {
            name.starts_with(prefix)
        } else {
            name == service.split('.').next().unwrap_or_default()
        }
    };
    services.into_iter().flatten().filter(|(name, _)| matches(name)).map(|(_, selector)| selector.clone()).collect()
}

fn policy(
    name: &str,
    namespace: &str,
    selector: Option<&Map<String, Value>>,
    from: &[Value],
    operation: &Value,
) -> Value {
    let mut spec = json!({"rules": [{"from": from, "to": [{"operation": operation}]}]});
    if let Some(selector) = selector {
        spec["selector"] = json!({"matchLabels": selector});
    }
    json!({
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// The converted policies as YAML, each followed by `---`; warnings go to `warn`.
pub(crate) fn convert(inputs: &Inputs, warn: &mut dyn FnMut(String)) -> anyhow::Result<String> {
    let mut out = String::new();
    if let Err(problem) = cluster_rbac_config(inputs, &mut out) {
        warn(format!("failed to convert ClusterRbacConfig: {problem}"));
    }
    let mut namespaces: Vec<&str> = inputs
        .rbac
        .iter()
        .filter(|o| o.kind == "ServiceRole" || o.kind == "ServiceRoleBinding")
        .map(|o| o.namespace())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    if namespaces.is_empty() {
        warn("no namespace found for ServiceRole and ServiceRoleBinding".to_string());
    }
    let mut policies = Vec::new();
    for namespace in namespaces {
        let mut roles: Vec<&Object> =
            inputs.rbac.iter().filter(|o| o.kind == "ServiceRole" && o.namespace() == namespace).collect();
        roles.sort_by_key(|role| role.name());
        for role in roles {
            let bindings: Vec<&Object> = inputs
                .rbac
                .iter()
                .filter(|o| o.kind == "ServiceRoleBinding" && o.namespace() == namespace)
                .filter(|o| o.spec()["roleRef"]["name"].as_str() == Some(role.name()))
                .collect();
            if bindings.is_empty() {
                continue;
            }
            let rules = role.spec()["rules"].as_array().cloned().unwrap_or_default();
            if rules.is_empty() {
                bail!("failed to convert policies: invalid input: ServiceRole has no permissions");
            }
            let from = sources(&bindings).context("failed to convert policies: cannot convert binding to sources")?;
            if from.is_empty() {
                bail!("failed to convert policies: principals are empty");
            }
            for (index, rule) in rules.iter().enumerate() {
                let mut operation = Map::new();
                for key in ["methods", "paths"] {
                    if !strings(&rule[key]).is_empty() {
                        operation.insert(key.into(), rule[key].clone());
                    }
                }
                let operation = Value::Object(operation);
                let services = strings(&rule["services"]);
                if services.is_empty() {
                    policies.push(policy("all-workloads", namespace, None, &from, &operation));
                }
                for service in &services {
                    for (target, selector) in selectors(inputs, service, namespace).iter().enumerate() {
                        let name = format!("service-{}-rule{index}-target{target}", service.replace('*', "wildcard"));
                        policies.push(policy(&name, namespace, Some(selector), &from, &operation));
                    }
                }
            }
        }
    }
    for policy in policies {
        out += &serde_yaml::to_string(&policy)?;
        out += "---\n";
    }
    Ok(out)
}

fn file_objects(files: &[String]) -> anyhow::Result<Vec<Object>> {
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("open {file}"))?;
        let (found, errors) = istio_config::yaml::parse_objects(file, &text);
        if let Some(error) = errors.first() {
            bail!("{error}");
        }
        objects.extend(found.into_iter().map(|source| source.object));
    }
    Ok(objects)
}

fn services_by_namespace(
    objects: &[Object],
    warn: &mut dyn FnMut(String),
) -> BTreeMap<String, BTreeMap<String, Map<String, Value>>> {
    let mut services: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    for service in objects.iter().filter(|o| o.kind == "Service" && o.group().is_empty()) {
        match service.spec()["selector"].as_object().filter(|selector| !selector.is_empty()) {
            Some(selector) => {
                services
                    .entry(service.namespace().to_string())
                    .or_default()
                    .insert(service.name().to_string(), selector.clone());
            }
            None => warn(format!("ignored service with empty selector: {}.{}", service.name(), service.namespace())),
        }
    }
    services
}

fn root_namespace(mesh: &Value) -> String {
    mesh["rootNamespace"].as_str().filter(|ns| !ns.is_empty()).unwrap_or("istio-system").to_string()
}

const RBAC_KINDS: [&str; 4] = ["ServiceRole", "ServiceRoleBinding", "ClusterRbacConfig", "RbacConfig"];

/// The live mesh's RBAC objects, Services and mesh config.
async fn live_inputs(args: &ConvertArgs) -> anyhow::Result<(Vec<Object>, Vec<Object>, Option<Value>)> {
    let layout = istio_local::Layout::from_env();
    let mut rbac = Vec::new();
    let mut services = Vec::new();
    if args.kube.wants_cluster(&layout) {
        use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
        let client = args.kube.client().await?;
        for kind in RBAC_KINDS {
            let plural = format!("{}s", kind.to_lowercase());
            let resource =
                ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("rbac.istio.io", "v1alpha1", kind), &plural);
            let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &resource);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                Err(kube::Error::Api(response)) if response.code == 404 => continue,
                Err(error) => return Err(error).with_context(|| format!("listing {plural}")),
            };
            for item in list.items {
                let mut object = Object::new(&resource.api_version, kind, None, "");
                object.metadata = item.metadata;
                if let Value::Object(body) = item.data {
                    object.body = body;
                }
                rbac.push(object);
            }
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::all(client.clone());
        for service in api.list(&ListParams::default()).await.context("listing services")?.items {
            services.push(serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": service.metadata,
                "spec": {"selector": service.spec.and_then(|spec| spec.selector)},
            }))?);
        }
        let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, &args.kube.istio_namespace);
        let mesh = match config_maps.get(&args.mesh_config_map_name).await {
            Ok(config_map) => config_map
                .data
                .and_then(|mut data| data.remove("mesh"))
                .map(|text| istio_config::mesh::parse(&text, "configmap istio key mesh"))
                .transpose()?,
            Err(error) => {
                eprintln!("failed to get ConfigMap named {}: {error}", args.mesh_config_map_name);
                None
            }
        };
        return Ok((rbac, services, mesh));
    }
    if !layout.install_file().exists() {
        bail!("no RBAC policy files (-f) given, no mesh is installed on this host and no kubeconfig was given");
    }
    for kind in RBAC_KINDS {
        rbac.extend(istio_local::kubectl::list(&layout, &TypeKey::new("rbac.istio.io", kind), None).await?);
    }
    services.extend(istio_local::kubectl::list(&layout, &TypeKey::new("", "Service"), None).await?);
    let mesh = istio_config::mesh::load(&layout.mesh_config()).ok();
    Ok((rbac, services, mesh))
}

pub(crate) fn run(args: &ConvertArgs) -> anyhow::Result<i32> {
    let mut warn = |message: String| eprintln!("{message}");
    let needs_live = args.files.is_empty() || args.services.is_empty() || args.mesh_config_file.is_none();
    let live = if needs_live {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        match runtime.block_on(live_inputs(args)) {
            Ok(live) => Some(live),
            Err(error) if args.files.is_empty() => return Err(error),
            Err(error) => {
                warn(format!("failed to read the live mesh: {error:#}"));
                None
            }
        }
    } else {
        None
    };
    let (live_rbac, live_services, live_mesh) = live.unwrap_or_default();
    let rbac = if args.files.is_empty() { live_rbac } else { file_objects(&args.files)? };
    let rbac: Vec<Object> = rbac.into_iter().filter(|o| o.group() == "rbac.istio.io").collect();
    if args.files.is_empty() && rbac.is_empty() {
        bail!("no v1alpha1 RBAC policy");
    }
    let services = if args.services.is_empty() { live_services } else { file_objects(&args.services)? };
    let mesh = match &args.mesh_config_file {
        Some(path) => Some(istio_config::mesh::load(std::path::Path::new(path))?),
        None => live_mesh,
    };
    let inputs = Inputs {
        services: services_by_namespace(&services, &mut warn),
        root_namespace: mesh.as_ref().map(root_namespace).unwrap_or_else(|| "istio-system".to_string()),
        rbac,
    };
    print!("{}", convert(&inputs, &mut warn)?);
    Ok(0)
}

#[cfg(test)]
mod tests;
