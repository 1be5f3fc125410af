//! Istio's cluster names as a type: `outbound|PORT|SUBSET|HOST` for a service port (and a subset
//! of it) and `inbound|PORT|PORT-NAME|HOST` for a workload's own port. Pilot builds them, the
//! proxies and `istioctl proxy-config` read them back; a name is formatted and parsed here only.
//! An SNI-DNAT gateway names its clusters in the DNS-SRV form, `outbound_.PORT_.SUBSET_.HOST`
//! (an SNI cannot hold `|`), which reads as the same name. Other clusters (`BlackHoleCluster`,
//! `PassthroughCluster`) are of neither form.

use std::fmt;
use std::str::FromStr;

/// Which way a cluster's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficDirection {
    Inbound,
    Outbound,
}

impl TrafficDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficDirection::Inbound => "inbound",
            TrafficDirection::Outbound => "outbound",
        }
    }
}

/// A parsed Istio cluster name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName {
    pub direction: TrafficDirection,
    pub port: u32,
    /// The subset (outbound) or the port's name (inbound); empty for a whole service.
    pub subset: String,
    pub host: String,
}

/// A name that is not `inbound|…` or `outbound|…` with a numeric port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an Istio cluster name (DIRECTION|PORT|SUBSET|HOST)")]
pub struct NotAClusterName(pub String);

impl ClusterName {
    /// `outbound|PORT|SUBSET|HOST`
    pub fn outbound(port: u32, subset: &str, host: &str) -> ClusterName {
        ClusterName { direction: TrafficDirection::Outbound, port, subset: subset.to_string(), host: host.to_string() }
    }

    /// `inbound|PORT|PORT-NAME|HOST`
    pub fn inbound(port: u32, port_name: &str, host: &str) -> ClusterName {
        ClusterName {
            direction: TrafficDirection::Inbound,
            port,
            subset: port_name.to_string(),
            host: host.to_string(),
        }
    }

    pub fn is_outbound(&self) -> bool {
        self.direction == TrafficDirection::Outbound
    }

    /// The DNS-SRV form, `outbound_.PORT_.SUBSET_.HOST`, as SNI-DNAT clusters are named.
    pub fn dns_srv(&self) -> String {
        format!("{}_.{}_.{}_.{}", self.direction.as_str(), self.port, self.subset, self.host)
    }

    /// Reads a name in either form, as 1.4's `ParseSubsetKey` did.
    pub fn parse_any_form(name: &str) -> Result<ClusterName, NotAClusterName> {
        name.parse().or_else(|error| {
            let not_one = || NotAClusterName(name.to_string());
            let direction = if name.starts_with("outbound_.") {
                TrafficDirection::Outbound
            } else if name.starts_with("inbound_.") {
                TrafficDirection::Inbound
            } else {
                return Err(error);
            };
            let parts: Vec<&str> = name.splitn(4, '.').collect();
            let [_, port, subset, host] = parts.as_slice() else { return Err(not_one()) };
            let port = port.strip_suffix('_').and_then(|port| port.parse().ok()).ok_or_else(not_one)?;
            let subset = subset.strip_suffix('_').ok_or_else(not_one)?;
            Ok(ClusterName { direction, port, subset: subset.to_string(), host: host.to_string() })
        })
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}|{}|{}|{}", self.direction.as_str(), self.port, self.subset, self.host)
    }
}

impl FromStr for ClusterName {
    type Err = NotAClusterName;

    fn from_str(name: &str) -> Result<ClusterName, NotAClusterName> {
        let not_one = || NotAClusterName(name.to_string());
        let mut parts = name.splitn(4, '|');
        let direction = match parts.next() {
            Some("inbound") => TrafficDirection::Inbound,
            Some("outbound") => TrafficDirection::Outbound,
            _ => return Err(not_one()),
        };
        let port = parts.next().and_then(|port| port.parse().ok()).ok_or_else(not_one)?;
        let subset = parts.next().ok_or_else(not_one)?;
        let host = parts.next().ok_or_else(not_one)?;
        Ok(ClusterName { direction, port, subset: subset.to_string(), host: host.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = ClusterName::outbound(9080, "v2", "reviews.default.svc.cluster.local");
        assert_eq!(name.to_string(), "outbound|9080|v2|reviews.default.svc.cluster.local");
        assert_eq!(name.to_string().parse(), Ok(name));
        let inbound = ClusterName::inbound(9080, "http", "reviews.default.svc.cluster.local");
        assert_eq!(inbound.to_string(), "inbound|9080|http|reviews.default.svc.cluster.local");
        assert!(!inbound.is_outbound());
        assert_eq!("outbound|9080||reviews".parse(), Ok(ClusterName::outbound(9080, "", "reviews")));
        // A host never holds '|', but whatever follows the third one is the host.
        assert_eq!("outbound|80||a|b".parse::<ClusterName>().map(|name| name.host), Ok("a|b".to_string()));
    }

    #[test]
    fn the_dns_srv_form_reads_as_the_same_name() {
        let name = ClusterName::outbound(443, "v1", "www.wikipedia.org");
        assert_eq!(name.dns_srv(), "outbound_.443_.v1_.www.wikipedia.org");
        assert_eq!(ClusterName::parse_any_form(&name.dns_srv()), Ok(name.clone()));
        assert_eq!(ClusterName::parse_any_form(&name.to_string()), Ok(name));
        assert_eq!(
            ClusterName::parse_any_form("outbound_.9080_._.reviews.default.svc.cluster.local"),
            Ok(ClusterName::outbound(9080, "", "reviews.default.svc.cluster.local"))
        );
        assert_eq!(ClusterName::parse_any_form("inbound_.80_.http_.a"), Ok(ClusterName::inbound(80, "http", "a")));
        for name in ["outbound_.x_.v1_.host", "outbound_.80_.v1", "outbound_.80.v1_.host", "BlackHoleCluster"] {
            assert!(ClusterName::parse_any_form(name).is_err(), "{name}");
        }
    }

    #[test]
    fn other_clusters_are_not_istio_names() {
        for name in ["BlackHoleCluster", "PassthroughCluster", "outbound|http|v1|reviews", "outbound|9080|v1", ""] {
            assert_eq!(name.parse::<ClusterName>(), Err(NotAClusterName(name.to_string())), "{name}");
        }
    }
}
