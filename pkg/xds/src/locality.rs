//! Localities as Istio writes them, `region/zone/subzone` (any tail left out), and Envoy's
//! `Locality`: Pilot reads endpoints' and proxies' localities this way, and the built-in proxy
//! names a host's locality this way.

use envoy_types::pb::envoy::config::core::v3::Locality;

/// `region/zone/subzone` as a locality; `None` for the empty string.
pub fn parse(text: &str) -> Option<Locality> {
    if text.is_empty() {
        return None;
    }
    let mut parts = text.splitn(3, '/');
    Some(Locality {
        region: parts.next().unwrap_or_default().to_string(),
        zone: parts.next().unwrap_or_default().to_string(),
        sub_zone: parts.next().unwrap_or_default().to_string(),
    })
}

/// A locality as `region/zone/subzone` (every part written, so equal localities give equal
/// names).
pub fn name(locality: &Locality) -> String {
    format!("{}/{}/{}", locality.region, locality.zone, locality.sub_zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parses_round_trip() {
        let locality = parse("region1/zone2").expect("a locality");
        assert_eq!(
            (locality.region.as_str(), locality.zone.as_str(), locality.sub_zone.as_str()),
            ("region1", "zone2", "")
        );
        assert_eq!(name(&locality), "region1/zone2/");
        assert_eq!(parse(&name(&locality)), Some(locality));
        assert_eq!(parse(""), None);
    }
}
