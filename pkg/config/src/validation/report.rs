//! What the rules share while they walk an object: the report they add violations to, the
//! object's facts besides its spec, and the spec decoded into its generated type. The rules
//! themselves live in the sibling modules; the entry points in `validation`.

use std::fmt;

use istio_api::kinds::Kind;

/// One problem found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending field from the top of the object, e.g. `spec.http[0].timeout`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Collects violations while the rules walk an object.
#[derive(Debug, Default)]
pub(crate) struct Report {
    violations: Vec<Violation>,
}

impl Report {
    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation { field: field.into(), message: message.into() });
    }

    /// Records `result` as a violation at `field` when it is an error.
    pub(crate) fn check(&mut self, field: impl Into<String>, result: Result<(), impl fmt::Display>) {
        if let Err(message) = result {
            self.error(field, message.to_string());
        }
    }

    pub(crate) fn into_violations(self) -> Vec<Violation> {
        self.violations
    }
}

/// What some rules need to know about the object besides its spec.
pub(crate) struct Context<'a> {
    pub name: &'a str,
}

/// Decodes an already-checked spec into its generated type.
pub(crate) fn typed<T: prost::Message + Default>(
    kind: &Kind,
    spec: &serde_json::Value,
) -> Result<T, istio_api::json::JsonError> {
    istio_api::json::decode(kind.proto, spec)
}
