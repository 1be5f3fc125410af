//! The DNS names Citadel adds to some service accounts' certificates, after the SPIFFE
//! identity, so that webhooks and servers can serve TLS with them: the injector's and Galley's
//! accounts in Citadel's namespace get `<service>.<ns>.svc` and `<service>.<ns>`, and
//! `--custom-dns-names` (`ACCOUNT.NAMESPACE:DOMAIN,…`) adds more.

use std::collections::BTreeMap;

/// Accounts whose certificates serve a webhook, and the Service in front of each.
pub const WEBHOOK_ACCOUNTS: [(&str, &str); 2] = [
    ("istio-sidecar-injector-service-account", "istio-sidecar-injector"),
    ("istio-galley-service-account", "istio-galley"),
];

/// Extra DNS names by service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsNames {
    /// `ACCOUNT.NAMESPACE` → names, in order.
    by_account: BTreeMap<String, Vec<String>>,
}

/// A `--custom-dns-names` entry that is not `ACCOUNT.NAMESPACE:DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("custom DNS name {0:?} should follow the SERVICE_ACCOUNT.NAMESPACE:DOMAIN format")]
pub struct InvalidCustomName(pub String);

impl DnsNames {
    /// The webhook accounts' names in `storage_namespace`, then `custom` (the flag's value).
    /// Entries that do not parse are returned to be reported, and left out.
    pub fn new(storage_namespace: &str, custom: &str) -> (DnsNames, Vec<InvalidCustomName>) {
        let mut names = DnsNames::default();
        for (account, service) in WEBHOOK_ACCOUNTS {
            names.add(
                &format!("{account}.{storage_namespace}"),
                [format!("{service}.{storage_namespace}.svc"), format!("{service}.{storage_namespace}")],
            );
        }
        let mut invalid = Vec::new();
        for entry in custom.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            match entry.split(':').collect::<Vec<_>>().as_slice() {
                [account, domain] if !account.is_empty() && !domain.is_empty() => {
                    names.add(account, [domain.to_string()]);
                }
                _ => invalid.push(InvalidCustomName(entry.to_string())),
            }
        }
        (names, invalid)
    }

    /// No extra names at all (`--append-dns-names=false`).
    pub fn none() -> DnsNames {
        DnsNames::default()
    }

    fn add(&mut self, account: &str, names: impl IntoIterator<Item = String>) {
        self.by_account.entry(account.to_string()).or_default().extend(names);
    }

    /// The extra names of `account` in `namespace`, in order.
    pub fn for_account(&self, namespace: &str, account: &str) -> &[String] {
        self.by_account.get(&format!("{account}.{namespace}")).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_accounts_get_their_service_names_in_citadels_namespace_only() {
        let (names, invalid) = DnsNames::new("istio-system", "");
        assert!(invalid.is_empty());
        assert_eq!(
            names.for_account("istio-system", "istio-sidecar-injector-service-account"),
            ["istio-sidecar-injector.istio-system.svc", "istio-sidecar-injector.istio-system"]
        );
        assert_eq!(
            names.for_account("istio-system", "istio-galley-service-account"),
            ["istio-galley.istio-system.svc", "istio-galley.istio-system"]
        );
        assert!(names.for_account("default", "istio-galley-service-account").is_empty());
        assert!(names.for_account("istio-system", "default").is_empty());
        assert!(DnsNames::none().for_account("istio-system", "istio-galley-service-account").is_empty());
    }

    /// The cases of 1.4.6's custom DNS name table.
    #[test]
    fn custom_names_add_to_accounts_in_order_and_bad_entries_are_reported() {
        let (names, invalid) = DnsNames::new(
            "istio-system",
            "istio-pilot-service-account.istio-system:istio-pilot.istio-system,\
             istio-galley-service-account.istio-system:galley-ilb.example.com,\
             istio-galley-service-account.istio-system:galley.example.org,\
             no-colon-here,a:b:c,istio-mixer.istio-system:mixer.example.com",
        );
        assert_eq!(names.for_account("istio-system", "istio-pilot-service-account"), ["istio-pilot.istio-system"]);
        assert_eq!(
            names.for_account("istio-system", "istio-galley-service-account"),
            [
                "istio-galley.istio-system.svc",
                "istio-galley.istio-system",
                "galley-ilb.example.com",
                "galley.example.org"
            ]
        );
        assert_eq!(names.for_account("istio-system", "istio-mixer"), ["mixer.example.com"]);
        assert_eq!(invalid, [InvalidCustomName("no-colon-here".into()), InvalidCustomName("a:b:c".into())]);
        let error = invalid[0].to_string();
        assert!(error.contains("SERVICE_ACCOUNT.NAMESPACE:DOMAIN"), "{error}");
    }
}
