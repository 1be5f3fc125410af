//! The situations of 1.4.6's `TestAuthZConvert` table, with inputs written here.

use super::*;

const ROLE_TWO_SERVICES: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: viewer, namespace: shop}\nspec:\n  rules:\n  - services: [cart, checkout]\n    methods: [GET]\n";
const ROLE_ONE_SERVICE: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: viewer, namespace: shop}\nspec:\n  rules:\n  - services: [cart.shop.svc.cluster.local]\n    methods: [GET]\n    paths: [/items]\n";
const ROLE_ALL_SERVICES: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: viewer, namespace: shop}\nspec:\n  rules:\n  - services: ['*']\n    methods: [GET]\n";
const ROLE_PREFIX_SUFFIX: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: viewer, namespace: shop}\nspec:\n  rules:\n  - services: ['cart*', '*-api']\n    methods: [GET]\n";
const ROLE_TWO_RULES: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: viewer, namespace: shop}\nspec:\n  rules:\n  - services: ['*']\n    methods: [GET]\n  - services: [cart, checkout]\n    methods: [POST]\n";
const ONE_SUBJECT: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: bind-viewer, namespace: shop}\nspec:\n  subjects:\n  - user: cluster.local/ns/shop/sa/frontend\n  roleRef: {kind: ServiceRole, name: viewer}\n";
const TWO_SUBJECTS: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: bind-viewer, namespace: shop}\nspec:\n  subjects:\n  - properties: {source.namespace: istio-system}\n  - user: alice\n    properties: {source.namespace: shop}\n  roleRef: {kind: ServiceRole, name: viewer}\n";
const GROUP_SUBJECT: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: bind-viewer, namespace: shop}\nspec:\n  subjects:\n  - group: admins\n  roleRef: {kind: ServiceRole, name: viewer}\n";
const RBAC_ON: &str =
    "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: 'ON'}\n";
const RBAC_INCLUSION: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: ON_WITH_INCLUSION\n  inclusion: {namespaces: [shop, bank]}\n";
const RBAC_EXCLUSION: &str = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: ON_WITH_EXCLUSION\n  exclusion: {namespaces: [shop, bank]}\n";
const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec: {selector: {app: cart}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: checkout, namespace: shop}\nspec: {selector: {app: checkout}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: payments-api, namespace: shop}\nspec: {selector: {app: payments}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: headless, namespace: shop}\nspec: {}\n";

fn objects(documents: &[&str]) -> Vec<Object> {
    documents.iter().flat_map(|text| istio_config::yaml::parse_objects("input", text).0).map(|s| s.object).collect()
}

fn run(documents: &[&str], with_services: bool) -> (anyhow::Result<String>, Vec<String>) {
    let mut warnings = Vec::new();
    let services = if with_services { objects(&[SERVICES]) } else { Vec::new() };
    let mut warn = |message: String| warnings.push(message);
    let inputs = Inputs {
        rbac: objects(documents),
        services: services_by_namespace(&services, &mut warn),
        root_namespace: "mesh-root".to_string(),
    };
    let result = convert(&inputs, &mut warn);
    (result, warnings)
}

fn policy_yaml(name: &str, from: &str, operation: &str, selector: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  rules:\n  - from:\n{from}    to:\n    - operation:\n{operation}  selector:\n    matchLabels:{selector}\n---\n"
    )
}

const FROM_TWO: &str = "    - source:\n        namespaces:\n        - istio-system\n    - source:\n        namespaces:\n        - shop\n        principals:\n        - alice\n";
const FROM_ONE: &str = "    - source:\n        principals:\n        - cluster.local/ns/shop/sa/frontend\n";
const GET: &str = "        methods:\n        - GET\n";
const DENY_GLOBAL: &str = "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: global-deny-all\n  namespace: mesh-root\nspec:\n  {}\n---\n";

#[test]
fn one_rule_with_two_services() {
    let (out, _) = run(&[ROLE_TWO_SERVICES, TWO_SUBJECTS, RBAC_ON], true);
    let expected = format!(
        "{DENY_GLOBAL}{}{}",
        policy_yaml("service-cart-rule0-target0", FROM_TWO, GET, "\n      app: cart"),
        policy_yaml("service-checkout-rule0-target0", FROM_TWO, GET, "\n      app: checkout")
    );
    assert_eq!(out.unwrap(), expected);
}

#[test]
fn a_group_subject_stops_the_conversion() {
    let (out, _) = run(&[ROLE_ONE_SERVICE, GROUP_SUBJECT, RBAC_ON], true);
    let error = format!("{:#}", out.unwrap_err());
    assert_eq!(
        error,
        "failed to convert policies: cannot convert binding to sources: serviceRoleBinding with group is not supported"
    );
}

#[test]
fn without_a_cluster_rbac_config_or_bindings_nothing_is_made() {
    let (out, warnings) = run(&[ROLE_ONE_SERVICE], true);
    assert_eq!(out.unwrap(), "");
    assert!(warnings.iter().any(|w| w.contains("no ClusterRbacConfig found")), "{warnings:?}");
}

#[test]
fn one_rule_with_one_fqdn_service_and_paths() {
    let (out, _) = run(&[ROLE_ONE_SERVICE, ONE_SUBJECT, RBAC_ON], true);
    let operation = "        methods:\n        - GET\n        paths:\n        - /items\n";
    let expected = format!(
        "{DENY_GLOBAL}{}",
        policy_yaml("service-cart.shop.svc.cluster.local-rule0-target0", FROM_ONE, operation, "\n      app: cart")
    );
    assert_eq!(out.unwrap(), expected);
}

#[test]
fn prefix_and_suffix_services() {
    let (out, _) = run(&[ROLE_PREFIX_SUFFIX, ONE_SUBJECT, RBAC_ON], true);
    let expected = format!(
        "{DENY_GLOBAL}{}{}",
        policy_yaml("service-cartwildcard-rule0-target0", FROM_ONE, GET, "\n      app: cart"),
        policy_yaml("service-wildcard-api-rule0-target0", FROM_ONE, GET, "\n      app: payments")
    );
    assert_eq!(out.unwrap(), expected);
}

#[test]
fn every_service() {
    let (out, _) = run(&[ROLE_ALL_SERVICES, TWO_SUBJECTS, RBAC_ON], true);
    let expected = format!("{DENY_GLOBAL}{}", policy_yaml("service-wildcard-rule0-target0", FROM_TWO, GET, " {}"));
    assert_eq!(out.unwrap(), expected);
}

#[test]
fn inclusion_and_exclusion() {
    let deny = |ns: &str| {
        format!("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {ns}-deny-all\n  namespace: {ns}\nspec:\n  {{}}\n---\n")
    };
    let allow = |ns: &str| {
        format!("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: {ns}-allow-all\n  namespace: {ns}\nspec:\n  rules:\n    - {{}}\n---\n")
    };
    let wildcard = policy_yaml("service-wildcard-rule0-target0", FROM_TWO, GET, " {}");
    let (out, _) = run(&[ROLE_ALL_SERVICES, TWO_SUBJECTS, RBAC_INCLUSION], true);
    assert_eq!(out.unwrap(), format!("{}{}{wildcard}", deny("shop"), deny("bank")));
    let (out, _) = run(&[ROLE_ALL_SERVICES, TWO_SUBJECTS, RBAC_EXCLUSION], true);
    assert_eq!(out.unwrap(), format!("{DENY_GLOBAL}{}{}{wildcard}", allow("shop"), allow("bank")));
    // The ClusterRbacConfig alone.
    assert_eq!(run(&[RBAC_ON], false).0.unwrap(), DENY_GLOBAL);
    assert_eq!(run(&[RBAC_INCLUSION], false).0.unwrap(), format!("{}{}", deny("shop"), deny("bank")));
    assert_eq!(run(&[RBAC_EXCLUSION], false).0.unwrap(), format!("{DENY_GLOBAL}{}{}", allow("shop"), allow("bank")));
    // Service-level inclusion is refused with a warning; the roles are still converted.
    let services_included = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: ON_WITH_INCLUSION\n  inclusion: {services: [cart.shop.svc.cluster.local]}\n";
    let (out, warnings) = run(&[ROLE_ALL_SERVICES, TWO_SUBJECTS, services_included], true);
    assert_eq!(out.unwrap(), wildcard);
    assert!(warnings.iter().any(|w| w.contains("service-level ClusterRbacConfig")), "{warnings:?}");
}

#[test]
fn multiple_access_rules() {
    let post = "        methods:\n        - POST\n";
    for (subjects, from) in [(ONE_SUBJECT, FROM_ONE), (TWO_SUBJECTS, FROM_TWO)] {
        let (out, _) = run(&[ROLE_TWO_RULES, subjects], true);
        let expected = format!(
            "{}{}{}",
            policy_yaml("service-wildcard-rule0-target0", from, GET, " {}"),
            policy_yaml("service-cart-rule1-target0", from, post, "\n      app: cart"),
            policy_yaml("service-checkout-rule1-target0", from, post, "\n      app: checkout")
        );
        assert_eq!(out.unwrap(), expected);
    }
}

#[test]
fn unsupported_properties_and_empty_selectors() {
    let binding = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: shop}\nspec:\n  subjects:\n  - properties: {source.principal: cluster.local/ns/shop/sa/x}\n  roleRef: {kind: ServiceRole, name: viewer}\n";
    let error = format!("{:#}", run(&[ROLE_TWO_SERVICES, binding], true).0.unwrap_err());
    assert!(error.ends_with("property source.principal is not supported"), "{error}");
    let (_, warnings) = run(&[ROLE_TWO_SERVICES, ONE_SUBJECT], true);
    assert!(warnings.iter().any(|w| w == "ignored service with empty selector: headless.shop"), "{warnings:?}");
}
