//! Which namespaces Citadel keeps `istio.<sa>` Secrets in, from the Namespace's labels as in
//! Istio 1.4: `ca.istio.io/override` (`true`/`false`) decides first; otherwise a namespace
//! carrying `ca.istio.io/env` is managed only by the Citadel whose storage namespace it names;
//! otherwise the enable-by-default setting decides. Namespaces listed with
//! `--listened-namespaces` are always managed.

use std::collections::BTreeMap;

/// Label that turns management on or off outright.
pub const OVERRIDE_LABEL: &str = "ca.istio.io/override";
/// Label naming the Citadel (by its storage namespace) that manages the namespace.
pub const ENV_LABEL: &str = "ca.istio.io/env";

/// The namespace-targeting rules of one Citadel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targeting {
    /// Citadel's own namespace (`--citadel-storage-namespace`).
    pub storage_namespace: String,
    /// `CITADEL_ENABLE_NAMESPACES_BY_DEFAULT`.
    pub enabled_by_default: bool,
    /// `--listened-namespaces`: always managed; empty means none is singled out.
    pub listened: Vec<String>,
}

impl Targeting {
    /// Whether Citadel manages `namespace`, whose labels are `labels` (`None` when the
    /// Namespace object does not exist).
    pub fn manages(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.listened.iter().any(|listened| listened == namespace) {
            return true;
        }
        let Some(labels) = labels else { return self.enabled_by_default };
        match labels.get(OVERRIDE_LABEL).map(String::as_str) {
            Some("true") => return true,
            Some("false") => return false,
            _ => {}
        }
        match labels.get(ENV_LABEL) {
            None => self.enabled_by_default,
            Some(citadel) => *citadel == self.storage_namespace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn targeting(storage: &str, by_default: bool) -> Targeting {
        Targeting { storage_namespace: storage.to_string(), enabled_by_default: by_default, listened: Vec::new() }
    }

    /// One case: the namespace's labels, Citadel's storage namespace, the default, the answer.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool, bool);

    /// 1.4.6's managed-namespace table, and the cases it implies.
    #[test]
    fn labels_decide_in_istio_order() {
        let cases: &[Case] = &[
            (&[], "random", false, false),
            (&[(ENV_LABEL, "test-ns")], "test-ns", false, true),
            (&[(ENV_LABEL, "test-ns"), (OVERRIDE_LABEL, "false")], "test-ns", false, false),
            (&[], "test-ns", true, true),
            (&[(OVERRIDE_LABEL, "false")], "test-ns", true, false),
            (&[(OVERRIDE_LABEL, "true")], "test-ns", false, true),
            (&[(OVERRIDE_LABEL, "true"), (ENV_LABEL, "elsewhere")], "test-ns", false, true),
            (&[(ENV_LABEL, "elsewhere")], "test-ns", true, false),
            (&[(ENV_LABEL, "")], "test-ns", true, false),
            (&[(OVERRIDE_LABEL, "maybe")], "test-ns", true, true),
        ];
        for (pairs, storage, by_default, expected) in cases {
            let found = targeting(storage, *by_default).manages("foo", Some(&labels(pairs)));
            assert_eq!(found, *expected, "labels {pairs:?}, storage {storage}, by default {by_default}");
        }
    }

    #[test]
    fn missing_namespaces_follow_the_default_and_listed_ones_are_always_managed() {
        assert!(targeting("istio-system", true).manages("foo", None));
        assert!(!targeting("istio-system", false).manages("foo", None));
        let listed = Targeting { listened: vec!["foo".to_string()], ..targeting("istio-system", false) };
        assert!(listed.manages("foo", Some(&labels(&[(OVERRIDE_LABEL, "false")]))));
        assert!(!listed.manages("bar", None));
    }
}
