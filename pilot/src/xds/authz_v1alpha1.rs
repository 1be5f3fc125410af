//! Istio 1.4's v1alpha1 authorization (`rbac.istio.io`: ClusterRbacConfig, ServiceRole,
//! ServiceRoleBinding) as Envoy RBAC, for a workload no v1beta1 AuthorizationPolicy selects
//! (when one does, v1alpha1 is ignored for it, as 1.4 did):
//!
//! - the ClusterRbacConfig `default` (or the deprecated RbacConfig `default`) turns it on:
//!   `ON` everywhere, `ON_WITH_INCLUSION` for the namespaces and service hosts it lists,
//!   `ON_WITH_EXCLUSION` everywhere else; `OFF` or no config, no filter. On, with no role
//!   bound, everything is denied;
//! - roles and bindings of the service's own namespace apply; each role with a binding is the
//!   policy named after the role: its rules whose `services` (exact, `*`, `prefix*`, `*suffix`)
//!   and `destination.labels[…]`/`name`/`namespace`/`user` constraints fit the service are
//!   its permissions (methods, paths, hosts, ports and their `not` forms, the other
//!   constraints), every subject of its bindings a principal (`user` and the
//!   `source.principal` property as the peer's SPIFFE name over the mesh's trust domains, `*`
//!   or `allUsers` anyone; `names`, `namespaces`, `ips`, `group`/`groups` as the `groups`
//!   claim, each with its `not` form; the other properties as conditions). A binding with
//!   inline `actions` and no role reference is a policy of its own, `binding[NAME]` (1.4.6
//!   validated such bindings but ignored them);
//! - bindings with `mode: PERMISSIVE`, or every binding under `enforcementMode: PERMISSIVE`,
//!   go to the shadow rules (counted, not enforced); under the global permissive mode there
//!   are no enforced rules at all;
//! - a gateway follows the service its addresses belong to (1.4's gateway service instance),
//!   so `ON` covers the ingress gateway too, as it did in 1.4;
//! - on TCP ports, permissions that need HTTP (hosts, paths, methods, `request.headers`
//!   constraints) and principals that need it (groups, `request.auth.*` properties) are
//!   dropped, and a role left without either with them.

use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use istio_api::pb::istio::rbac::v1alpha1;
use istio_api::pb::istio::security::v1beta1 as security;

use super::authz::{Identities, RbacFilters};
use crate::model::{PushContext, Service};

/// Constraint keys that only decide whether a rule fits the service.
fn is_matching_only(key: &str) -> bool {
    key.starts_with("destination.labels[")
        || matches!(key, "destination.name" | "destination.namespace" | "destination.user")
}

/// 1.4's `stringMatch`: exact, `*`, `prefix*` or `*suffix`.
fn string_match(value: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| {
        pattern == "*"
            || pattern == value
            || pattern.strip_suffix('*').is_some_and(|prefix| value.starts_with(prefix))
            || pattern.strip_prefix('*').is_some_and(|suffix| value.ends_with(suffix))
    })
}

/// What v1alpha1 rules can ask of the service.
struct ServiceFacts<'a> {
    service: &'a Service,
    labels: &'a std::collections::HashMap<String, String>,
}

impl ServiceFacts<'_> {
    fn attribute(&self, key: &str) -> Vec<String> {
        match key {
            "destination.name" => {
                vec![self.service.hostname.split('.').next().unwrap_or_default().to_string()]
            }
            "destination.namespace" => vec![self.service.namespace.clone()],
            // The service account: the name after `sa/` in the workload's SPIFFE identity.
            "destination.user" => self
                .service
                .service_accounts
                .iter()
                .map(|account| match account.split_once("sa/") {
                    Some((_, rest)) => rest.split('/').next().unwrap_or_default().to_string(),
                    None => account.clone(),
                })
                .collect(),
            _ => {
                let label = key.strip_prefix("destination.labels[").and_then(|rest| rest.strip_suffix(']'));
                label.and_then(|label| self.labels.get(label)).cloned().into_iter().collect()
            }
        }
    }

    /// Whether an access rule applies to the service.
    fn fits(&self, rule: &v1alpha1::AccessRule) -> bool {
        (rule.services.is_empty() || string_match(&self.service.hostname, &rule.services))
            && rule.constraints.iter().filter(|constraint| is_matching_only(&constraint.key)).all(|constraint| {
                self.attribute(&constraint.key).iter().any(|value| string_match(value, &constraint.values))
            })
    }
}

/// Whether the mesh's RBAC config turns authorization on for the service.
fn enabled(push: &PushContext, service: &Service) -> Option<bool> {
    use v1alpha1::rbac_config::Mode;
    let config = push.rbac_config.as_ref()?;
    let listed = |target: Option<&v1alpha1::rbac_config::Target>| {
        target.is_some_and(|target| {
            target.namespaces.contains(&service.namespace) || target.services.contains(&service.hostname)
        })
    };
    let on = match Mode::try_from(config.spec.mode).unwrap_or(Mode::Off) {
        Mode::Off => false,
        Mode::On => true,
        Mode::OnWithInclusion => listed(config.spec.inclusion.as_ref()),
        Mode::OnWithExclusion => !listed(config.spec.exclusion.as_ref()),
    };
    Some(on)
}

/// A role's rules as v1beta1 operations and their conditions (constraints that generate rules).
fn operation_of(rule: &v1alpha1::AccessRule) -> (security::Operation, Vec<security::Condition>) {
    let operation = security::Operation {
        hosts: rule.hosts.clone(),
        not_hosts: rule.not_hosts.clone(),
        paths: rule.paths.clone(),
        not_paths: rule.not_paths.clone(),
        methods: rule.methods.clone(),
        not_methods: rule.not_methods.clone(),
        ports: rule.ports.iter().map(i32::to_string).collect(),
        not_ports: rule.not_ports.iter().map(i32::to_string).collect(),
    };
    let conditions = rule
        .constraints
        .iter()
        .filter(|constraint| !is_matching_only(&constraint.key))
        .map(|constraint| security::Condition {
            key: constraint.key.clone(),
            values: constraint.values.clone(),
            ..Default::default()
        })
        .collect();
    (operation, conditions)
}

fn needs_http_permission(operation: &security::Operation, conditions: &[security::Condition]) -> bool {
    !(operation.hosts.is_empty()
        && operation.not_hosts.is_empty()
        && operation.paths.is_empty()
        && operation.not_paths.is_empty()
        && operation.methods.is_empty()
        && operation.not_methods.is_empty())
        || conditions.iter().any(|condition| condition.key.starts_with("request.headers"))
}

/// Who anyone is: `*`, `allUsers` and `allAuthenticatedUsers` (which 1.4 took as `*`).
fn is_anyone(value: &str) -> bool {
    matches!(value, "*" | "allUsers" | "allAuthenticatedUsers")
}

/// A subject as a v1beta1 source and its conditions; `None`: anyone.
fn source_of(subject: &v1alpha1::Subject) -> Option<(security::Source, Vec<security::Condition>)> {
    let mut conditions = Vec::new();
    let mut source = security::Source {
        principals: Vec::new(),
        not_principals: subject.not_names.clone(),
        namespaces: subject.namespaces.clone(),
        not_namespaces: subject.not_namespaces.clone(),
        ip_blocks: subject.ips.clone(),
        not_ip_blocks: subject.not_ips.clone(),
        ..Default::default()
    };
    let mut anyone = true;
    if !subject.user.is_empty() && !is_anyone(&subject.user) {
        source.principals.push(subject.user.clone());
        anyone = false;
    }
    source.principals.extend(subject.names.iter().cloned());
    let mut groups: Vec<String> = subject.groups.clone();
    if !subject.group.is_empty() {
        groups.push(subject.group.clone());
    }
    if !groups.is_empty() {
        conditions.push(security::Condition {
            key: "request.auth.claims[groups]".into(),
            values: groups,
            ..Default::default()
        });
    }
    if !subject.not_groups.is_empty() {
        conditions.push(security::Condition {
            key: "request.auth.claims[groups]".into(),
            not_values: subject.not_groups.clone(),
            ..Default::default()
        });
    }
    let mut properties: Vec<(&String, &String)> = subject.properties.iter().collect();
    properties.sort();
    for (key, value) in properties {
        if key == "source.principal" && is_anyone(value) {
            continue;
        }
        conditions.push(security::Condition { key: key.clone(), values: vec![value.clone()], ..Default::default() });
    }
    let constrained = !source.principals.is_empty()
        || !source.not_principals.is_empty()
        || !source.namespaces.is_empty()
        || !source.not_namespaces.is_empty()
        || !source.ip_blocks.is_empty()
        || !source.not_ip_blocks.is_empty()
        || !conditions.is_empty();
    (constrained || !anyone).then_some((source, conditions))
}

fn needs_http_principal(conditions: &[security::Condition]) -> bool {
    conditions.iter().any(|condition| condition.key.starts_with("request.auth.") || condition.key == "source.user")
}

/// One role (or inline binding) as an RBAC policy, if anything of it is left.
fn role_policy(
    rules: &[v1alpha1::AccessRule],
    subjects: &[&v1alpha1::Subject],
    facts: &ServiceFacts<'_>,
    tcp: bool,
    identities: &Identities,
) -> Option<rbac::Policy> {
    let permissions: Vec<rbac::Permission> = rules
        .iter()
        .filter(|rule| facts.fits(rule))
        .map(operation_of)
        .filter(|(operation, conditions)| !tcp || !needs_http_permission(operation, conditions))
        .map(|(operation, conditions)| {
            let conditions: Vec<&security::Condition> = conditions.iter().collect();
            super::authz::permission(Some(&operation), &conditions)
        })
        .collect();
    let principals: Vec<rbac::Principal> = subjects
        .iter()
        .map(|subject| source_of(subject))
        .filter(|source| !tcp || source.as_ref().is_none_or(|(_, conditions)| !needs_http_principal(conditions)))
        .map(|source| match source {
            None => super::authz::any_principal(),
            Some((source, conditions)) => {
                let conditions: Vec<&security::Condition> = conditions.iter().collect();
                super::authz::principal(Some(&source), &conditions, tcp, identities)
            }
        })
        .collect();
    (!permissions.is_empty() && !principals.is_empty()).then_some(rbac::Policy {
        permissions,
        principals,
        ..Default::default()
    })
}

/// The enforced and shadow rule sets for the service.
fn rule_sets(
    push: &PushContext,
    facts: &ServiceFacts<'_>,
    tcp: bool,
    global_permissive: bool,
) -> (rbac::Rbac, rbac::Rbac) {
    let origin_bound = facts.service.ports.iter().any(|port| {
        crate::scope::authn::policy_for(push, facts.service, port).is_some_and(|(policy, _)| {
            policy.principal_binding
                == istio_api::pb::istio::authentication::v1alpha1::PrincipalBinding::UseOrigin as i32
        })
    });
    let identities = Identities::of(push, origin_bound);
    let allow = || rbac::Rbac { action: rbac::rbac::Action::Allow as i32, ..Default::default() };
    let (mut enforced, mut shadow) = (allow(), allow());
    let namespace = &facts.service.namespace;
    let bindings: Vec<_> =
        push.service_role_bindings.iter().filter(|binding| &binding.namespace == namespace).collect();
    let is_permissive = |binding: &v1alpha1::ServiceRoleBinding| {
        global_permissive || binding.mode == v1alpha1::EnforcementMode::Permissive as i32
    };
    for role in push.service_roles.iter().filter(|role| &role.namespace == namespace) {
        for permissive in [false, true] {
            let subjects: Vec<&v1alpha1::Subject> = bindings
                .iter()
                .filter(|binding| binding.spec.role_ref.as_ref().is_some_and(|reference| reference.name == role.name))
                .filter(|binding| is_permissive(&binding.spec) == permissive)
                .flat_map(|binding| binding.spec.subjects.iter())
                .collect();
            if subjects.is_empty() {
                continue;
            }
            if let Some(policy) = role_policy(&role.spec.rules, &subjects, facts, tcp, &identities) {
                let target = if permissive { &mut shadow } else { &mut enforced };
                target.policies.insert(role.name.clone(), policy);
            }
        }
    }
    // Bindings with their own actions instead of a role.
    for binding in bindings.iter().filter(|binding| binding.spec.role_ref.is_none() && !binding.spec.actions.is_empty())
    {
        let subjects: Vec<&v1alpha1::Subject> = binding.spec.subjects.iter().collect();
        if let Some(policy) = role_policy(&binding.spec.actions, &subjects, facts, tcp, &identities) {
            let target = if is_permissive(&binding.spec) { &mut shadow } else { &mut enforced };
            // Named apart from roles, so a binding cannot replace a role's policy.
            target.policies.insert(format!("binding[{}]", binding.name), policy);
        }
    }
    super::stable_map::stabilize(&mut enforced.policies);
    super::stable_map::stabilize(&mut shadow.policies);
    (enforced, shadow)
}

/// The service a gateway's v1alpha1 authorization follows: the first (by host name) with an
/// endpoint at one of its addresses, as 1.4 took the gateway's service instance.
pub(crate) fn gateway_service<'a>(push: &'a PushContext, proxy: &crate::node::Proxy) -> Option<&'a Service> {
    push.services_at(&proxy.ips).next().map(|service| service.as_ref())
}

/// The RBAC filters v1alpha1 gives a gateway: its service's, when no v1beta1 policy selects it.
pub(crate) fn filters_for_gateway(push: &PushContext, proxy: &crate::node::Proxy) -> RbacFilters {
    match gateway_service(push, proxy) {
        Some(service) if push.rbac_config.is_some() => filters_for_service(push, service, &proxy.labels),
        _ => RbacFilters::default(),
    }
}

/// The RBAC filters v1alpha1 gives a service's ports on a workload with `labels`; empty when
/// authorization is off for it.
pub(crate) fn filters_for_service(
    push: &PushContext,
    service: &Service,
    labels: &std::collections::HashMap<String, String>,
) -> RbacFilters {
    if enabled(push, service) != Some(true) {
        return RbacFilters::default();
    }
    let global_permissive = push
        .rbac_config
        .as_ref()
        .is_some_and(|config| config.spec.enforcement_mode == v1alpha1::EnforcementMode::Permissive as i32);
    let facts = ServiceFacts { service, labels };
    let split = |tcp: bool| {
        let (enforced, shadow) = rule_sets(push, &facts, tcp, global_permissive);
        let rules = (!global_permissive).then_some(enforced);
        // Under the global permissive mode the shadow rules are all there is (none bound: a
        // shadow denial of everything); otherwise they exist when a binding is permissive.
        let shadow_rules = (global_permissive || !shadow.policies.is_empty()).then_some(shadow);
        (rules, shadow_rules)
    };
    let (rules, shadow_rules) = split(false);
    let http = HttpRbac { rules, shadow_rules, ..Default::default() };
    let (rules, shadow_rules) = split(true);
    let network = NetworkRbac { rules, shadow_rules, stat_prefix: "tcp.".to_string(), ..Default::default() };
    RbacFilters::new(http, network)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
    use prost::Message;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::Named;

    fn named<T: prost::Message + Default>(proto: &str, namespace: &str, name: &str, spec: Value) -> Named<T> {
        Named {
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec: istio_api::json::decode(proto, &spec).expect("spec"),
        }
    }

    /// httpbin in `foo` with account `httpbin`, as 1.4's builder tests had it.
    fn httpbin() -> Service {
        let mut services = crate::testing::service_entry(
            "foo",
            json!({"hosts": ["httpbin.foo.svc.cluster.local"], "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
                   "location": "MESH_INTERNAL", "resolution": "STATIC",
                   "subjectAltNames": ["spiffe://cluster.local/ns/foo/sa/httpbin"]}),
        );
        services.remove(0)
    }

    fn labels() -> std::collections::HashMap<String, String> {
        [("app", "httpbin"), ("version", "v1")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn push(config: Value, roles: Vec<(&str, Value)>, bindings: Vec<(&str, Value)>) -> PushContext {
        let mut push = crate::testing::push(vec![httpbin()], vec![]);
        push.mesh.trust_domain = "cluster.local".into();
        push.rbac_config = Some(named("istio.rbac.v1alpha1.RbacConfig", "", "default", config));
        push.service_roles =
            roles.into_iter().map(|(name, spec)| named("istio.rbac.v1alpha1.ServiceRole", "foo", name, spec)).collect();
        push.service_role_bindings = bindings
            .into_iter()
            .map(|(name, spec)| named("istio.rbac.v1alpha1.ServiceRoleBinding", "foo", name, spec))
            .collect();
        push
    }

    fn http(push: &PushContext) -> Option<Value> {
        let filter = filters_for_service(push, &httpbin(), &labels()).http?;
        let Some(http_filter::ConfigType::TypedConfig(typed)) = filter.config_type else { panic!("typed") };
        Some(istio_xds::json::message_to_json(&HttpRbac::decode(typed.value.as_slice()).expect("rbac")).expect("json"))
    }

    fn tcp(push: &PushContext) -> Value {
        let filter = filters_for_service(push, &httpbin(), &labels()).network.expect("network filter");
        let Some(filter::ConfigType::TypedConfig(typed)) = filter.config_type else { panic!("typed") };
        istio_xds::json::message_to_json(&NetworkRbac::decode(typed.value.as_slice()).expect("rbac")).expect("json")
    }

    fn viewer() -> (&'static str, Value) {
        ("viewer", json!({"rules": [{"services": ["httpbin.foo.svc.cluster.local"], "methods": ["GET"]}]}))
    }

    fn binding(subjects: Value) -> (&'static str, Value) {
        ("bind-viewer", json!({"subjects": subjects, "roleRef": {"kind": "ServiceRole", "name": "viewer"}}))
    }

    #[test]
    fn modes_decide_where_authorization_is_on() {
        let on = |config: Value| http(&push(config, vec![], vec![])).is_some();
        assert!(!on(json!({"mode": "OFF"})));
        assert!(on(json!({"mode": "ON"})));
        assert!(on(json!({"mode": "ON_WITH_INCLUSION", "inclusion": {"namespaces": ["foo"]}})));
        assert!(on(json!({"mode": "ON_WITH_INCLUSION", "inclusion": {"services": ["httpbin.foo.svc.cluster.local"]}})));
        assert!(!on(json!({"mode": "ON_WITH_INCLUSION", "inclusion": {"namespaces": ["bar"]}})));
        assert!(!on(json!({"mode": "ON_WITH_INCLUSION"})));
        assert!(!on(json!({"mode": "ON_WITH_EXCLUSION", "exclusion": {"namespaces": ["foo"]}})));
        assert!(on(json!({"mode": "ON_WITH_EXCLUSION", "exclusion": {"services": ["other.foo.svc.cluster.local"]}})));
        let mut none = push(json!({"mode": "ON"}), vec![], vec![]);
        none.rbac_config = None;
        assert!(http(&none).is_none(), "no config, no filter");
        // On with no role: a filter without policies, which denies everything.
        let config = http(&push(json!({"mode": "ON"}), vec![], vec![])).expect("filter");
        assert_eq!(config["rules"]["policies"], Value::Null, "{config}");
    }

    #[test]
    fn roles_fit_services_and_destination_constraints() {
        let fits = |rule: Value| {
            let push = push(
                json!({"mode": "ON"}),
                vec![("r", json!({"rules": [rule]}))],
                vec![("b", json!({"subjects": [{"user": "*"}], "roleRef": {"kind": "ServiceRole", "name": "r"}}))],
            );
            http(&push).expect("filter")["rules"]["policies"].get("r").is_some()
        };
        assert!(fits(json!({"services": ["*"], "methods": ["GET"]})));
        assert!(fits(json!({"services": ["httpbin.*"], "methods": ["GET"]})));
        assert!(fits(json!({"services": ["*.foo.svc.cluster.local"], "methods": ["GET"]})));
        assert!(!fits(json!({"services": ["details.foo.svc.cluster.local"], "methods": ["GET"]})));
        let constraint =
            |key: &str, values: Value| json!({"services": ["*"], "constraints": [{"key": key, "values": values}]});
        assert!(fits(constraint("destination.labels[app]", json!(["productpage", "httpbin"]))));
        assert!(!fits(constraint("destination.labels[version]", json!(["v2"]))));
        assert!(!fits(constraint("destination.labels[missing]", json!(["*"]))), "a label the workload lacks");
        assert!(fits(constraint("destination.name", json!(["httpbin"]))));
        assert!(fits(constraint("destination.namespace", json!(["f*"]))));
        assert!(fits(constraint("destination.user", json!(["httpbin"]))));
        assert!(!fits(constraint("destination.user", json!(["other"]))));
    }

    #[test]
    fn subjects_become_principals() {
        let rules = |subjects: Value| {
            let mut push = push(json!({"mode": "ON"}), vec![viewer()], vec![binding(subjects)]);
            let origins = json!({"origins": [{"jwt": {"issuer": "iss", "jwks": "{}"}}]});
            push.authn_policies.push(crate::testing::authn_policy("foo", "jwt", origins));
            http(&push).expect("filter")["rules"]["policies"]["viewer"].clone()
        };
        let anyone = rules(json!([{"user": "*"}]));
        assert_eq!(anyone["principals"][0], json!({"any": true}), "{anyone}");
        assert_eq!(rules(json!([{"properties": {"source.principal": "*"}}]))["principals"][0], json!({"any": true}));
        let user = rules(json!([{"user": "cluster.local/ns/default/sa/productpage"}]));
        let text = user.to_string();
        assert!(text.contains("spiffe://cluster.local/ns/default/sa/productpage"), "{text}");
        let group = rules(json!([{"group": "admins"}])).to_string();
        assert!(group.contains("\"groups\"") && group.contains("admins") && group.contains("iss"), "{group}");
        let namespaces = rules(json!([{"properties": {"source.namespace": "default"}}])).to_string();
        assert!(namespaces.contains(".*/ns/default/.*"), "{namespaces}");
        let negated = rules(json!([{"notNames": ["cluster.local/ns/foo/sa/x"], "notIps": ["10.0.0.0/8"]}]));
        assert_eq!(negated["principals"][0]["and_ids"]["ids"].as_array().map(Vec::len), Some(2), "{negated}");
        // The methods are the permission.
        assert_eq!(
            anyone["permissions"][0]["and_rules"]["rules"][0]["or_rules"]["rules"][0]["header"]["name"],
            ":method"
        );
    }

    #[test]
    fn permissive_bindings_are_shadow_rules_and_global_permissive_enforces_nothing() {
        let (name, mut spec) = binding(json!([{"user": "*"}]));
        spec["mode"] = json!("PERMISSIVE");
        let config = http(&push(json!({"mode": "ON"}), vec![viewer()], vec![(name, spec)])).expect("filter");
        assert!(config["shadow_rules"]["policies"]["viewer"].is_object(), "{config}");
        assert_eq!(config["rules"]["policies"], Value::Null, "nothing enforced allows it");
        let global = json!({"mode": "ON", "enforcementMode": "PERMISSIVE"});
        let config = http(&push(global, vec![viewer()], vec![binding(json!([{"user": "*"}]))])).expect("filter");
        assert!(config.get("rules").is_none_or(Value::is_null), "no enforced rules at all: {config}");
        assert!(config["shadow_rules"]["policies"]["viewer"].is_object(), "{config}");
        let nothing_bound = http(&push(json!({"mode": "ON", "enforcementMode": "PERMISSIVE"}), vec![], vec![]));
        assert!(nothing_bound.expect("filter").get("shadow_rules").is_some(), "a shadow deny-all");
    }

    #[test]
    fn a_gateway_follows_the_service_of_its_address() {
        let gateway_service = crate::testing::service_entry(
            "istio-system",
            json!({"hosts": ["istio-ingressgateway.istio-system.svc.cluster.local"],
                   "ports": [{"number": 80, "name": "http2", "protocol": "HTTP2"}],
                   "location": "MESH_INTERNAL", "resolution": "STATIC",
                   "endpoints": [{"address": "10.44.1.2", "labels": {"istio": "ingressgateway"}}]}),
        );
        let mut gateway = crate::testing::sidecar("istio-system", "10.44.1.2", &[("istio", "ingressgateway")]);
        gateway.kind = crate::node::ProxyKind::Router;
        let mut on = push(json!({"mode": "ON"}), vec![], vec![]);
        on.services.extend(gateway_service.into_iter().map(|s| (s.hostname.clone(), std::sync::Arc::new(s))));
        assert!(filters_for_gateway(&on, &gateway).http.is_some(), "ON covers the gateway's namespace too");
        on.rbac_config = Some(named(
            "istio.rbac.v1alpha1.RbacConfig",
            "",
            "default",
            json!({"mode": "ON_WITH_INCLUSION", "inclusion": {"namespaces": ["default"]}}),
        ));
        assert!(filters_for_gateway(&on, &gateway).is_empty(), "not an included namespace");
        on.rbac_config = Some(named("istio.rbac.v1alpha1.RbacConfig", "", "default", json!({"mode": "ON"})));
        let stranger = crate::testing::sidecar("istio-system", "10.44.9.9", &[]);
        assert!(filters_for_gateway(&on, &stranger).is_empty(), "no service at its address");
    }

    #[test]
    fn tcp_drops_what_needs_http_and_inline_actions_are_their_own_policy() {
        let roles = vec![viewer(), ("ports", json!({"rules": [{"services": ["*"], "ports": [8000]}]}))];
        let bindings = vec![
            binding(json!([{"user": "*"}])),
            (
                "bind-ports",
                json!({"subjects": [{"user": "*"}, {"groups": ["g"]}], "roleRef": {"kind": "ServiceRole", "name": "ports"}}),
            ),
            ("inline", json!({"subjects": [{"user": "*"}], "actions": [{"services": ["*"], "paths": ["/x"]}]})),
        ];
        let push = push(json!({"mode": "ON"}), roles, bindings);
        let config = tcp(&push);
        let policies = &config["rules"]["policies"];
        assert!(policies.get("viewer").is_none(), "a GET-only role is dropped on TCP: {config}");
        assert_eq!(policies["ports"]["principals"].as_array().map(Vec::len), Some(1), "the group subject is dropped");
        let http = http(&push).expect("filter");
        assert!(http["rules"]["policies"]["binding[inline]"].is_object(), "{http}");
    }
}
