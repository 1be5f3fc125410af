//! Config Mixer cannot use is reported with the object, the field and 1.4's message, and the
//! rest of the config still takes effect.

use std::collections::BTreeMap;

use istio_config::object::{Object, ObjectKey};
use mixer::table::compile;
use mixer::Environment;

fn objects(yaml: &str) -> BTreeMap<ObjectKey, Object> {
    let (parsed, errors) = istio_config::yaml::parse_objects("test.yaml", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    parsed
        .into_iter()
        .map(|mut source| {
            source.object.default_namespace("default");
            (source.object.key(), source.object)
        })
        .collect()
}

const BASE: &str = r#"
apiVersion: config.istio.io/v1alpha2
kind: attributemanifest
metadata: {name: istioproxy, namespace: istio-system}
spec:
  attributes:
    destination.labels: {valueType: STRING_MAP}
    source.ip: {valueType: IP_ADDRESS}
    request.size: {valueType: INT64}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: no}}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotas}
spec: {compiledAdapter: memquota, params: {quotas: [{name: other.instance.default, maxAmount: 1, validDuration: 1s}]}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: count}
spec:
  compiledTemplate: quota
  params:
    dimensions:
      d: destination.labels["app"] | "x"
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: broken}
spec: {compiledTemplate: listentry, params: {value: nosuch.attribute}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: good}
spec: {actions: [{handler: deny, instances: [nothing]}]}
"#;

fn rule(name: &str, spec: &str) -> String {
    format!("---\napiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

#[tokio::test]
async fn every_bad_reference_is_named_and_the_rest_applies() {
    let yaml = [
        BASE.to_string(),
        rule("nohandler", "{actions: [{handler: missing, instances: [nothing]}]}"),
        rule("noinstance", "{actions: [{handler: deny, instances: [missing]}]}"),
        rule("twice", "{actions: [{handler: deny, instances: [nothing, nothing]}]}"),
        rule("wrongtemplate", "{actions: [{handler: deny, instances: [broken]}]}"),
        rule("notbool", "{match: request.size, actions: [{handler: deny, instances: [nothing]}]}"),
        rule("unknownattr", "{match: 'foo == \"x\"', actions: [{handler: deny, instances: [nothing]}]}"),
        rule("unparsable", "{match: 'flurb++', actions: [{handler: deny, instances: [nothing]}]}"),
        rule("nolimit", "{actions: [{handler: quotas, instances: [count]}]}"),
    ]
    .concat();
    let table = compile(1, &objects(&yaml), None, &Environment::default(), "istio-system").await;
    let errors: Vec<String> = table.errors.iter().map(ToString::to_string).collect();
    for expected in [
        "rule default/nohandler: action='nohandler.rule.default[0]': Handler not found: handler='missing'",
        "rule default/noinstance: action='noinstance.rule.default[0]': Instance not found: instance='missing'",
        "rule default/twice: action='twice.rule.default[0]': action specified the same instance multiple times: instance='nothing.instance.default',",
        "instance default/broken: instance='broken.instance.default': failed to evaluate expression for field 'Value'; unknown attribute nosuch.attribute",
        "rule default/notbool: rule='notbool.rule.default'.Match: expression 'request.size' evaluated to type INT64, expected type BOOL",
        "rule default/unknownattr: rule='unknownattr.rule.default'.Match: unknown attribute foo",
        "rule default/unparsable: rule='unparsable.rule.default'.Match: unable to parse expression 'flurb++'",
        "handler default/quotas: handler='quotas.handler.default'.params: adapter instantiation error: did not find limit defined for quota count.instance.default",
    ] {
        assert!(errors.iter().any(|error| error.starts_with(expected)), "missing {expected:?} in {errors:#?}");
    }
    // The good rule still applies.
    assert_eq!(table.routes("default").check.len(), 1);
    assert_eq!(table.counts.rules, 3, "good, twice (one instance left) and nolimit compile");
}
