//! `annotations.K8sAnalyzer`: Istio annotations (keys under `*istio.io/`, and
//! `kubernetes.io/ingress.class`) that 1.4 does not know, or that sit on a kind they do not
//! apply to.

use super::analyzer::Analyzer;
use super::messages::{misplaced_annotation, unknown_annotation};
use super::snapshot::{DEPLOYMENTS, NAMESPACES, PODS, SERVICES};

/// The kinds an annotation applies to (`Any` for every kind).
const ANY: &[&str] = &["Any"];
const POD: &[&str] = &["Pod"];
const SERVICE: &[&str] = &["Service"];
const SERVICE_ENTRY: &[&str] = &["ServiceEntry"];
const INGRESS: &[&str] = &["Ingress"];

/// 1.4's annotations (istio/api's `annotation` package) and where each goes.
const KNOWN_ANNOTATIONS: &[(&str, &[&str])] = &[
    ("alpha.istio.io/canonical-serviceaccounts", SERVICE),
    ("alpha.istio.io/identity", POD),
    ("alpha.istio.io/kubernetes-serviceaccounts", SERVICE),
    ("install.operator.istio.io/chart-owner", ANY),
    ("install.operator.istio.io/owner-generation", ANY),
    ("install.operator.istio.io/version", ANY),
    ("kubernetes.io/ingress.class", INGRESS),
    ("networking.alpha.istio.io/endpointsVersion", SERVICE_ENTRY),
    ("networking.alpha.istio.io/notReadyEndpoints", SERVICE_ENTRY),
    ("networking.alpha.istio.io/serviceVersion", SERVICE_ENTRY),
    ("networking.istio.io/exportTo", SERVICE),
    ("policy.istio.io/check", POD),
    ("policy.istio.io/checkBaseRetryWaitTime", POD),
    ("policy.istio.io/checkMaxRetryWaitTime", POD),
    ("policy.istio.io/checkRetries", POD),
    ("policy.istio.io/lang", POD),
    ("readiness.status.sidecar.istio.io/applicationPorts", POD),
    ("readiness.status.sidecar.istio.io/failureThreshold", POD),
    ("readiness.status.sidecar.istio.io/initialDelaySeconds", POD),
    ("readiness.status.sidecar.istio.io/periodSeconds", POD),
    ("security.istio.io/autoMTLS", POD),
    ("sidecar.istio.io/bootstrapOverride", POD),
    ("sidecar.istio.io/componentLogLevel", POD),
    ("sidecar.istio.io/controlPlaneAuthPolicy", POD),
    ("sidecar.istio.io/discoveryAddress", POD),
    ("sidecar.istio.io/inject", POD),
    ("sidecar.istio.io/interceptionMode", POD),
    ("sidecar.istio.io/logLevel", POD),
    ("sidecar.istio.io/proxyCPU", POD),
    ("sidecar.istio.io/proxyImage", POD),
    ("sidecar.istio.io/proxyMemory", POD),
    ("sidecar.istio.io/rewriteAppHTTPProbers", POD),
    ("sidecar.istio.io/statsInclusionPrefixes", POD),
    ("sidecar.istio.io/statsInclusionRegexps", POD),
    ("sidecar.istio.io/statsInclusionSuffixes", POD),
    ("sidecar.istio.io/status", POD),
    ("sidecar.istio.io/userVolume", POD),
    ("sidecar.istio.io/userVolumeMount", POD),
    ("status.sidecar.istio.io/port", POD),
    ("traffic.sidecar.istio.io/excludeInboundPorts", POD),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", POD),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", POD),
    ("traffic.sidecar.istio.io/includeInboundPorts", POD),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", POD),
    ("traffic.sidecar.istio.io/kubevirtInterfaces", POD),
];

pub(super) fn analyzer() -> Analyzer {
    Analyzer::new("annotations.K8sAnalyzer", &[NAMESPACES, SERVICES, PODS, DEPLOYMENTS], |snapshot, messages| {
        for collection in [NAMESPACES, PODS, SERVICES, DEPLOYMENTS] {
            for entry in snapshot.entries(collection) {
                for annotation in entry.annotations().keys() {
                    if !is_istio_annotation(annotation) {
                        continue;
                    }
                    let Some((_, kinds)) = KNOWN_ANNOTATIONS.iter().find(|(name, _)| name == annotation) else {
                        messages.push(unknown_annotation(&entry.origin, annotation));
                        continue;
                    };
                    if kinds.contains(&"Any") || kinds.contains(&collection.kind) {
                        continue;
                    }
                    messages.push(misplaced_annotation(&entry.origin, annotation, &kinds.join(", ")));
                }
            }
        }
    })
}

/// Whether an annotation is Istio's to check: its prefix ends in `istio.io`, or it is the
/// one Kubernetes annotation Istio documents.
fn is_istio_annotation(annotation: &str) -> bool {
    annotation == "kubernetes.io/ingress.class"
        || annotation.split('/').next().is_some_and(|prefix| prefix.ends_with("istio.io"))
}
