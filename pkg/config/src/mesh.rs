//! Reading a mesh config file (the `mesh` key of Istio's `istio` ConfigMap, as YAML), with every
//! problem reported against the file. Galley and Pilot both load one at start-up.

use std::path::Path;

use crate::validation::mesh_config_violations;

#[derive(Debug, thiserror::Error)]
pub enum MeshFileError {
    #[error("reading mesh config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: invalid YAML: {reason}")]
    Yaml { path: String, reason: String },
    #[error("invalid mesh config:\n{}", .problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

/// Reads and validates a mesh config file; returns it as JSON (an empty file is `{}`).
pub fn load(path: &Path) -> Result<serde_json::Value, MeshFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| MeshFileError::Read { path: name.clone(), source })?;
    parse(&text, &name)
}

/// Parses and validates mesh config text (`name` says where it came from, for errors).
pub fn parse(text: &str, name: &str) -> Result<serde_json::Value, MeshFileError> {
    let name = name.to_string();
    let value: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|error| MeshFileError::Yaml { path: name.clone(), reason: error.to_string() })?;
    let mut value = if value.is_null() { serde_json::json!({}) } else { value };
    locality_switch(&mut value);
    let violations = mesh_config_violations(&value);
    if violations.is_empty() {
        Ok(value)
    } else {
        Err(MeshFileError::Invalid {
            problems: violations.iter().map(|violation| format!("{name}: {violation}")).collect(),
        })
    }
}

/// 1.4's chart wrote its `localityLbSetting.enabled` value into the mesh config, a field the
/// MeshConfig message lacks (1.4 skipped unknown fields): `true` is dropped, `false` turns the
/// setting off, as later versions' real field does.
fn locality_switch(mesh: &mut serde_json::Value) {
    let Some(setting) = mesh.get_mut("localityLbSetting").and_then(serde_json::Value::as_object_mut) else { return };
    let off = setting.remove("enabled") == Some(serde_json::Value::Bool(false));
    if let (true, Some(mesh)) = (off, mesh.as_object_mut()) {
        mesh.remove("localityLbSetting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_valid_files_and_names_the_file_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("mesh");
        std::fs::write(&good, "connectTimeout: 10s\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\n").expect("write");
        assert_eq!(load(&good).expect("valid")["outboundTrafficPolicy"]["mode"], "REGISTRY_ONLY");
        let bad = dir.path().join("bad-mesh");
        std::fs::write(&bad, "connectTimeout: 60s\n").expect("write");
        let error = load(&bad).expect_err("invalid").to_string();
        assert!(error.contains("bad-mesh: connectTimeout"), "{error}");
        assert!(load(&dir.path().join("missing")).expect_err("missing").to_string().contains("missing"));
    }

    #[test]
    fn the_charts_locality_switch_is_read_as_later_versions_do() {
        let on =
            parse("localityLbSetting:\n  enabled: true\n  failover: [{from: r1, to: r2}]\n", "mesh").expect("valid");
        assert_eq!(on["localityLbSetting"], serde_json::json!({"failover": [{"from": "r1", "to": "r2"}]}));
        let bare = parse("localityLbSetting: {enabled: true}\n", "mesh").expect("valid");
        assert_eq!(bare["localityLbSetting"], serde_json::json!({}));
        let off = parse("localityLbSetting: {enabled: false}\n", "mesh").expect("valid");
        assert!(off.get("localityLbSetting").is_none());
        let typo = parse("localityLbSetting: {enable: true}\n", "mesh").expect_err("unknown field");
        assert!(typo.to_string().contains("localityLbSetting"), "{typo}");
    }
}
