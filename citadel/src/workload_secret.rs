//! The `istio.<service-account>` Secret Citadel keeps for every service account it manages
//! (type `istio.io/key-and-cert`, keys `cert-chain.pem`, `key.pem`, `root-cert.pem`): how one
//! is written, and whether one found in the store still serves — readable, issued for the
//! account's identity by the current root, matching its key, and not yet in its grace period.

use std::time::{Duration, SystemTime};

use base64::Engine;
use istio_config::object::Object;
use istio_pki::ca::IssuedCertificate;
use istio_pki::files::{CERT_CHAIN, KEY, ROOT_CERT};
use serde_json::{json, Value};

/// The Secret type of workload certificates.
pub const SECRET_TYPE: &str = "istio.io/key-and-cert";
/// Workload Secrets are named `istio.<service account>`.
pub const SECRET_PREFIX: &str = "istio.";
/// Annotation naming the service account a Secret is for.
pub const ACCOUNT_ANNOTATION: &str = "istio.io/service-account.name";

/// When workload certificates are renewed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    /// Lifetime of a new certificate (`--workload-cert-ttl`).
    pub ttl: Duration,
    /// Share of the lifetime left when it is renewed (`--workload-cert-grace-period-ratio`).
    pub grace_ratio: f32,
    /// Renew at least this long before expiry (`CITADEL_WORKLOAD_CERT_MIN_GRACE_PERIOD`).
    pub min_grace: Duration,
}

impl Rotation {
    /// Istio 1.4's grace period: the whole percentage of the lifetime the ratio names, at
    /// least the minimum — unless the minimum is the whole lifetime or more (a short
    /// `--workload-cert-ttl` under the 10-minute default), where 1.4 renewed a certificate as
    /// soon as it was issued, again and again; then the ratio alone decides.
    pub fn grace(&self, lifetime: Duration) -> Duration {
        let percent = (self.grace_ratio * 100.0) as u32;
        let by_ratio = lifetime * percent / 100;
        if self.min_grace >= lifetime {
            by_ratio
        } else {
            by_ratio.max(self.min_grace)
        }
    }
}

/// The name of the Secret for `account`.
pub fn secret_name(account: &str) -> String {
    format!("{SECRET_PREFIX}{account}")
}

/// The service account a workload Secret is for: its annotation, else its name's suffix;
/// `None` for any other Secret.
pub fn account_of(secret: &Object) -> Option<String> {
    if secret.kind != "Secret" || secret.body.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    let annotated = secret.metadata.annotations.as_ref().and_then(|annotations| annotations.get(ACCOUNT_ANNOTATION));
    annotated.cloned().or_else(|| secret.name().strip_prefix(SECRET_PREFIX).map(str::to_string))
}

/// The Secret holding `issued` for `account` in `namespace`, with `root_pem` beside it.
pub fn build(namespace: &str, account: &str, issued: &IssuedCertificate, root_pem: &str) -> Object {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(account),
            "namespace": namespace,
            "annotations": {ACCOUNT_ANNOTATION: account},
        },
        "type": SECRET_TYPE,
        "data": {
            CERT_CHAIN: encode(&issued.cert_chain_pem),
            KEY: encode(&issued.key_pem),
            ROOT_CERT: encode(root_pem),
        },
    });
    serde_json::from_value(value).expect("a Secret is an object")
}

/// One data entry of a Secret, decoded (`data` is base64; `stringData` is taken as is).
pub fn data(secret: &Object, key: &str) -> Option<Vec<u8>> {
    if let Some(encoded) = secret.body.get("data").and_then(|data| data.get(key)).and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok();
    }
    secret
        .body
        .get("stringData")
        .and_then(|data| data.get(key))
        .and_then(Value::as_str)
        .map(|text| text.as_bytes().to_vec())
}

/// Why a workload Secret has to be written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// `cert-chain.pem` or `key.pem` is missing or unreadable.
    Unreadable(String),
    /// `root-cert.pem` is not the CA's current root.
    RootChanged,
    /// `key.pem` is not the certificate's key.
    KeyMismatch,
    /// The certificate is not issued to the account's identity and names.
    WrongNames(Vec<String>),
    Expired,
    /// Within the grace period before expiry.
    Expiring,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Unreadable(what) => write!(f, "unreadable: {what}"),
            Stale::RootChanged => write!(f, "outdated root certificate"),
            Stale::KeyMismatch => write!(f, "the key does not match the certificate"),
            Stale::WrongNames(names) => write!(f, "issued to {names:?}"),
            Stale::Expired => write!(f, "expired"),
            Stale::Expiring => write!(f, "about to expire"),
        }
    }
}

/// A workload Secret that still serves, and when to look at it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    /// When its grace period starts.
    pub renew_at: SystemTime,
    pub not_after: SystemTime,
}

/// Whether `secret` still serves `names` under the root `root_pem` at `now`.
pub fn judge(
    secret: &Object,
    names: &[String],
    root_pem: &str,
    rotation: &Rotation,
    now: SystemTime,
) -> Result<Fresh, Stale> {
    let chain = data(secret, CERT_CHAIN).ok_or_else(|| Stale::Unreadable(format!("no {CERT_CHAIN}")))?;
    let leaf = istio_pki::pem::certificates(&chain)
        .map_err(|error| Stale::Unreadable(format!("{CERT_CHAIN}: {error}")))?
        .remove(0);
    let facts = istio_pki::certificate::inspect(&leaf).map_err(|error| Stale::Unreadable(error.to_string()))?;
    if data(secret, ROOT_CERT).as_deref() != Some(root_pem.as_bytes()) {
        return Err(Stale::RootChanged);
    }
    let key = data(secret, KEY).ok_or_else(|| Stale::Unreadable(format!("no {KEY}")))?;
    let key = String::from_utf8(key).map_err(|_| Stale::Unreadable(format!("{KEY} is not text")))?;
    let public_key =
        istio_pki::keys::public_key_der(&key).map_err(|error| Stale::Unreadable(format!("{KEY}: {error}")))?;
    if public_key != facts.public_key_der {
        return Err(Stale::KeyMismatch);
    }
    if facts.subject_alt_names != names {
        return Err(Stale::WrongNames(facts.subject_alt_names));
    }
    if facts.expired(now) {
        return Err(Stale::Expired);
    }
    let renew_at = facts.not_after - rotation.grace(facts.lifetime()).min(facts.lifetime());
    if now >= renew_at {
        return Err(Stale::Expiring);
    }
    Ok(Fresh { renew_at, not_after: facts.not_after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_pki::ca::{CertificateAuthority, LeafRequest};

    const IDENTITY: &str = "spiffe://cluster.local/ns/foo/sa/httpbin";

    fn rotation() -> Rotation {
        Rotation { ttl: Duration::from_secs(3600), grace_ratio: 0.5, min_grace: Duration::from_secs(600) }
    }

    fn secret_for(ca: &CertificateAuthority, names: &[&str], ttl: Duration) -> Object {
        let issued = ca.issue(&LeafRequest { ttl, ..LeafRequest::for_names(names.iter().copied()) }).expect("leaf");
        build("foo", "httpbin", &issued, ca.root_pem())
    }

    #[test]
    fn a_new_secret_is_fresh_until_its_grace_period() {
        let ca = CertificateAuthority::self_signed("workload secret test CA").expect("CA");
        let secret = secret_for(&ca, &[IDENTITY], Duration::from_secs(3600));
        assert_eq!(secret.name(), "istio.httpbin");
        assert_eq!(account_of(&secret).as_deref(), Some("httpbin"));
        let names = [IDENTITY.to_string()];
        let now = SystemTime::now();
        let fresh = judge(&secret, &names, ca.root_pem(), &rotation(), now).expect("fresh");
        let until_renewal = fresh.renew_at.duration_since(now).expect("later");
        assert!(
            until_renewal > Duration::from_secs(1790) && until_renewal <= Duration::from_secs(1800),
            "{until_renewal:?}"
        );
        assert_eq!(judge(&secret, &names, ca.root_pem(), &rotation(), fresh.renew_at), Err(Stale::Expiring));
        assert_eq!(
            judge(&secret, &names, ca.root_pem(), &rotation(), fresh.not_after + Duration::from_secs(1)),
            Err(Stale::Expired)
        );
    }

    #[test]
    fn tampered_or_outdated_secrets_are_stale() {
        let ca = CertificateAuthority::self_signed("workload secret test CA").expect("CA");
        let names = [IDENTITY.to_string()];
        let now = SystemTime::now();
        let good = secret_for(&ca, &[IDENTITY], Duration::from_secs(3600));

        let other = CertificateAuthority::self_signed("another CA").expect("CA");
        assert_eq!(judge(&good, &names, other.root_pem(), &rotation(), now), Err(Stale::RootChanged));

        let wrong = secret_for(&ca, &["spiffe://cluster.local/ns/foo/sa/sleep"], Duration::from_secs(3600));
        assert!(matches!(judge(&wrong, &names, ca.root_pem(), &rotation(), now), Err(Stale::WrongNames(_))));

        let mut swapped_key = good.clone();
        swapped_key.body["data"][KEY] = wrong.body["data"][KEY].clone();
        assert_eq!(judge(&swapped_key, &names, ca.root_pem(), &rotation(), now), Err(Stale::KeyMismatch));

        let mut garbage = good.clone();
        garbage.body["data"][CERT_CHAIN] = json!("Z2FyYmFnZQ==");
        assert!(matches!(judge(&garbage, &names, ca.root_pem(), &rotation(), now), Err(Stale::Unreadable(_))));
        let mut no_key = good.clone();
        no_key.body["data"].as_object_mut().expect("data").remove(KEY);
        assert!(matches!(judge(&no_key, &names, ca.root_pem(), &rotation(), now), Err(Stale::Unreadable(_))));

        // A certificate shorter-lived than the minimum grace period is renewed by the ratio
        // (1.4 found it always due and renewed it without end).
        let short = secret_for(&ca, &[IDENTITY], Duration::from_secs(300));
        assert!(judge(&short, &names, ca.root_pem(), &rotation(), now).is_ok(), "not due with 300 s left");
        let later = now + Duration::from_secs(200);
        assert_eq!(judge(&short, &names, ca.root_pem(), &rotation(), later), Err(Stale::Expiring));
    }

    /// 1.4.6's wait-time table: a 24 h certificate, 50 %, with and without a 13 h minimum.
    #[test]
    fn the_grace_period_is_a_whole_percentage_of_the_lifetime_at_least_the_minimum() {
        let day = Duration::from_secs(24 * 3600);
        let half = Rotation { ttl: day, grace_ratio: 0.5, min_grace: Duration::ZERO };
        assert_eq!(half.grace(day), Duration::from_secs(12 * 3600));
        let long_minimum = Rotation { min_grace: Duration::from_secs(13 * 3600), ..half };
        assert_eq!(long_minimum.grace(day), Duration::from_secs(13 * 3600));
        let truncated = Rotation { grace_ratio: 0.259, ..half };
        assert_eq!(truncated.grace(Duration::from_secs(100)), Duration::from_secs(25));
        assert_eq!(Rotation { grace_ratio: 1.0, ..half }.grace(day), day);
        // A minimum longer than a short lifetime would renew without end: the ratio decides.
        let short = Rotation { ttl: Duration::from_secs(10), grace_ratio: 0.5, min_grace: Duration::from_secs(600) };
        assert_eq!(short.grace(Duration::from_secs(10)), Duration::from_secs(5));
    }

    #[test]
    fn other_secrets_are_not_workload_secrets() {
        let mut tls = Object::new("v1", "Secret", Some("foo"), "istio.looks-like-one");
        tls.body.insert("type".into(), json!("kubernetes.io/tls"));
        assert_eq!(account_of(&tls), None);
        let mut plain = Object::new("v1", "Secret", Some("foo"), "istio.sleep");
        plain.body.insert("type".into(), json!(SECRET_TYPE));
        assert_eq!(account_of(&plain).as_deref(), Some("sleep"));
        plain.body.insert("stringData".into(), json!({"key.pem": "text"}));
        assert_eq!(data(&plain, KEY), Some(b"text".to_vec()));
    }
}
