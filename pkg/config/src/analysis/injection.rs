//! The injection analyzers: namespaces not labelled for injection, pods in injected namespaces
//! that lack the proxy (`injection.Analyzer`), and proxies whose version differs from the
//! injector's (`injection.VersionAnalyzer`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::analyzer::Analyzer;
use super::messages::{istio_proxy_version_mismatch, namespace_not_injected, pod_missing_proxy};
use super::snapshot::{array, string, Entry, NAMESPACES, PODS};

const INJECTION_LABEL: &str = "istio-injection";
const PROXY_CONTAINER: &str = "istio-proxy";
const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
const PROXY_IMAGE_ANNOTATION: &str = "sidecar.istio.io/proxyImage";
/// How 1.4 recognised the injector's own pod and container.
const INJECTOR_APP: &str = "sidecarInjectorWebhook";
const INJECTOR_CONTAINER: &str = "sidecar-injector-webhook";

fn injected_namespaces(namespaces: &[Entry]) -> BTreeSet<String> {
    namespaces
        .iter()
        .filter(|namespace| namespace.labels().get(INJECTION_LABEL).is_some_and(|value| value == "enabled"))
        .map(|namespace| namespace.name().to_string())
        .collect()
}

fn containers(pod: &Entry) -> &[Value] {
    array(pod.spec(), "containers")
}

/// The tag of a container's image (`repo:tag`), if it has exactly one `:`.
fn image_version(container: &Value) -> Option<&str> {
    let image = string(container, "image");
    let mut parts = image.split(':');
    let (_, version, rest) = (parts.next(), parts.next(), parts.next());
    version.filter(|_| rest.is_none())
}

pub(super) fn analyzer() -> Analyzer {
    Analyzer::new("injection.Analyzer", &[NAMESPACES, PODS], |snapshot, messages| {
        for namespace in snapshot.entries(NAMESPACES) {
            let name = namespace.name();
            if name.starts_with("kube-") || name.starts_with("istio-") {
                continue;
            }
            if namespace.labels().get(INJECTION_LABEL).is_none_or(String::is_empty) {
                messages.push(namespace_not_injected(&namespace.origin, name));
            }
        }
        let injected = injected_namespaces(snapshot.entries(NAMESPACES));
        for pod in snapshot.entries(PODS) {
            if !injected.contains(pod.namespace()) {
                continue;
            }
            if pod.annotations().get(INJECT_ANNOTATION).is_some_and(|value| value.eq_ignore_ascii_case("false")) {
                continue;
            }
            let has_proxy = containers(pod).iter().any(|container| {
                string(container, "name") == PROXY_CONTAINER && !string(container, "image").is_empty()
            });
            if !has_proxy {
                messages.push(pod_missing_proxy(&pod.origin, pod.name(), pod.namespace()));
            }
        }
    })
}

pub(super) fn version_analyzer() -> Analyzer {
    Analyzer::new("injection.VersionAnalyzer", &[NAMESPACES, PODS], |snapshot, messages| {
        let injected = injected_namespaces(snapshot.entries(NAMESPACES));
        let mut injector_versions = BTreeSet::new();
        let mut proxies = Vec::new();
        for pod in snapshot.entries(PODS) {
            if pod.labels().get("app").is_some_and(|app| app == INJECTOR_APP) {
                let injector = containers(pod).iter().find(|container| string(container, "name") == INJECTOR_CONTAINER);
                if let Some(version) = injector.and_then(image_version) {
                    injector_versions.insert(version.to_string());
                }
            }
            if !injected.contains(pod.namespace())
                || pod.annotations().get(PROXY_IMAGE_ANNOTATION).is_some_and(|image| !image.is_empty())
            {
                continue;
            }
            for container in containers(pod).iter().filter(|container| string(container, "name") == PROXY_CONTAINER) {
                if let Some(version) = image_version(container) {
                    proxies.push((pod, version.to_string()));
                }
            }
        }
        for injector_version in &injector_versions {
            for (pod, version) in &proxies {
                if version != injector_version {
                    messages.push(istio_proxy_version_mismatch(&pod.origin, version, injector_version));
                }
            }
        }
    })
}
