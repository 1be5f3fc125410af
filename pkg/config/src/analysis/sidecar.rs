//! The Sidecar analyzers: more than one Sidecar without a workload selector in a namespace
//! (`sidecar.DefaultSelectorAnalyzer`), and Sidecars whose selector matches no pod or the same
//! pod as another Sidecar (`sidecar.SelectorAnalyzer`).

use std::collections::BTreeMap;

use super::analyzer::Analyzer;
use super::messages::{
    conflicting_sidecar_workload_selectors, multiple_sidecars_without_workload_selectors, referenced_resource_not_found,
};
use super::snapshot::{names, selector_string, selects, string_map, Entry, PODS, SIDECARS};

pub(super) fn default_selector_analyzer() -> Analyzer {
    Analyzer::new("sidecar.DefaultSelectorAnalyzer", &[SIDECARS], |snapshot, messages| {
        let mut without_selector: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for sidecar in snapshot.entries(SIDECARS) {
            if sidecar.spec().get("workloadSelector").is_none_or(serde_json::Value::is_null) {
                without_selector.entry(sidecar.namespace()).or_default().push(sidecar);
            }
        }
        for (namespace, sidecars) in without_selector {
            if sidecars.len() < 2 {
                continue;
            }
            let sidecar_names = names(&sidecars);
            for sidecar in sidecars {
                messages.push(multiple_sidecars_without_workload_selectors(&sidecar.origin, &sidecar_names, namespace));
            }
        }
    })
}

pub(super) fn selector_analyzer() -> Analyzer {
    Analyzer::new("sidecar.SelectorAnalyzer", &[SIDECARS, PODS], |snapshot, messages| {
        let mut sidecars_by_pod: BTreeMap<(&str, &str), Vec<&Entry>> = BTreeMap::new();
        for sidecar in snapshot.entries(SIDECARS) {
            let selector = sidecar.spec().get("workloadSelector").map(|s| string_map(s, "labels")).unwrap_or_default();
            if selector.is_empty() {
                continue;
            }
            let mut found = false;
            for pod in snapshot.entries(PODS).iter().filter(|pod| pod.namespace() == sidecar.namespace()) {
                if selects(&selector, &pod.labels()) {
                    found = true;
                    sidecars_by_pod.entry((pod.namespace(), pod.name())).or_default().push(sidecar);
                }
            }
            if !found {
                messages.push(referenced_resource_not_found(&sidecar.origin, "selector", &selector_string(&selector)));
            }
        }
        for ((namespace, pod), sidecars) in sidecars_by_pod {
            if sidecars.len() < 2 {
                continue;
            }
            let sidecar_names = names(&sidecars);
            for sidecar in sidecars {
                messages.push(conflicting_sidecar_workload_selectors(&sidecar.origin, &sidecar_names, namespace, pod));
            }
        }
    })
}
