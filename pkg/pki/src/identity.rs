//! SPIFFE workload identities as Istio 1.4 forms them: `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SA`,
//! the URI subject alternative name of every workload certificate and what authorization
//! policies call a principal (`TRUST-DOMAIN/ns/NAMESPACE/sa/SA`, without the scheme).
//!
//! Which trust domain a mesh uses is configuration, passed in by the caller.

use std::fmt;
use std::str::FromStr;

/// The URI scheme of SPIFFE identities.
pub const SCHEME: &str = "spiffe";
/// `spiffe://`
pub const URI_PREFIX: &str = "spiffe://";
/// The trust domain of a Kubernetes mesh that sets none.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A workload's identity: its service account in a namespace of a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a SPIFFE identity cannot be formed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("namespace or service account empty for SPIFFE uri ns={namespace:?} serviceAccount={service_account:?}")]
    Empty { namespace: String, service_account: String },
    #[error("{0:?} is not a SPIFFE identity: it does not start with spiffe://")]
    Scheme(String),
    #[error("{0:?} is not an Istio workload identity: expected spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT")]
    Path(String),
    #[error("{0:?}: the trust domain is empty or contains '/'")]
    TrustDomain(String),
}

/// A trust domain as Istio normalises it: `@` becomes `.` (a GCP service account
/// `id@project.iam.gserviceaccount.com` names the domain `id.project.iam.gserviceaccount.com`).
pub fn normalize_trust_domain(trust_domain: &str) -> String {
    trust_domain.replace('@', ".")
}

impl SpiffeId {
    /// The identity of `service_account` in `namespace`; both must be set.
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Result<SpiffeId, IdentityError> {
        if namespace.is_empty() || service_account.is_empty() {
            return Err(IdentityError::Empty {
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
            });
        }
        let trust_domain = normalize_trust_domain(trust_domain);
        if trust_domain.is_empty() || trust_domain.contains('/') {
            return Err(IdentityError::TrustDomain(trust_domain));
        }
        Ok(SpiffeId { trust_domain, namespace: namespace.to_string(), service_account: service_account.to_string() })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The principal authorization policies match: the identity without `spiffe://`.
    pub fn principal(&self) -> String {
        format!("{}/ns/{}/sa/{}", self.trust_domain, self.namespace, self.service_account)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{URI_PREFIX}{}", self.principal())
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<SpiffeId, IdentityError> {
        let rest = text.strip_prefix(URI_PREFIX).ok_or_else(|| IdentityError::Scheme(text.to_string()))?;
        let path_error = || IdentityError::Path(text.to_string());
        let (trust_domain, path) = rest.split_once('/').ok_or_else(path_error)?;
        let mut segments = path.split('/');
        let (Some("ns"), Some(namespace), Some("sa"), Some(service_account), None) =
            (segments.next(), segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(path_error());
        };
        if trust_domain.is_empty() {
            return Err(IdentityError::TrustDomain(trust_domain.to_string()));
        }
        SpiffeId::new(trust_domain, namespace, service_account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Istio 1.4.6's `GenSpiffeURI` cases.
    #[test]
    fn forms_identities_as_istio_does() {
        let cases = [
            ("", "sa", DEFAULT_TRUST_DOMAIN, Err("namespace or service account empty for SPIFFE uri")),
            ("ns", "", DEFAULT_TRUST_DOMAIN, Err("namespace or service account empty for SPIFFE uri")),
            (
                "namespace-foo",
                "service-bar",
                DEFAULT_TRUST_DOMAIN,
                Ok("spiffe://cluster.local/ns/namespace-foo/sa/service-bar"),
            ),
            ("foo", "bar", DEFAULT_TRUST_DOMAIN, Ok("spiffe://cluster.local/ns/foo/sa/bar")),
            (
                "foo",
                "bar",
                "kube-federating-id@testproj.iam.gserviceaccount.com",
                Ok("spiffe://kube-federating-id.testproj.iam.gserviceaccount.com/ns/foo/sa/bar"),
            ),
        ];
        for (namespace, service_account, trust_domain, expected) in cases {
            let formed = SpiffeId::new(trust_domain, namespace, service_account);
            match expected {
                Ok(uri) => assert_eq!(formed.expect(uri).to_string(), uri),
                Err(message) => {
                    let error = formed.expect_err(message).to_string();
                    assert!(error.contains(message), "{error}");
                }
            }
        }
        assert_eq!(normalize_trust_domain("test.local"), "test.local");
        assert_eq!(normalize_trust_domain("test@local"), "test.local");
    }

    #[test]
    fn reads_identities_back_and_refuses_other_uris() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage".parse().expect("identity");
        assert_eq!(
            (id.trust_domain(), id.namespace(), id.service_account()),
            ("cluster.local", "default", "bookinfo-productpage")
        );
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/bookinfo-productpage");
        assert_eq!(id.to_string().parse::<SpiffeId>(), Ok(id));

        for (text, expected) in [
            ("https://cluster.local/ns/a/sa/b", IdentityError::Scheme("https://cluster.local/ns/a/sa/b".into())),
            ("spiffe://cluster.local", IdentityError::Path("spiffe://cluster.local".into())),
            ("spiffe://cluster.local/ns/a", IdentityError::Path("spiffe://cluster.local/ns/a".into())),
            ("spiffe://cluster.local/ns/a/sa/b/c", IdentityError::Path("spiffe://cluster.local/ns/a/sa/b/c".into())),
            ("spiffe://cluster.local/sa/b/ns/a", IdentityError::Path("spiffe://cluster.local/sa/b/ns/a".into())),
            ("spiffe:///ns/a/sa/b", IdentityError::TrustDomain(String::new())),
            (
                "spiffe://cluster.local/ns//sa/b",
                IdentityError::Empty { namespace: String::new(), service_account: "b".into() },
            ),
        ] {
            assert_eq!(text.parse::<SpiffeId>(), Err(expected), "{text}");
        }
    }
}
