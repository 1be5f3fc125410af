//! The admin API's `/certs`, in Envoy's shape: for every TLS context the config holds, the
//! certificates of its CA bundle and its certificate chain, each with where it came from (a
//! file path, or `<inline>` for inline data and SDS secrets), its serial number, subject
//! alternative names and validity. `istioctl proxy-config secret` reads it on both planes.

use std::time::SystemTime;

use istio_pki::certificate::CertificateInfo;
use serde_json::{json, Value};

use super::config::tls_source::{TlsData, TlsMaterial};
use super::tls::TlsConfigs;

const SECONDS_PER_DAY: u64 = 86_400;

/// The `/certs` document for `materials`. Material that cannot be read (a file not there yet,
/// a secret that has not arrived) is left out, as Envoy leaves out contexts it has not loaded.
pub(crate) fn report(materials: &[TlsMaterial], configs: &TlsConfigs, now: SystemTime) -> Value {
    let certificates: Vec<Value> = materials
        .iter()
        .filter_map(|material| {
            let ca_cert = material.trusted_ca.as_ref().map(|data| details(data, configs, now)).unwrap_or_default();
            let cert_chain =
                material.certificate_chain.as_ref().map(|data| details(data, configs, now)).unwrap_or_default();
            (!ca_cert.is_empty() || !cert_chain.is_empty())
                .then(|| json!({"ca_cert": ca_cert, "cert_chain": cert_chain}))
        })
        .collect();
    json!({ "certificates": certificates })
}

/// One entry per certificate in the material (a chain lists each of its certificates).
fn details(data: &TlsData, configs: &TlsConfigs, now: SystemTime) -> Vec<Value> {
    let path = match data {
        TlsData::File(path) => path.display().to_string(),
        TlsData::Inline(_) | TlsData::Sds(..) => "<inline>".to_string(),
    };
    let Ok(bytes) = configs.load(data) else { return Vec::new() };
    let Ok(certificates) = istio_pki::pem::certificates(&bytes) else { return Vec::new() };
    certificates
        .iter()
        .filter_map(|certificate| istio_pki::certificate::inspect(certificate).ok())
        .map(|info| certificate_details(&path, &info, now))
        .collect()
}

fn certificate_details(path: &str, info: &CertificateInfo, now: SystemTime) -> Value {
    let names: Vec<Value> = info.subject_alt_names.iter().map(|name| subject_alt_name(name)).collect();
    json!({
        "path": path,
        "serial_number": info.serial_hex,
        "subject_alt_names": names,
        "days_until_expiration": (info.remaining(now).as_secs() / SECONDS_PER_DAY).to_string(),
        "valid_from": humantime::format_rfc3339_seconds(info.not_before).to_string(),
        "expiration_time": humantime::format_rfc3339_seconds(info.not_after).to_string(),
    })
}

/// A name as Envoy types it: a URI (SPIFFE identities), an IP address or a DNS name.
fn subject_alt_name(name: &str) -> Value {
    if name.contains("://") {
        json!({ "uri": name })
    } else if name.parse::<std::net::IpAddr>().is_ok() {
        json!({ "ip_address": name })
    } else {
        json!({ "dns": name })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use istio_pki::ca::{CertificateAuthority, LeafRequest};

    use super::*;

    #[test]
    fn lists_each_contexts_ca_and_chain_with_envoys_fields() {
        let ca = CertificateAuthority::self_signed("certs test CA").expect("CA");
        let issued = ca
            .issue(&LeafRequest {
                ttl: Duration::from_secs(3 * SECONDS_PER_DAY + 60),
                ..LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/sleep", "sleep.foo", "10.0.0.1"])
            })
            .expect("leaf");
        let dir = tempfile::tempdir().expect("temp dir");
        let chain = dir.path().join("cert-chain.pem");
        std::fs::write(&chain, &issued.cert_chain_pem).expect("write");
        let materials = vec![
            TlsMaterial {
                certificate_chain: Some(TlsData::File(chain.clone())),
                trusted_ca: Some(TlsData::Inline(ca.root_pem().as_bytes().to_vec())),
                ..TlsMaterial::default()
            },
            // Not there yet: left out.
            TlsMaterial {
                certificate_chain: Some(TlsData::File(dir.path().join("missing.pem"))),
                ..TlsMaterial::default()
            },
        ];
        let report = report(&materials, &TlsConfigs::default(), SystemTime::now());
        let contexts = report["certificates"].as_array().expect("certificates");
        assert_eq!(contexts.len(), 1, "{report:#}");
        let leaf = &contexts[0]["cert_chain"][0];
        assert_eq!(leaf["path"], chain.display().to_string());
        assert_eq!(leaf["days_until_expiration"], "3");
        assert_eq!(
            leaf["subject_alt_names"],
            json!([{"uri": "spiffe://cluster.local/ns/foo/sa/sleep"}, {"dns": "sleep.foo"}, {"ip_address": "10.0.0.1"}])
        );
        assert!(leaf["serial_number"].as_str().is_some_and(|serial| !serial.is_empty()));
        assert!(leaf["valid_from"].as_str().is_some_and(|time| time.ends_with('Z')));
        assert_eq!(contexts[0]["ca_cert"][0]["path"], "<inline>");
    }
}
