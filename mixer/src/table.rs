//! The routing table: Mixer's config (handlers, instances, rules, attribute manifests, and the
//! legacy per-adapter and per-template kinds) compiled into what a request needs: per namespace
//! and per variety (check, quota, report, attribute generation), the handlers to call, the
//! instances to build for them and the conditions under which to do so.
//!
//! A table is built whole from the accepted objects each time config changes and swapped in at
//! once. An object that does not compile (a reference to nothing, an expression that does not
//! type-check, an adapter whose params are wrong) is left out and reported with its name and
//! field; the rest takes effect. A handler whose config did not change is carried over with its
//! state (memquota's counters, the list it fetched).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use istio_api::pb::istio::policy::v1beta1 as policy;
use istio_attribute::{Compiled, ValueType};
use istio_config::object::{Object, ObjectKey};
use serde_json::Value as Json;

use crate::adapter::api::{BuildContext, Handler};
use crate::adapter::Adapter;
use crate::env::Environment;
use crate::template::{InstanceBuilder, Template, Variety};

/// The table requests are served with; swapped whole when config changes.
pub type SharedTable = Arc<arc_swap::ArcSwap<Table>>;

/// A built handler and the name requests see it by (`quotahandler.istio-system`).
#[derive(Debug)]
pub struct BuiltHandler {
    pub name: String,
    pub adapter: Adapter,
    pub handler: Arc<dyn Handler>,
}

/// Instances to build for a handler when a condition holds (one rule action).
#[derive(Debug, Clone)]
pub struct Group {
    pub rule: String,
    pub condition: Option<Arc<Compiled>>,
    pub instances: Vec<Arc<InstanceBuilder>>,
}

/// A handler and a template, with the instance groups routed to it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub handler: Arc<BuiltHandler>,
    pub template: Template,
    pub groups: Vec<Group>,
}

/// A header operation a rule asks for on an allowed request.
#[derive(Debug, Clone)]
pub struct HeaderOperation {
    pub name: String,
    pub values: Vec<Arc<Compiled>>,
    /// `policy.v1beta1.Rule.HeaderOperationTemplate.Operation`: REPLACE, REMOVE, APPEND.
    pub operation: i32,
}

/// A rule's header operations and its condition.
#[derive(Debug, Clone)]
pub struct Directives {
    pub rule: String,
    pub condition: Option<Arc<Compiled>>,
    pub request: Vec<HeaderOperation>,
    pub response: Vec<HeaderOperation>,
}

/// What applies to requests of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub check: Vec<Destination>,
    pub quota: Vec<Destination>,
    pub report: Vec<Destination>,
    pub generate: Vec<Destination>,
    pub directives: Vec<Directives>,
}

impl Routes {
    pub fn for_variety(&self, variety: Variety) -> &[Destination] {
        match variety {
            Variety::Check => &self.check,
            Variety::Quota => &self.quota,
            Variety::Report => &self.report,
            Variety::AttributeGenerator => &self.generate,
        }
    }

    fn for_variety_mut(&mut self, variety: Variety) -> &mut Vec<Destination> {
        match variety {
            Variety::Check => &mut self.check,
            Variety::Quota => &mut self.quota,
            Variety::Report => &mut self.report,
            Variety::AttributeGenerator => &mut self.generate,
        }
    }

    fn is_empty(&self) -> bool {
        self.check.is_empty() && self.quota.is_empty() && self.report.is_empty() && self.generate.is_empty()
    }
}

/// A config problem: the resource, the field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The object as `kind namespace/name`.
    pub object: String,
    /// 1.4's field path (`rule='quota.rule.istio-system'.Match`, `action='…[0]'`).
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

/// Counts of what a table holds, for metrics and the debug page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub rules: usize,
    pub handlers: usize,
    pub instances: usize,
    pub attributes: usize,
    pub new_handlers: usize,
    pub reused_handlers: usize,
    pub handler_build_failures: usize,
}

/// A compiled config.
#[derive(Debug, Default)]
pub struct Table {
    pub id: u64,
    pub types: Arc<HashMap<String, ValueType>>,
    namespaces: HashMap<String, Routes>,
    mesh_wide: Routes,
    /// Built handlers by the signature of their config and instances: equal signatures reuse them.
    handlers: HashMap<u64, Arc<BuiltHandler>>,
    pub errors: Vec<ConfigError>,
    pub counts: Counts,
}

impl Table {
    /// Handlers `previous` built that this table no longer uses: they close with it.
    pub fn closed_since(&self, previous: &Table) -> usize {
        previous.handlers.keys().filter(|signature| !self.handlers.contains_key(signature)).count()
    }

    /// Destinations per variety summed over every namespace's routes and the mesh-wide ones,
    /// as 1.4 counted them per routing table.
    pub fn destinations_per_variety(&self) -> Vec<(Variety, usize)> {
        [Variety::Check, Variety::Quota, Variety::Report, Variety::AttributeGenerator]
            .into_iter()
            .map(|variety| {
                let count = std::iter::once(&self.mesh_wide)
                    .chain(self.namespaces.values())
                    .map(|routes| routes.for_variety(variety).len())
                    .sum();
                (variety, count)
            })
            .collect()
    }

    /// What applies to requests whose identity namespace is `namespace`.
    pub fn routes(&self, namespace: &str) -> &Routes {
        self.namespaces.get(namespace).unwrap_or(&self.mesh_wide)
    }

    /// Whether any handler failed to build (worth building again later: a peer may come up).
    pub fn has_build_failures(&self) -> bool {
        self.counts.handler_build_failures > 0
    }
}

/// A handler declared in config.
#[derive(Debug, Clone)]
struct HandlerConfig {
    object: String,
    runtime_name: String,
    adapter: Adapter,
    params: Json,
}

/// An instance declared in config (`compiledTemplate`, or a legacy template kind).
#[derive(Debug, Clone)]
struct InstanceConfig {
    object: String,
    template: Option<Template>,
    template_name: String,
    params: Json,
    bindings: Json,
}

fn key_of(name: &str, kind: &str, namespace: &str) -> String {
    format!("{name}.{kind}.{namespace}")
}

/// Resolves a reference as 1.4 did: `n` → `n.KIND.ns`; `a.b` → `a.b.ns` if that exists, else
/// `a.KIND.b`; two dots → as written.
fn canonicalize<T>(reference: &str, kind: &str, namespace: &str, known: &HashMap<String, T>) -> String {
    match reference.matches('.').count() {
        0 => key_of(reference, kind, namespace),
        1 => {
            let (first, second) = reference.split_once('.').unwrap_or((reference, ""));
            let as_kind = format!("{reference}.{namespace}");
            if known.contains_key(&as_kind) {
                as_kind
            } else {
                key_of(first, kind, second)
            }
        }
        _ => reference.to_string(),
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

struct Compiler<'a> {
    objects: &'a BTreeMap<ObjectKey, Object>,
    errors: Vec<ConfigError>,
    types: HashMap<String, ValueType>,
    handlers: HashMap<String, HandlerConfig>,
    instances: HashMap<String, InstanceConfig>,
    compiled_instances: HashMap<String, Option<Arc<InstanceBuilder>>>,
}

impl Compiler<'_> {
    fn error(&mut self, object: &str, field: String, message: impl Into<String>) {
        let error = ConfigError { object: object.to_string(), field, message: message.into() };
        tracing::warn!(%error, "mixer config not used");
        self.errors.push(error);
    }

    fn manifests(&mut self) {
        for object in self.objects.values().filter(|o| o.kind == "attributemanifest") {
            let Some(attributes) = object.spec().get("attributes").and_then(Json::as_object) else { continue };
            for (name, info) in attributes {
                let text =
                    info.get("valueType").or_else(|| info.get("value_type")).and_then(Json::as_str).unwrap_or_default();
                match ValueType::from_str_name(text) {
                    Some(value_type) if value_type != ValueType::Unspecified => {
                        self.types.insert(name.clone(), value_type);
                    }
                    _ => self.error(
                        &object.display_name(),
                        format!("attributemanifest='{}'.attributes[{name}].valueType", object.name()),
                        format!("unknown value type {text:?}"),
                    ),
                }
            }
        }
    }

    fn declarations(&mut self) {
        for object in self.objects.values() {
            if object.group() != "config.istio.io" {
                continue;
            }
            let spec = object.spec();
            let namespace = object.namespace();
            let display = object.display_name();
            match object.kind.as_str() {
                "handler" => {
                    let adapter_name = spec.get("compiledAdapter").and_then(Json::as_str).unwrap_or_default();
                    let key = key_of(object.name(), "handler", namespace);
                    match Adapter::by_name(adapter_name) {
                        Some(adapter) => {
                            let runtime_name = format!("{}.{namespace}", object.name());
                            let params = spec.get("params").cloned().unwrap_or(Json::Null);
                            self.handlers.insert(key, HandlerConfig { object: display, runtime_name, adapter, params });
                        }
                        None if spec.get("adapter").is_some() => self.error(
                            &display,
                            format!("handler='{key}'.adapter"),
                            "out-of-process adapters are not supported; use compiledAdapter",
                        ),
                        None => self.error(
                            &display,
                            format!("handler='{key}'"),
                            format!("unknown compiledAdapter {adapter_name:?}"),
                        ),
                    }
                }
                "instance" => {
                    let key = key_of(object.name(), "instance", namespace);
                    let template_name = spec
                        .get("compiledTemplate")
                        .or_else(|| spec.get("template"))
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let config = InstanceConfig {
                        object: display,
                        template: Template::by_name(&template_name),
                        template_name,
                        params: spec.get("params").cloned().unwrap_or(Json::Null),
                        bindings: spec.get("attributeBindings").cloned().unwrap_or(Json::Null),
                    };
                    self.instances.insert(key, config);
                }
                kind => {
                    let key = key_of(object.name(), kind, namespace);
                    if let Some(adapter) = Adapter::by_name(kind) {
                        let config =
                            HandlerConfig { object: display, runtime_name: key.clone(), adapter, params: spec.clone() };
                        self.handlers.insert(key, config);
                    } else if let Some(template) = Template::by_name(kind) {
                        let config = InstanceConfig {
                            object: display,
                            template: Some(template),
                            template_name: kind.to_string(),
                            params: spec.clone(),
                            bindings: Json::Null,
                        };
                        self.instances.insert(key, config);
                    }
                }
            }
        }
    }

    /// The instance's builder, compiled once; `None` (and an error) if it does not compile.
    fn instance(&mut self, key: &str) -> Option<Arc<InstanceBuilder>> {
        if let Some(done) = self.compiled_instances.get(key) {
            return done.clone();
        }
        let config = self.instances.get(key)?.clone();
        let built = match config.template {
            None => {
                self.error(
                    &config.object,
                    format!("instance='{key}'"),
                    format!("missing compiled template {:?}", config.template_name),
                );
                None
            }
            Some(template) => {
                match InstanceBuilder::new(key, template, &config.params, &config.bindings, &self.types) {
                    Ok(builder) => Some(Arc::new(builder)),
                    Err(error) => {
                        self.error(&config.object, format!("instance='{key}'"), error.to_string());
                        None
                    }
                }
            }
        };
        self.compiled_instances.insert(key.to_string(), built.clone());
        built
    }
}

/// A rule as compiled: condition, namespace, and its actions' (handler key, instances).
struct CompiledRule {
    key: String,
    namespace: String,
    condition: Option<Arc<Compiled>>,
    actions: Vec<(usize, String, Vec<Arc<InstanceBuilder>>)>,
    directives: Option<Directives>,
}

fn compile_condition(text: &str, types: &HashMap<String, ValueType>) -> Result<Option<Arc<Compiled>>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "true" {
        return Ok(None);
    }
    let compiled = Compiled::new(trimmed, types).map_err(|error| error.to_string())?;
    if compiled.result_type() != ValueType::Bool {
        return Err(format!(
            "expression '{trimmed}' evaluated to type {}, expected type BOOL",
            compiled.result_type().as_str_name()
        ));
    }
    Ok(Some(Arc::new(compiled)))
}

fn header_operations(
    operations: &[policy::rule::HeaderOperationTemplate],
    types: &HashMap<String, ValueType>,
) -> Result<Vec<HeaderOperation>, String> {
    let mut compiled = Vec::with_capacity(operations.len());
    for operation in operations {
        let mut values = Vec::new();
        if operation.operation != policy::rule::header_operation_template::Operation::Remove as i32 {
            for value in &operation.values {
                let expression = Compiled::new(value, types).map_err(|error| {
                    format!("unable to compile header operation value expression: \"{error}\", expression=\"{value}\"")
                })?;
                if expression.result_type() != ValueType::String {
                    return Err(format!(
                        "header operation value expression is not of string type: expression=\"{value}\""
                    ));
                }
                values.push(Arc::new(expression));
            }
        }
        compiled.push(HeaderOperation { name: operation.name.clone(), values, operation: operation.operation });
    }
    Ok(compiled)
}

impl Compiler<'_> {
    fn rules(&mut self) -> Vec<CompiledRule> {
        let rule_objects: Vec<Object> =
            self.objects.values().filter(|o| o.kind == "rule" && o.group() == "config.istio.io").cloned().collect();
        let mut rules = Vec::new();
        for object in rule_objects {
            let namespace = object.namespace().to_string();
            let key = key_of(object.name(), "rule", &namespace);
            let display = object.display_name();
            let rule: policy::Rule = match istio_api::json::decode("istio.policy.v1beta1.Rule", object.spec()) {
                Ok(rule) => rule,
                Err(error) => {
                    self.error(&display, format!("rule='{key}'"), error.to_string());
                    continue;
                }
            };
            let condition = match compile_condition(&rule.r#match, &self.types) {
                Ok(condition) => condition,
                Err(message) => {
                    self.error(&display, format!("rule='{key}'.Match"), message);
                    continue;
                }
            };
            let mut actions = Vec::new();
            for (position, action) in rule.actions.iter().enumerate() {
                let field = format!("action='{key}[{position}]'");
                let handler_key = canonicalize(&action.handler, "handler", &namespace, &self.handlers);
                let Some(handler) = self.handlers.get(&handler_key).cloned() else {
                    self.error(&display, field, format!("Handler not found: handler='{}'", action.handler));
                    continue;
                };
                let mut builders: Vec<Arc<InstanceBuilder>> = Vec::new();
                let mut seen = BTreeSet::new();
                for reference in &action.instances {
                    let instance_key = canonicalize(reference, "instance", &namespace, &self.instances);
                    if !self.instances.contains_key(&instance_key) {
                        self.error(&display, field.clone(), format!("Instance not found: instance='{reference}'"));
                        continue;
                    }
                    if !seen.insert(instance_key.clone()) {
                        self.error(
                            &display,
                            field.clone(),
                            format!("action specified the same instance multiple times: instance='{instance_key}',"),
                        );
                        continue;
                    }
                    let Some(builder) = self.instance(&instance_key) else { continue };
                    if !handler.adapter.templates().contains(&builder.template) {
                        self.error(
                            &display,
                            field.clone(),
                            format!(
                                "instance '{instance_key}' is of template '{}' which is not supported by handler '{handler_key}'",
                                builder.template.name()
                            ),
                        );
                        continue;
                    }
                    builders.push(builder);
                }
                if builders.is_empty() {
                    self.error(&display, field, "No valid instances found");
                    continue;
                }
                actions.push((position, handler_key, builders));
            }
            let directives = if rule.request_header_operations.is_empty() && rule.response_header_operations.is_empty()
            {
                None
            } else {
                let compiled = header_operations(&rule.request_header_operations, &self.types).and_then(|request| {
                    Ok((request, header_operations(&rule.response_header_operations, &self.types)?))
                });
                match compiled {
                    Ok((request, response)) => {
                        Some(Directives { rule: key.clone(), condition: condition.clone(), request, response })
                    }
                    Err(message) => {
                        self.error(
                            &display,
                            format!("rule='{key}'.HeaderOperations"),
                            format!("{message} in \"{key}\""),
                        );
                        None
                    }
                }
            };
            if actions.is_empty() && directives.is_none() {
                self.error(&display, format!("rule={key}"), "No valid actions found in rule");
                continue;
            }
            rules.push(CompiledRule { key, namespace, condition, actions, directives });
        }
        rules
    }
}

/// Compiles `objects` into a table. Handlers whose config and instances are unchanged since
/// `previous` are reused.
pub async fn compile(
    id: u64,
    objects: &BTreeMap<ObjectKey, Object>,
    previous: Option<&Table>,
    environment: &Environment,
    default_namespace: &str,
) -> Table {
    let mut compiler = Compiler {
        objects,
        errors: Vec::new(),
        types: HashMap::new(),
        handlers: HashMap::new(),
        instances: HashMap::new(),
        compiled_instances: HashMap::new(),
    };
    compiler.manifests();
    compiler.declarations();
    let rules = compiler.rules();

    // Each handler is built once, with every instance routed to it.
    let mut routed: BTreeMap<String, BTreeMap<String, Arc<InstanceBuilder>>> = BTreeMap::new();
    for rule in &rules {
        for (_, handler_key, builders) in &rule.actions {
            let entry = routed.entry(handler_key.clone()).or_default();
            for builder in builders {
                entry.insert(builder.name.to_string(), builder.clone());
            }
        }
    }
    let mut counts = Counts::default();
    let mut built: HashMap<String, Arc<BuiltHandler>> = HashMap::new();
    let mut by_signature = HashMap::new();
    for (handler_key, instances) in routed {
        let Some(config) = compiler.handlers.get(&handler_key).cloned() else { continue };
        let instance_list: Vec<Arc<InstanceBuilder>> = instances.into_values().collect();
        let instance_configs: Vec<String> = instance_list
            .iter()
            .map(|builder| {
                let declared = compiler.instances.get(&*builder.name);
                format!(
                    "{}|{}|{}",
                    builder.name,
                    declared.map(|d| d.params.to_string()).unwrap_or_default(),
                    declared.map(|d| d.bindings.to_string()).unwrap_or_default()
                )
            })
            .collect();
        let signature =
            hash_of(&(config.adapter.name(), &config.runtime_name, config.params.to_string(), &instance_configs));
        if let Some(reused) = previous.and_then(|table| table.handlers.get(&signature)) {
            counts.reused_handlers += 1;
            by_signature.insert(signature, reused.clone());
            built.insert(handler_key, reused.clone());
            continue;
        }
        let context = BuildContext {
            handler: &config.runtime_name,
            params: &config.params,
            instances: &instance_list,
            environment,
        };
        match config.adapter.build(&context).await {
            Ok(handler) => {
                counts.new_handlers += 1;
                let entry =
                    Arc::new(BuiltHandler { name: config.runtime_name.clone(), adapter: config.adapter, handler });
                by_signature.insert(signature, entry.clone());
                built.insert(handler_key, entry);
            }
            Err(error) => {
                counts.handler_build_failures += 1;
                tracing::warn!(
                    "Unable to initialize adapter: snapshot='{id}', handler='{}', adapter='{}', err='{error}'. Please remove the handler or fix the configuration.",
                    config.runtime_name,
                    config.adapter.name()
                );
                compiler.errors.push(ConfigError {
                    object: config.object.clone(),
                    field: format!("handler='{handler_key}'.params"),
                    message: error.to_string(),
                });
            }
        }
    }

    // Routes per namespace, in rule order.
    let mut namespaces: HashMap<String, Routes> = HashMap::new();
    for rule in &rules {
        let routes = namespaces.entry(rule.namespace.clone()).or_default();
        for (position, handler_key, builders) in &rule.actions {
            let Some(handler) = built.get(handler_key) else {
                tracing::warn!(
                    "Unable to find a handler for action. rule[action]='{}[{position}]', handler='{handler_key}'",
                    rule.key
                );
                continue;
            };
            let mut by_template: BTreeMap<Template, Vec<Arc<InstanceBuilder>>> = BTreeMap::new();
            for builder in builders {
                by_template.entry(builder.template).or_default().push(builder.clone());
            }
            for (template, instances) in by_template {
                let destinations = routes.for_variety_mut(template.variety());
                let group = Group { rule: rule.key.clone(), condition: rule.condition.clone(), instances };
                match destinations.iter_mut().find(|d| Arc::ptr_eq(&d.handler, handler) && d.template == template) {
                    Some(destination) => destination.groups.push(group),
                    None => destinations.push(Destination { handler: handler.clone(), template, groups: vec![group] }),
                }
            }
        }
        if let Some(directives) = &rule.directives {
            routes.directives.push(directives.clone());
        }
    }
    // Rules in the default config namespace apply everywhere, before a namespace's own.
    let mesh_wide = namespaces.remove(default_namespace).unwrap_or_default();
    for routes in namespaces.values_mut() {
        for variety in [Variety::Check, Variety::Quota, Variety::Report, Variety::AttributeGenerator] {
            let own = std::mem::take(routes.for_variety_mut(variety));
            let mut merged = mesh_wide.for_variety(variety).to_vec();
            merged.extend(own);
            *routes.for_variety_mut(variety) = merged;
        }
        let own = std::mem::take(&mut routes.directives);
        routes.directives = mesh_wide.directives.iter().cloned().chain(own).collect();
    }
    namespaces.retain(|_, routes| !routes.is_empty() || !routes.directives.is_empty());

    counts.rules = rules.len();
    counts.handlers = compiler.handlers.len();
    counts.instances = compiler.instances.len();
    counts.attributes = compiler.types.len();
    Table {
        id,
        types: Arc::new(compiler.types),
        namespaces,
        mesh_wide,
        handlers: by_signature,
        errors: compiler.errors,
        counts,
    }
}
