//! The messages analysis reports: 1.4's message catalogue (`IST0001`…`IST0119`, with their
//! levels and templates), where a message came from (its origin, named as istioctl names
//! objects), and how messages print and sort.

use std::cmp::Ordering;
use std::fmt;

/// How bad a message is. Sorted worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    /// All levels, as 1.4 listed them for `--failure-threshold` and `--output-threshold`.
    pub const ALL: [Level; 3] = [Level::Info, Level::Warning, Level::Error];

    /// The printed name (`Warn` for warnings, as 1.4 printed it).
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "Error",
            Level::Warning => "Warn",
            Level::Info => "Info",
        }
    }

    /// Parses a level name, ignoring case.
    pub fn parse(text: &str) -> Result<Level, UnknownLevel> {
        Level::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownLevel(text.to_string()))
    }

    /// Whether this level is as bad as `threshold` or worse.
    pub fn at_least(self, threshold: Level) -> bool {
        self <= threshold
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level name that is none of `Info`, `Warn` and `Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} not a valid option, please choose from: [Info Warn Error]")]
pub struct UnknownLevel(pub String);

/// One entry of the message catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageType {
    pub name: &'static str,
    pub code: &'static str,
    pub level: Level,
    pub description: &'static str,
}

macro_rules! message_types {
    ($($constant:ident = $name:literal, $code:literal, $level:ident, $description:literal;)*) => {
        $(pub static $constant: MessageType =
            MessageType { name: $name, code: $code, level: Level::$level, description: $description };)*
        /// Every message type analysis can report.
        pub static ALL_MESSAGE_TYPES: &[&MessageType] = &[$(&$constant),*];
    };
}

message_types! {
    INTERNAL_ERROR = "InternalError", "IST0001", Error,
        "There was an internal error in the toolchain. This is almost always a bug in the implementation.";
    DEPRECATED = "Deprecated", "IST0002", Warning,
        "A feature that the configuration is depending on is now deprecated.";
    REFERENCED_RESOURCE_NOT_FOUND = "ReferencedResourceNotFound", "IST0101", Error,
        "A resource being referenced does not exist.";
    NAMESPACE_NOT_INJECTED = "NamespaceNotInjected", "IST0102", Warning,
        "A namespace is not enabled for Istio injection.";
    POD_MISSING_PROXY = "PodMissingProxy", "IST0103", Warning, "A pod is missing the Istio proxy.";
    GATEWAY_PORT_NOT_ON_WORKLOAD = "GatewayPortNotOnWorkload", "IST0104", Warning, "Unhandled gateway port";
    ISTIO_PROXY_VERSION_MISMATCH = "IstioProxyVersionMismatch", "IST0105", Warning,
        "The version of the Istio proxy running on the pod does not match the version used by the istio injector.";
    SCHEMA_VALIDATION_ERROR = "SchemaValidationError", "IST0106", Error,
        "The resource has a schema validation error.";
    MISPLACED_ANNOTATION = "MisplacedAnnotation", "IST0107", Warning,
        "An Istio annotation is applied to the wrong kind of resource.";
    UNKNOWN_ANNOTATION = "UnknownAnnotation", "IST0108", Warning,
        "An Istio annotation is not recognized for any kind of resource";
    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS = "ConflictingMeshGatewayVirtualServiceHosts", "IST0109", Error,
        "Conflicting hosts on VirtualServices associated with mesh gateway";
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "ConflictingSidecarWorkloadSelectors", "IST0110", Error,
        "A Sidecar resource selects the same workloads as another Sidecar resource";
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "MultipleSidecarsWithoutWorkloadSelectors", "IST0111", Error,
        "More than one sidecar resource in a namespace has no workload selector";
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED = "VirtualServiceDestinationPortSelectorRequired", "IST0112", Error,
        "A VirtualService routes to a service with more than one port exposed, but does not specify which to use.";
    JWT_FAILURE_DUE_TO_INVALID_SERVICE_PORT_PREFIX = "JwtFailureDueToInvalidServicePortPrefix", "IST0119", Warning,
        "Authentication policy with JWT targets Service with invalid port specification.";
}

/// The object a message is about: `Kind name.namespace`, or `Kind name` when it has no namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Origin {
    /// The name istioctl prints.
    pub fn friendly_name(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}.{}", self.kind, self.name, self.namespace)
        }
    }

    /// The namespace the message belongs to; a Namespace belongs to itself.
    pub fn analysis_namespace(&self) -> &str {
        if self.kind == "Namespace" {
            &self.name
        } else {
            &self.namespace
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: &'static MessageType,
    pub origin: Option<Origin>,
    /// The message's text, its template filled in.
    pub text: String,
}

impl Message {
    fn new(kind: &'static MessageType, origin: &Origin, text: String) -> Message {
        Message { kind, origin: Some(origin.clone()), text }
    }

    /// The printed line, colored when asked: `Error [IST0101] (VirtualService x.default) …`.
    pub fn render(&self, color: bool) -> String {
        let (prefix, suffix) = match (color, self.kind.level) {
            (false, _) | (true, Level::Info) => ("", ""),
            (true, Level::Warning) => ("\x1b[33m", "\x1b[0m"),
            (true, Level::Error) => ("\x1b[1;31m", "\x1b[0m"),
        };
        let origin = self.origin.as_ref().map(|origin| format!(" ({})", origin.friendly_name())).unwrap_or_default();
        format!("{prefix}{}{suffix} [{}]{origin} {}", self.kind.level, self.kind.code, self.text)
    }

    /// Level, code, origin and text, for `-o json|yaml`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "code": self.kind.code,
            "level": self.kind.level.name(),
            "message": self.text,
        });
        if let Some(origin) = &self.origin {
            value["origin"] = origin.friendly_name().into();
        }
        value
    }

    /// 1.4's order: by level (worst first), code, origin (none first), then the whole line.
    pub fn compare(&self, other: &Message) -> Ordering {
        self.kind
            .level
            .cmp(&other.kind.level)
            .then_with(|| self.kind.code.cmp(other.kind.code))
            .then_with(|| match (&self.origin, &other.origin) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => a.friendly_name().cmp(&b.friendly_name()),
            })
            .then_with(|| self.render(false).cmp(&other.render(false)))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Go's `%v` of a list: `[a b c]`.
fn go_list<T: fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(" "))
}

pub fn internal_error(detail: &str) -> Message {
    Message { kind: &INTERNAL_ERROR, origin: None, text: format!("Internal error: {detail}") }
}

pub fn deprecated(origin: &Origin, detail: &str) -> Message {
    Message::new(&DEPRECATED, origin, format!("Deprecated: {detail}"))
}

pub fn referenced_resource_not_found(origin: &Origin, reftype: &str, refval: &str) -> Message {
    Message::new(&REFERENCED_RESOURCE_NOT_FOUND, origin, format!("Referenced {reftype} not found: {refval:?}"))
}

pub fn namespace_not_injected(origin: &Origin, namespace: &str) -> Message {
    Message::new(
        &NAMESPACE_NOT_INJECTED,
        origin,
        format!(
            "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {namespace} \
             istio-injection=enabled' to enable it, or 'kubectl label namespace {namespace} \
             istio-injection=disabled' to explicitly mark it as not needing injection"
        ),
    )
}

pub fn pod_missing_proxy(origin: &Origin, pod: &str, namespace: &str) -> Message {
    Message::new(
        &POD_MISSING_PROXY,
        origin,
        format!("The pod is missing its Istio proxy. Run 'kubectl delete pod {pod} -n {namespace}' to restart it"),
    )
}

pub fn gateway_port_not_on_workload(origin: &Origin, selector: &str, port: i64) -> Message {
    Message::new(
        &GATEWAY_PORT_NOT_ON_WORKLOAD,
        origin,
        format!(
            "The gateway refers to a port that is not exposed on the workload (pod selector {selector}; port {port})"
        ),
    )
}

pub fn istio_proxy_version_mismatch(origin: &Origin, proxy_version: &str, injector_version: &str) -> Message {
    Message::new(
        &ISTIO_PROXY_VERSION_MISMATCH,
        origin,
        format!(
            "The version of the Istio proxy running on the pod does not match the version used by the istio \
             injector (pod version: {proxy_version}; injector version: {injector_version}). This often happens \
             after upgrading the Istio control-plane and can be fixed by redeploying the pod."
        ),
    )
}

pub fn schema_validation_error(origin: &Origin, error: &str) -> Message {
    Message::new(&SCHEMA_VALIDATION_ERROR, origin, format!("Schema validation error: {error}"))
}

pub fn misplaced_annotation(origin: &Origin, annotation: &str, kinds: &str) -> Message {
    Message::new(
        &MISPLACED_ANNOTATION,
        origin,
        format!("Misplaced annotation: {annotation} can only be applied to {kinds}"),
    )
}

pub fn unknown_annotation(origin: &Origin, annotation: &str) -> Message {
    Message::new(&UNKNOWN_ANNOTATION, origin, format!("Unknown annotation: {annotation}"))
}

pub fn conflicting_mesh_gateway_virtual_service_hosts(origin: &Origin, virtual_services: &str, host: &str) -> Message {
    Message::new(
        &CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
        origin,
        format!(
            "The VirtualServices {virtual_services} associated with mesh gateway define the same host {host} which \
             can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a \
             single resource."
        ),
    )
}

pub fn conflicting_sidecar_workload_selectors(
    origin: &Origin,
    sidecars: &[String],
    namespace: &str,
    pod: &str,
) -> Message {
    Message::new(
        &CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
        origin,
        format!(
            "The Sidecars {} in namespace {namespace:?} select the same workload pod {pod:?}, which can lead to \
             undefined behavior.",
            go_list(sidecars)
        ),
    )
}

pub fn multiple_sidecars_without_workload_selectors(origin: &Origin, sidecars: &[String], namespace: &str) -> Message {
    Message::new(
        &MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
        origin,
        format!(
            "The Sidecars {} in namespace {namespace:?} have no workload selector, which can lead to undefined behavior.",
            go_list(sidecars)
        ),
    )
}

pub fn virtual_service_destination_port_selector_required(origin: &Origin, host: &str, ports: &[i64]) -> Message {
    Message::new(
        &VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
        origin,
        format!(
            "This VirtualService routes to a service {host:?} that exposes multiple ports {}. Specifying a port in \
             the destination is required to disambiguate.",
            go_list(ports)
        ),
    )
}

pub fn jwt_failure_due_to_invalid_service_port_prefix(
    origin: &Origin,
    port: i64,
    port_name: &str,
    protocol: &str,
    target_port: &str,
) -> Message {
    Message::new(
        &JWT_FAILURE_DUE_TO_INVALID_SERVICE_PORT_PREFIX,
        origin,
        format!(
            "Authentication policy with JWT targets Service with invalid port specification (port: {port}, name: \
             {port_name}, protocol: {protocol}, targetPort: {target_port})."
        ),
    )
}
