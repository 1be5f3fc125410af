//! One generated object and the component it belongs to.

use serde_json::Value;

/// One generated object and the component it belongs to (`Base`, `Pilot`, …, 1.4's names).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub component: &'static str,
    pub object: Value,
}

impl Manifest {
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects).
    pub fn display_name(&self) -> String {
        let kind = self.object["kind"].as_str().unwrap_or_default();
        let name = self.object["metadata"]["name"].as_str().unwrap_or_default();
        match self.object["metadata"]["namespace"].as_str() {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}
