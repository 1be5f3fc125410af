//! Subject alternative names from text, as Istio writes them: anything that parses as an IP
//! address is an IP name, anything with a scheme (`spiffe://…`) a URI, the rest DNS names.

use std::net::IpAddr;

use rcgen::SanType;

/// A name that cannot be put in a certificate (DNS names and URIs must be ASCII).
#[derive(Debug, thiserror::Error)]
#[error("{name:?} cannot be a subject alternative name: {source}")]
pub struct InvalidName {
    pub name: String,
    #[source]
    pub source: rcgen::Error,
}

/// The subject alternative name `name` stands for.
pub(crate) fn san(name: &str) -> Result<SanType, InvalidName> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let text = name.try_into().map_err(|source| InvalidName { name: name.to_string(), source })?;
    Ok(if name.contains("://") { SanType::URI(text) } else { SanType::DnsName(text) })
}

/// The text of a subject alternative name, for the kinds [`san`] makes.
pub(crate) fn text(name: &SanType) -> Option<String> {
    match name {
        SanType::URI(uri) => Some(uri.as_str().to_string()),
        SanType::DnsName(dns) => Some(dns.as_str().to_string()),
        SanType::IpAddress(ip) => Some(ip.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ip_uri_or_dns_and_back() {
        for name in ["10.0.0.1", "fd00::1", "spiffe://cluster.local/ns/foo/sa/bar", "istio-pilot.istio-system"] {
            assert_eq!(text(&san(name).expect(name)).as_deref(), Some(name));
        }
        assert!(matches!(san("10.0.0.1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san("spiffe://x/ns/a/sa/b").unwrap(), SanType::URI(_)));
        let error = san("caf\u{e9}.example").expect_err("not IA5");
        assert!(error.to_string().starts_with("\"caf\u{e9}.example\" cannot be a subject alternative name"));
    }
}
