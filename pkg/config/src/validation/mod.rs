//! Validation of Istio config objects with the rules Istio 1.4 applied (its
//! `pkg/config/validation` and Mixer's config checks). The entry point decodes an object's `spec`
//! with the proto3 JSON mapping (so unknown fields and wrong types are caught with their path) and
//! then runs the kind's own rules. Every problem names the field path and the reason; callers add
//! the file, line and `Kind namespace/name`.
//!
//! Objects that are not Istio config (Services, Deployments, …) are not validated here.

mod authn;
mod common;
mod invalid;
mod mixer;
mod networking;
mod rbac;
mod report;

use std::fmt;

use istio_api::kinds::{self, Kind};

use crate::object::Object;

pub use common::{host_matches, is_dns1123_label};
pub use report::Violation;
use report::{Context, Report};

/// The problems of one object, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectErrors {
    /// `Kind namespace/name`.
    pub object: String,
    pub violations: Vec<Violation>,
}

impl fmt::Display for ObjectErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> =
            self.violations.iter().map(|violation| format!("{}: {violation}", self.object)).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for ObjectErrors {}

/// Validates one object. Non-Istio objects pass; an Istio group at a version Istio 1.4 did not
/// serve, or an unknown Istio kind, is an error.
pub fn validate_object(object: &Object) -> Result<(), ObjectErrors> {
    let violations = object_violations(object);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ObjectErrors { object: object.display_name(), violations })
    }
}

/// The violations of one object (empty when it is valid or not Istio config).
pub fn object_violations(object: &Object) -> Vec<Violation> {
    let mut report = Report::default();
    let Some(kind) = object.istio_kind() else {
        if kinds::is_istio_group(object.group()) {
            match kinds::lookup_any_version(&object.api_version, &object.kind) {
                Some(known) => report.error(
                    "apiVersion",
                    format!("{} is not served at {}; use {}", object.kind, object.api_version, known.api_version()),
                ),
                None => report.error("kind", format!("unknown kind {} in {}", object.kind, object.group())),
            }
        }
        return report.into_violations();
    };
    validate_metadata(object, kind, &mut report);
    validate_spec(kind, object.name(), object.namespace(), object.spec(), &mut report);
    report.into_violations()
}

fn validate_metadata(object: &Object, kind: &Kind, report: &mut Report) {
    let name = object.name();
    if name.is_empty() {
        report.error("metadata.name", "name is required");
    } else if !common::is_dns1123_subdomain(name) {
        report.error(
            "metadata.name",
            format!("invalid name {name:?}: must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        );
    }
    let namespace = object.namespace();
    if !namespace.is_empty() {
        if !kind.namespaced {
            report.error("metadata.namespace", format!("{} is cluster-scoped and cannot have a namespace", kind.kind));
        } else if !is_dns1123_label(namespace) {
            report.error("metadata.namespace", format!("invalid namespace {namespace:?}"));
        }
    }
}

/// Decodes `spec` into the kind's proto and runs the kind's rules. Used by both whole-object
/// validation and callers that only hold a spec (MCP sinks, tests).
pub(crate) fn validate_spec(kind: &Kind, name: &str, namespace: &str, spec: &serde_json::Value, report: &mut Report) {
    let spec = if spec.is_null() { &serde_json::Value::Object(Default::default()) } else { spec };
    if let Err(error) = istio_api::json::decode_dynamic(kind.proto, spec) {
        report.error(spec_path(&error), error_reason(&error));
        return;
    }
    let _ = namespace;
    let context = Context { name };
    let result = match kind.group {
        "networking.istio.io" => networking::validate(kind, spec, report),
        "authentication.istio.io" => authn::validate(kind, &context, spec, report),
        "rbac.istio.io" | "security.istio.io" => rbac::validate(kind, &context, spec, report),
        "config.istio.io" => mixer::validate(kind, spec, report),
        _ => Ok(()),
    };
    if let Err(error) = result {
        report.error("spec", error.to_string());
    }
}

fn spec_path(error: &istio_api::json::JsonError) -> String {
    match error {
        istio_api::json::JsonError::Mismatch { path, .. } if !path.is_empty() => format!("spec.{path}"),
        _ => "spec".to_string(),
    }
}

fn error_reason(error: &istio_api::json::JsonError) -> String {
    match error {
        istio_api::json::JsonError::Mismatch { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Validates a mesh config (the `mesh` key of the `istio` ConfigMap, or `--meshConfigFile`),
/// given as JSON. Field paths are relative to the mesh config itself.
pub fn mesh_config_violations(mesh: &serde_json::Value) -> Vec<Violation> {
    use istio_api::pb::istio::mesh::v1alpha1::MeshConfig;
    let mut report = Report::default();
    let config: MeshConfig = match istio_api::json::decode(istio_api::kinds::MESH_CONFIG_PROTO, mesh) {
        Ok(config) => config,
        Err(error) => {
            report.error(spec_path(&error).replacen("spec", "", 1).trim_start_matches('.'), error_reason(&error));
            return report.into_violations();
        }
    };
    if config.proxy_listen_port != 0 {
        report.check("proxyListenPort", common::validate_port(i64::from(config.proxy_listen_port)));
    }
    if let Some(timeout) = &config.connect_timeout {
        report.check("connectTimeout", common::validate_duration_range(timeout, 1, 30_000));
    }
    if let Some(timeout) = &config.protocol_detection_timeout {
        if timeout.seconds < 0 || timeout.nanos < 0 {
            report.error("protocolDetectionTimeout", "protocol detection timeout must not be negative");
        }
    }
    if let Some(locality) = &config.locality_lb_setting {
        report.check("localityLbSetting", networking::locality_lb_setting(locality));
    }
    if let Some(proxy) = &config.default_config {
        if !proxy.discovery_address.is_empty() {
            report.check("defaultConfig.discoveryAddress", common::validate_host_port(&proxy.discovery_address));
        }
        if proxy.concurrency < 0 {
            report.error("defaultConfig.concurrency", "concurrency must not be negative");
        }
        for (name, duration) in
            [("drainDuration", &proxy.drain_duration), ("parentShutdownDuration", &proxy.parent_shutdown_duration)]
        {
            if let Some(duration) = duration {
                report.check(format!("defaultConfig.{name}"), common::validate_duration(duration));
            }
        }
    }
    for (index, source) in config.config_sources.iter().enumerate() {
        if source.address.is_empty() {
            report.error(format!("configSources[{index}].address"), "config source address must be set");
        }
    }
    report.into_violations()
}

#[cfg(test)]
mod tests;
