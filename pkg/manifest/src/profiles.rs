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

/// Sets a dotted path, creating objects on the way.
pub fn set_path(target: &mut Value, path: &str, value: Value) -> anyhow::Result<()> {
    let mut current = target;
    let parts: Vec<&str> = path.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        if part.is_empty() {
            bail!("empty path element");
        }
        if !current.is_object() {
            if current.is_null() {
                *current = Value::Object(serde_json::Map::new());
            } else {
                bail!("{} is not an object", parts[..index].join("."));
            }
        }
        let map = current.as_object_mut().expect("object");
        if index + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return Ok(());
        }
        current = map.entry((*part).to_string()).or_insert(Value::Null);
    }
    Ok(())
}

/// Whether a component is enabled in a resolved profile.
pub fn enabled(profile: &Value, path: &str) -> bool {
    profile["spec"].pointer(&format!("/{}/enabled", path.replace('.', "/"))).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

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
