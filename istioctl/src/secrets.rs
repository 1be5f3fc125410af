//! `istioctl proxy-config secret`'s table: Istio 1.4's columns (RESOURCE NAME, TYPE, STATUS,
//! VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE) plus the subject alternative names. Rows
//! come from the SDS secrets of the proxy's config dump (ACTIVE or WARMING, named by the
//! secret) and from the certificate files its TLS contexts load, as `/certs` lists them
//! (status FILE, named by the path), so a proxy with mounted `/etc/certs` shows its identity
//! too.

use std::time::SystemTime;

use base64::Engine;
use serde_json::Value;

const COLUMNS: [&str; 8] =
    ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE", "SUBJECT ALT NAMES"];

/// One row: a secret or a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecretRow {
    name: String,
    kind: &'static str,
    status: &'static str,
    valid: bool,
    serial: String,
    not_after: String,
    not_before: String,
    names: Vec<String>,
}

impl SecretRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.kind.to_string(),
            self.status.to_string(),
            self.valid.to_string(),
            self.serial.clone(),
            self.not_after.clone(),
            self.not_before.clone(),
            self.names.join(","),
        ]
    }
}

/// The table for a config dump and a `/certs` document.
pub(crate) fn table(dump: &Value, certs: &Value) -> String {
    let mut rows = sds_rows(dump);
    rows.extend(file_rows(certs));
    if rows.is_empty() {
        return "No active or warming secrets found.\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows.iter().map(SecretRow::cells).collect();
    crate::table::render(&COLUMNS, &cells)
}

/// Rows for the dynamic secrets, warming first as 1.4 listed them.
fn sds_rows(dump: &Value) -> Vec<SecretRow> {
    let Some(section) = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|config| config["@type"].as_str().is_some_and(|t| t.ends_with("SecretsConfigDump")))
    else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (field, status) in [("dynamic_warming_secrets", "WARMING"), ("dynamic_active_secrets", "ACTIVE")] {
        for entry in section[field].as_array().into_iter().flatten() {
            let secret = &entry["secret"];
            let name = entry["name"].as_str().or(secret["name"].as_str()).unwrap_or_default().to_string();
            let pem = data_source(&secret["tls_certificate"]["certificate_chain"])
                .or_else(|| data_source(&secret["validation_context"]["trusted_ca"]));
            rows.push(row_from_pem(name, status, pem.as_deref()));
        }
    }
    rows
}

/// The bytes of a config-dump data source (`inline_bytes` is base64, `inline_string` text).
fn data_source(source: &Value) -> Option<Vec<u8>> {
    if let Some(encoded) = source["inline_bytes"].as_str() {
        return base64::engine::general_purpose::STANDARD.decode(encoded).ok();
    }
    source["inline_string"].as_str().map(|text| text.as_bytes().to_vec())
}

/// A row from a secret's PEM: its first certificate, as 1.4 read it; invalid if unreadable.
fn row_from_pem(name: String, status: &'static str, pem: Option<&[u8]>) -> SecretRow {
    let mut row = SecretRow {
        name,
        kind: "",
        status,
        valid: false,
        serial: String::new(),
        not_after: String::new(),
        not_before: String::new(),
        names: Vec::new(),
    };
    let info = pem
        .and_then(|pem| istio_pki::pem::certificates(pem).ok())
        .and_then(|certificates| certificates.into_iter().next())
        .and_then(|first| istio_pki::certificate::inspect(&first).ok());
    if let Some(info) = info {
        row.kind = if info.is_ca { "CA" } else { "Cert Chain" };
        row.valid = true;
        row.serial = istio_pki::certificate::serial_decimal(&info.serial_hex).unwrap_or(info.serial_hex);
        row.not_after = rfc3339(info.not_after);
        row.not_before = rfc3339(info.not_before);
        row.names = info.subject_alt_names;
    }
    row
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Rows for certificate files: each chain's leaf and each CA bundle's certificates, once.
fn file_rows(certs: &Value) -> Vec<SecretRow> {
    let mut rows: Vec<SecretRow> = Vec::new();
    for context in certs["certificates"].as_array().into_iter().flatten() {
        let leaf = context["cert_chain"].as_array().and_then(|chain| chain.first());
        let cas = context["ca_cert"].as_array().into_iter().flatten();
        for (details, kind) in leaf.map(|leaf| (leaf, "Cert Chain")).into_iter().chain(cas.map(|ca| (ca, "CA"))) {
            let path = details["path"].as_str().unwrap_or_default();
            if path.is_empty() || path == "<inline>" {
                continue;
            }
            let hex = details["serial_number"].as_str().unwrap_or_default();
            let row = SecretRow {
                name: path.to_string(),
                kind,
                status: "FILE",
                valid: true,
                serial: istio_pki::certificate::serial_decimal(hex).unwrap_or_else(|| hex.to_string()),
                not_after: details["expiration_time"].as_str().unwrap_or_default().to_string(),
                not_before: details["valid_from"].as_str().unwrap_or_default().to_string(),
                names: details["subject_alt_names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|name| name.as_object()?.values().next()?.as_str().map(str::to_string))
                    .collect(),
            };
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use istio_pki::ca::{CertificateAuthority, LeafRequest};
    use serde_json::json;

    use super::*;

    fn encoded(pem: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    #[test]
    fn sds_secrets_and_certificate_files_become_rows() {
        let ca = CertificateAuthority::self_signed("secret table CA").expect("CA");
        let leaf = ca
            .issue(&LeafRequest {
                ttl: Duration::from_secs(3600),
                ..LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/sleep"])
            })
            .expect("leaf");
        let dump = json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
            "dynamic_active_secrets": [
                {"name": "default", "secret": {"name": "default", "tls_certificate": {
                    "certificate_chain": {"inline_bytes": encoded(&leaf.cert_chain_pem)},
                    "private_key": {"inline_bytes": encoded("[redacted]")}}}},
                {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
                    "trusted_ca": {"inline_string": ca.root_pem()}}}}],
            "dynamic_warming_secrets": [{"name": "gateway-cert", "secret": {"name": "gateway-cert"}}]}]});
        let certs = json!({"certificates": [{
            "cert_chain": [{"path": "/etc/certs/cert-chain.pem", "serial_number": "ff",
                "subject_alt_names": [{"uri": "spiffe://cluster.local/ns/foo/sa/httpbin"}],
                "valid_from": "2026-12-05T00:00:00Z", "expiration_time": "2027-03-05T00:00:00Z"}],
            "ca_cert": [{"path": "<inline>", "serial_number": "01"}]}]});
        let rows: Vec<SecretRow> = sds_rows(&dump).into_iter().chain(file_rows(&certs)).collect();
        assert_eq!(rows.len(), 4, "{rows:#?}");
        assert_eq!((rows[0].name.as_str(), rows[0].status, rows[0].valid), ("gateway-cert", "WARMING", false));
        assert_eq!((rows[1].name.as_str(), rows[1].kind, rows[1].status), ("default", "Cert Chain", "ACTIVE"));
        assert_eq!(rows[1].names, ["spiffe://cluster.local/ns/foo/sa/sleep"]);
        assert!(rows[1].serial.chars().all(|c| c.is_ascii_digit()), "{}", rows[1].serial);
        assert_eq!((rows[2].name.as_str(), rows[2].kind), ("ROOTCA", "CA"));
        assert_eq!(
            rows[3],
            SecretRow {
                name: "/etc/certs/cert-chain.pem".into(),
                kind: "Cert Chain",
                status: "FILE",
                valid: true,
                serial: "255".into(),
                not_after: "2027-03-05T00:00:00Z".into(),
                not_before: "2026-12-05T00:00:00Z".into(),
                names: vec!["spiffe://cluster.local/ns/foo/sa/httpbin".into()],
            }
        );
        let text = table(&dump, &certs);
        assert!(text.starts_with("RESOURCE NAME "), "{text}");
        assert_eq!(table(&json!({}), &json!({})), "No active or warming secrets found.\n");
    }
}
