//! Installation profiles (`install/profiles/*.yaml`, shaped as 1.4's `IstioControlPlane`)
//! and `--set path=value` overrides.

use anyhow::{bail, Context};
use serde_json::Value;

/// The built-in profiles, by name.
pub const PROFILES: [(&str, &str); 4] = [
    ("default", include_str!("../../../install/profiles/default.yaml")),
    ("demo", include_str!("../../../install/profiles/demo.yaml")),
    ("minimal", include_str!("../../../install/profiles/minimal.yaml")),
    ("sds", include_str!("../../../install/profiles/sds.yaml")),
];

pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|(name, _)| *name).collect()
}

/// A profile's text.
pub fn text(name: &str) -> anyhow::Result<&'static str> {
    PROFILES
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, text)| *text)
        .with_context(|| format!("unknown profile {name:?} (profiles: {})", names().join(", ")))
}

/// A profile as JSON with `sets` (`spec.path=value`, or `profile=NAME`) applied.
pub fn resolve(sets: &[String]) -> anyhow::Result<(String, Value)> {
    let mut profile = "default".to_string();
    let mut overrides = Vec::new();
    for set in sets {
        let (path, value) = set.split_once('=').with_context(|| format!("--set {set:?}: expected PATH=VALUE"))?;
        if path == "profile" {
            profile = value.to_string();
        } else {
            overrides.push((path.to_string(), value.to_string()));
        }
    }
    let mut document: Value = serde_yaml::from_str(text(&profile)?).context("parsing the profile")?;
    for (path, value) in overrides {
        let path = path.strip_prefix("spec.").unwrap_or(&path);
        set_path(&mut document["spec"], path, parse_scalar(&value)).with_context(|| format!("--set {path}={value}"))?;
    }
    Ok((profile, document))
}

/// A `--set` value as YAML would read it: booleans, numbers, else a string.
pub fn parse_scalar(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| {
                text.parse::<f64>()
                    .map_err(drop)
                    .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number).ok_or(()))
            })
            .unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// The largest list index a `--set` path may name, as Helm's `--set` limits it.
const MAX_LIST_INDEX: usize = 65536;

/// One element of a `--set` path: an object key, or a list index (`secretVolumes[2]`, or
/// `[2]` as an element of its own, as 1.4's paths write it).
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> anyhow::Result<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if key.is_empty() && rest.is_empty() {
            bail!("empty path element");
        }
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while !rest.is_empty() {
            let close = rest.find(']').with_context(|| format!("{part:?}: an unclosed ["))?;
            let index = rest[1..close].parse::<usize>().with_context(|| format!("{part:?}: not a list index"))?;
            steps.push(Step::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                bail!("{part:?}: text after an index");
            }
        }
    }
    Ok(steps)
}

/// Sets a dotted path, creating objects (and list entries, for an index past a list's end)
/// on the way.
pub fn set_path(target: &mut Value, path: &str, value: Value) -> anyhow::Result<()> {
    let steps = steps(path)?;
    let mut current = target;
    let mut value = Some(value);
    for (at, step) in steps.iter().enumerate() {
        let last = at + 1 == steps.len();
        let here = || path_prefix(&steps[..at]);
        current = match step {
            Step::Key(key) => {
                if current.is_null() {
                    *current = Value::Object(serde_json::Map::new());
                }
                let map = current.as_object_mut().with_context(|| format!("{} is not an object", here()))?;
                let slot = map.entry((*key).to_string()).or_insert(Value::Null);
                if last {
                    *slot = value.take().unwrap_or(Value::Null);
                }
                slot
            }
            Step::Index(index) => {
                if current.is_null() {
                    *current = Value::Array(Vec::new());
                }
                let list = current.as_array_mut().with_context(|| format!("{} is not a list", here()))?;
                if *index >= MAX_LIST_INDEX {
                    bail!("{}[{index}]: a list index must be below {MAX_LIST_INDEX}", here());
                }
                if list.len() <= *index {
                    list.resize(index + 1, Value::Null);
                }
                let slot = &mut list[*index];
                if last {
                    *slot = value.take().unwrap_or(Value::Null);
                }
                slot
            }
        };
    }
    Ok(())
}

fn path_prefix(steps: &[Step<'_>]) -> String {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// Whether a component is enabled in a resolved profile.
pub fn enabled(profile: &Value, path: &str) -> bool {
    profile["spec"].pointer(&format!("/{}/enabled", path.replace('.', "/"))).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_paths_reach_into_lists() {
        let mut values =
            json!({"gateways": {"istio-egressgateway": {"secretVolumes": [{"name": "egressgateway-certs"}]}}});
        let base = "gateways.istio-egressgateway.secretVolumes";
        set_path(&mut values, &format!("{base}[2].name"), json!("nginx-client-certs")).unwrap();
        set_path(&mut values, &format!("{base}.[2].mountPath"), json!("/etc/nginx-client-certs")).unwrap();
        set_path(&mut values, &format!("{base}[0].secretName"), json!("istio-egressgateway-certs")).unwrap();
        let list = &values["gateways"]["istio-egressgateway"]["secretVolumes"];
        assert_eq!(list[0], json!({"name": "egressgateway-certs", "secretName": "istio-egressgateway-certs"}));
        assert_eq!(list[1], Value::Null, "a gap is null until set");
        assert_eq!(list[2], json!({"name": "nginx-client-certs", "mountPath": "/etc/nginx-client-certs"}));
        set_path(&mut values, "matrix[1][0]", json!(1)).unwrap();
        assert_eq!(values["matrix"], json!([null, [1]]));
        for (bad, why) in [
            ("gateways[0]", "is not a list"),
            ("gateways.istio-egressgateway.secretVolumes.name", "is not an object"),
            ("a[x]", "not a list index"),
            ("a[1", "unclosed"),
            ("a[1]b", "text after an index"),
            ("a..b", "empty path element"),
            ("huge[99999999999]", "must be below 65536"),
        ] {
            let error = format!("{:#}", set_path(&mut values, bad, json!(1)).unwrap_err());
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn profiles_resolve_with_overrides() {
        let (name, demo) =
            resolve(&["profile=demo".into(), "values.global.outboundTrafficPolicy.mode=REGISTRY_ONLY".into()])
                .expect("demo");
        assert_eq!(name, "demo");
        assert!(enabled(&demo, "gateways.components.egressGateway"));
        assert_eq!(demo["spec"]["values"]["global"]["outboundTrafficPolicy"]["mode"], "REGISTRY_ONLY");
        let (_, minimal) = resolve(&["profile=minimal".into()]).expect("minimal");
        assert!(!enabled(&minimal, "autoInjection"));
        assert!(resolve(&["profile=huge".into()]).is_err());
        for (name, text) in PROFILES {
            let value: Value = serde_yaml::from_str(text).expect(name);
            assert_eq!(value["metadata"]["name"], name);
        }
    }
}
