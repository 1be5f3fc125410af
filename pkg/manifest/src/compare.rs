//! Comparing installations, as 1.4's `istioctl manifest diff` and `profile diff` did.
//!
//! Manifests are compared object by object, each object named `Kind:namespace:name`: an object
//! only one side has is reported as missing on the other, and an object both have is compared
//! field by field into a tree of its differences (`spec: {replicas: 1 -> 2}`), with a ConfigMap's
//! embedded YAML documents (the mesh config) compared as trees too. `--select`, `--ignore` and
//! `--rename` narrow the comparison with `Kind:namespace:name` patterns (`*` or an empty part
//! matches anything); an ignore pattern can carry a fourth part, a field path glob
//! (`Deployment:*:istio-pilot:spec.template.spec.containers.[0].image`), that leaves those
//! fields out instead of the whole object. Patterns match the whole name, not a part of it.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

/// What went wrong reading or comparing.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{source_name}: document {index}: {message}")]
    Document { source_name: String, index: usize, message: String },
    #[error("{source_name}: {object} appears twice")]
    Duplicate { source_name: String, object: String },
    #[error("bad resource pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
}

/// The objects of one manifest (a YAML stream), by `Kind:namespace:name`.
pub type ObjectMap = BTreeMap<String, Value>;

/// The key 1.4 named objects by: cluster-scoped kinds it knew have no namespace.
pub fn object_key(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = match kind {
        "ClusterRole" | "ClusterRoleBinding" | "MeshPolicy" => "",
        _ => object["metadata"]["namespace"].as_str().unwrap_or_default(),
    };
    format!("{kind}:{namespace}:{name}")
}

/// Reads a YAML stream (`source_name` names it in errors); empty documents and `List`s are
/// handled as kubectl does.
pub fn parse_objects(text: &str, source_name: &str) -> Result<ObjectMap, CompareError> {
    let mut objects = ObjectMap::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let failed = |message: String| CompareError::Document { source_name: source_name.to_string(), index, message };
        let value: Value = serde::Deserialize::deserialize(document).map_err(|error| failed(error.to_string()))?;
        let items = match value {
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                map.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
            }
            Value::Object(_) => vec![value],
            other => return Err(failed(format!("expected an object, found {other}"))),
        };
        for item in items {
            if item["kind"].as_str().is_none() || item["metadata"]["name"].as_str().is_none() {
                return Err(failed("an object needs kind and metadata.name".to_string()));
            }
            let key = object_key(&item);
            if objects.insert(key.clone(), item).is_some() {
                return Err(CompareError::Duplicate { source_name: source_name.to_string(), object: key });
            }
        }
    }
    Ok(objects)
}

/// A `Kind:namespace:name` pattern.
#[derive(Debug, Clone)]
struct ResourcePattern {
    regex: Regex,
    /// The fourth part of an ignore pattern: a field path glob.
    field_glob: Option<Regex>,
}

impl ResourcePattern {
    fn parse(pattern: &str) -> Result<ResourcePattern, CompareError> {
        let failed =
            |message: &str| CompareError::Pattern { pattern: pattern.to_string(), message: message.to_string() };
        let parts: Vec<&str> = pattern.trim().splitn(4, ':').collect();
        if parts.len() < 3 {
            return Err(failed("expected Kind:namespace:name"));
        }
        let name_regex = parts[..3].iter().map(|part| glob_to_regex(part)).collect::<Vec<_>>().join(":");
        let regex = Regex::new(&format!("^{name_regex}$")).map_err(|error| failed(&error.to_string()))?;
        let field_glob = match parts.get(3).filter(|path| !path.is_empty()) {
            Some(path) => {
                Some(Regex::new(&format!("^{}$", glob_to_regex(path))).map_err(|error| failed(&error.to_string()))?)
            }
            None => None,
        };
        Ok(ResourcePattern { regex, field_glob })
    }

    fn matches(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }
}

/// `*` (or nothing) matches any run of characters, `?` one; everything else is literal.
fn glob_to_regex(glob: &str) -> String {
    if glob.is_empty() {
        return ".*".to_string();
    }
    let mut regex = String::new();
    for character in glob.chars() {
        match character {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex
}

fn parse_patterns(list: &str) -> Result<Vec<ResourcePattern>, CompareError> {
    list.split(',').filter(|item| !item.trim().is_empty()).map(ResourcePattern::parse).collect()
}

/// `--select`, `--ignore` and `--rename` as 1.4 spelled them (comma-separated; a rename is
/// `FROM->TO`, where an empty or `*` part of TO keeps the old part).
#[derive(Debug, Clone, Default)]
pub struct DiffFilters {
    select: Vec<ResourcePattern>,
    ignore: Vec<ResourcePattern>,
    rename: Vec<(ResourcePattern, [String; 3])>,
}

impl DiffFilters {
    pub fn parse(select: &str, ignore: &str, rename: &str) -> Result<DiffFilters, CompareError> {
        let mut renames = Vec::new();
        for pair in rename.split(',').filter(|pair| !pair.trim().is_empty()) {
            let failed =
                |message: &str| CompareError::Pattern { pattern: pair.to_string(), message: message.to_string() };
            let (from, to) = pair.split_once("->").ok_or_else(|| failed("expected FROM->TO"))?;
            let to_parts: Vec<&str> = to.trim().split(':').collect();
            let [kind, namespace, name] = to_parts.as_slice() else {
                return Err(failed("the new name must be Kind:namespace:name"));
            };
            renames.push((ResourcePattern::parse(from)?, [kind.to_string(), namespace.to_string(), name.to_string()]));
        }
        let select = if select.trim().is_empty() { "::" } else { select };
        Ok(DiffFilters { select: parse_patterns(select)?, ignore: parse_patterns(ignore)?, rename: renames })
    }

    fn renamed(&self, key: &str) -> String {
        for (from, to) in &self.rename {
            if from.matches(key) {
                let old: Vec<&str> = key.splitn(3, ':').collect();
                let parts: Vec<&str> = (0..3)
                    .map(|i| {
                        if to[i].is_empty() || to[i] == "*" {
                            old.get(i).copied().unwrap_or_default()
                        } else {
                            &to[i]
                        }
                    })
                    .collect();
                return parts.join(":");
            }
        }
        key.to_string()
    }

    /// Selected and not ignored as a whole (an ignore pattern with a field path ignores fields).
    fn keeps(&self, key: &str) -> bool {
        self.select.iter().any(|pattern| pattern.matches(key))
            && !self.ignore.iter().any(|pattern| pattern.field_glob.is_none() && pattern.matches(key))
    }

    fn ignored_fields(&self, key: &str) -> Vec<&Regex> {
        self.ignore
            .iter()
            .filter(|pattern| pattern.matches(key))
            .filter_map(|pattern| pattern.field_glob.as_ref())
            .collect()
    }
}

/// 1.4's report of two manifests' differences; empty when they are the same.
pub fn manifest_diff(a: &ObjectMap, b: &ObjectMap, filters: &DiffFilters) -> String {
    let a: ObjectMap = a.iter().map(|(key, object)| (filters.renamed(key), object.clone())).collect();
    let mut out = BTreeMap::new();
    for (key, object) in a.iter().filter(|(key, _)| filters.keeps(key)) {
        match b.get(key) {
            None => {
                out.insert(key.clone(), format!("\n\nObject {key} is missing in B:\n\n"));
            }
            Some(other) => {
                if let Some(tree) = object_diff(object, other, &filters.ignored_fields(key)) {
                    let yaml = serde_yaml::to_string(&tree).unwrap_or_else(|error| error.to_string());
                    out.insert(key.clone(), format!("\n\nObject {key} has diffs:\n\n{yaml}"));
                }
            }
        }
    }
    for key in b.keys().filter(|key| filters.keeps(key) && !a.contains_key(*key)) {
        out.insert(key.clone(), format!("\n\nObject {key} is missing in A:\n\n"));
    }
    out.into_values().collect()
}

/// The tree of differences between two objects, or None when they are the same. Each leaf is
/// `old -> new`, `old ->` (gone) or `-> new` (added); list items are keyed `[i]`.
pub fn object_diff(a: &Value, b: &Value, ignored_fields: &[&Regex]) -> Option<Value> {
    let (mut a, mut b) = (a.clone(), b.clone());
    for object in [&mut a, &mut b] {
        if object["kind"] == "ConfigMap" {
            expand_embedded_yaml(object);
        }
    }
    let mut tree = Map::new();
    diff_into(&mut tree, &mut Vec::new(), &a, &b, ignored_fields);
    (!tree.is_empty()).then_some(Value::Object(tree))
}

/// A ConfigMap's values that are YAML maps themselves are compared as trees.
fn expand_embedded_yaml(config_map: &mut Value) {
    if let Some(data) = config_map.get_mut("data").and_then(Value::as_object_mut) {
        for value in data.values_mut() {
            if let Some(text) = value.as_str() {
                if let Ok(parsed @ Value::Object(_)) = serde_yaml::from_str::<Value>(text) {
                    *value = parsed;
                }
            }
        }
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn diff_into(tree: &mut Map<String, Value>, path: &mut Vec<String>, a: &Value, b: &Value, ignored: &[&Regex]) {
    let dotted = path.join(".");
    if !path.is_empty() && ignored.iter().any(|glob| glob.is_match(&dotted)) {
        return;
    }
    match (a, b) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
            for key in keys {
                path.push(key.clone());
                let (x, y) = (left.get(key.as_str()), right.get(key.as_str()));
                match (x, y) {
                    (Some(x), Some(y)) => diff_into(tree, path, x, y, ignored),
                    _ => leaf(tree, path, x, y, ignored),
                }
                path.pop();
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            for index in 0..left.len().max(right.len()) {
                path.push(format!("[{index}]"));
                match (left.get(index), right.get(index)) {
                    (Some(x), Some(y)) => diff_into(tree, path, x, y, ignored),
                    (x, y) => leaf(tree, path, x, y, ignored),
                }
                path.pop();
            }
        }
        (x, y) if x != y => leaf(tree, path, Some(x), Some(y), ignored),
        _ => {}
    }
}

fn leaf(tree: &mut Map<String, Value>, path: &[String], a: Option<&Value>, b: Option<&Value>, ignored: &[&Regex]) {
    if ignored.iter().any(|glob| glob.is_match(&path.join("."))) {
        return;
    }
    let text = match (is_empty(a), is_empty(b)) {
        (false, true) => format!("{} ->", show(a.unwrap_or(&Value::Null))),
        (true, false) => format!("-> {}", show(b.unwrap_or(&Value::Null))),
        (false, false) => format!("{} -> {}", show(a.unwrap_or(&Value::Null)), show(b.unwrap_or(&Value::Null))),
        (true, true) => return,
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for parent in parents {
        let entry = node.entry(parent.clone()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(map) = entry else { return };
        node = map;
    }
    node.insert(last.clone(), Value::String(text));
}

/// A line diff of two texts: every line, prefixed `-` (only in A), `+` (only in B) or a space.
pub fn text_diff(a: &str, b: &str) -> String {
    if a == b {
        return String::new();
    }
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(a, b).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-pilot, namespace: istio-system}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - {name: discovery, image: docker.io/istio/pilot:1.4.6}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    enableTracing: true
    accessLogFile: \"\"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istio-pilot-istio-system, namespace: ignored}
---
apiVersion: v1
kind: Service
metadata: {name: istio-pilot, namespace: istio-system}
";

    const B: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-pilot, namespace: istio-system}
spec:
  replicas: 2
  template:
    spec:
      containers:
      - {name: discovery, image: docker.io/istio/pilot:1.4.7}
      - {name: istio-proxy}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    enableTracing: true
    accessLogFile: /dev/stdout
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: istio-pilot-istio-system}
---
apiVersion: v1
kind: Service
metadata: {name: istio-control, namespace: istio-system}
";

    fn maps() -> (ObjectMap, ObjectMap) {
        (parse_objects(A, "a.yaml").expect("a"), parse_objects(B, "b.yaml").expect("b"))
    }

    #[test]
    fn objects_are_keyed_as_1_4_keyed_them() {
        let (a, _) = maps();
        let keys: Vec<&String> = a.keys().collect();
        assert_eq!(
            keys,
            [
                "ClusterRole::istio-pilot-istio-system",
                "ConfigMap:istio-system:istio",
                "Deployment:istio-system:istio-pilot",
                "Service:istio-system:istio-pilot"
            ]
        );
    }

    #[test]
    fn differences_are_a_tree_of_old_and_new_values() {
        let (a, b) = maps();
        let diff = manifest_diff(&a, &b, &DiffFilters::default_all());
        assert!(diff.contains("Object Deployment:istio-system:istio-pilot has diffs:"), "{diff}");
        assert!(diff.contains("replicas: 1 -> 2"), "{diff}");
        assert!(diff.contains("image: docker.io/istio/pilot:1.4.6 -> docker.io/istio/pilot:1.4.7"), "{diff}");
        assert!(diff.contains("'[1]': -> {\"name\":\"istio-proxy\"}"), "{diff}");
        // The mesh config is compared key by key, not as one string.
        assert!(diff.contains("accessLogFile: -> /dev/stdout"), "{diff}");
        assert!(!diff.contains("enableTracing"), "{diff}");
        assert!(diff.contains("Object Service:istio-system:istio-pilot is missing in B:"), "{diff}");
        assert!(diff.contains("Object Service:istio-system:istio-control is missing in A:"), "{diff}");
        // A cluster role is matched whatever namespace it names; the stray field is a difference.
        assert!(diff.contains("Object ClusterRole::istio-pilot-istio-system has diffs:"), "{diff}");
        assert!(diff.contains("namespace: ignored ->"), "{diff}");
        // Objects come in name order.
        let order: Vec<usize> =
            ["ConfigMap:", "Deployment:", "Service:istio-system:istio-control", "Service:istio-system:istio-pilot"]
                .iter()
                .map(|key| diff.find(key).expect(key))
                .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{diff}");
    }

    #[test]
    fn the_same_manifest_has_no_differences() {
        let (a, _) = maps();
        assert_eq!(manifest_diff(&a, &a, &DiffFilters::default_all()), "");
    }

    #[test]
    fn select_ignore_and_rename_narrow_the_comparison() {
        let (a, b) = maps();
        let only_deployments = DiffFilters::parse("Deployment:istio-system:*", "", "").expect("filters");
        let diff = manifest_diff(&a, &b, &only_deployments);
        assert!(diff.contains("Deployment:") && !diff.contains("Service:") && !diff.contains("ConfigMap:"), "{diff}");

        let ignore_fields = DiffFilters::parse(
            "Deployment:*:*,ClusterRole::",
            "Deployment:*:istio-pilot:spec.template.spec.containers.*,Deployment::istio-pilot:spec.replicas,\
             ClusterRole:::metadata.namespace",
            "",
        )
        .expect("filters");
        assert_eq!(manifest_diff(&a, &b, &ignore_fields), "");

        let ignore_objects =
            DiffFilters::parse("::", "Service::,ConfigMap:*:*,Deployment:*:*,ClusterRole::", "").expect("filters");
        assert_eq!(manifest_diff(&a, &b, &ignore_objects), "");

        let renamed =
            DiffFilters::parse("Service:*:*", "", "Service:*:istio-pilot->Service:*:istio-control").expect("filters");
        // Renamed, the two services are compared with each other: only the name differs.
        let diff = manifest_diff(&a, &b, &renamed);
        assert!(diff.contains("Object Service:istio-system:istio-control has diffs:"), "{diff}");
        assert!(diff.contains("name: istio-pilot -> istio-control") && !diff.contains("missing"), "{diff}");

        // A pattern is the whole name: `Service` does not select ServiceAccounts.
        let services = DiffFilters::parse("Service:*:*", "", "").expect("filters");
        assert!(!services.keeps("ServiceAccount:istio-system:istio-pilot"));
        assert!(services.keeps("Service:istio-system:istio-pilot"));
    }

    #[test]
    fn bad_input_is_named() {
        let error = parse_objects("kind: Service\nmetadata: {}\n", "x.yaml").expect_err("no name");
        assert!(error.to_string().starts_with("x.yaml: document 0:"), "{error}");
        let error = parse_objects(&format!("{A}---\n{A}"), "twice.yaml").expect_err("duplicate");
        assert!(error.to_string().contains("appears twice"), "{error}");
        let error = DiffFilters::parse("Deployment", "", "").expect_err("short pattern");
        assert!(error.to_string().contains("Kind:namespace:name"), "{error}");
        let error = DiffFilters::parse("::", "", "Service:*:a").expect_err("no arrow");
        assert!(error.to_string().contains("FROM->TO"), "{error}");
    }

    #[test]
    fn text_diff_marks_each_line() {
        assert_eq!(text_diff("a\nb\n", "a\nb\n"), "");
        assert_eq!(text_diff("a\nb\n", "a\nc\n"), " a\n-b\n+c\n");
    }

    impl DiffFilters {
        fn default_all() -> DiffFilters {
            DiffFilters::parse("::", "", "").expect("filters")
        }
    }
}
