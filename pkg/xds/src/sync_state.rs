//! Whether a proxy has what Pilot last sent it, per resource type, from the fields of Pilot's
//! `/debug/syncz` (`cluster_sent`, `cluster_acked`, …, `nacks`): the states 1.4's
//! `istioctl proxy-status` printed, which the mesh console shows too.

use serde_json::Value;

/// One resource type's state on one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// The proxy acknowledged the latest push.
    Synced,
    /// Nothing of this type was sent.
    NotSent,
    /// Sent, not yet acknowledged; an earlier push was.
    Stale,
    /// Sent, and nothing of this type was ever acknowledged.
    NeverAcknowledged,
    /// The proxy rejected the latest push.
    Nacked,
}

impl SyncState {
    /// The state of `kind` (`cds`, `lds`, `eds`, `rds`) in a syncz entry: its sent and acked
    /// nonces (`cluster_sent`, `cluster_acked`, …) and whether `nacks` names it.
    pub fn of(entry: &Value, kind: &str) -> SyncState {
        let prefix = match kind {
            "cds" => "cluster",
            "lds" => "listener",
            "eds" => "endpoint",
            _ => "route",
        };
        let sent = entry[format!("{prefix}_sent")].as_str().unwrap_or_default();
        let acked = entry[format!("{prefix}_acked")].as_str().unwrap_or_default();
        if entry["nacks"].get(kind).is_some() {
            SyncState::Nacked
        } else if sent.is_empty() {
            SyncState::NotSent
        } else if sent == acked {
            SyncState::Synced
        } else if acked.is_empty() {
            SyncState::NeverAcknowledged
        } else {
            SyncState::Stale
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::NotSent => "NOT SENT",
            SyncState::Stale => "STALE",
            SyncState::NeverAcknowledged => "STALE (Never Acknowledged)",
            SyncState::Nacked => "NACKED",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_from_syncz_fields() {
        let entry = json!({"cluster_sent": "3", "cluster_acked": "3", "listener_sent": "4", "listener_acked": "3",
            "endpoint_sent": "", "route_sent": "2", "route_acked": "1", "nacks": {"rds": "bad route"}});
        assert_eq!(SyncState::of(&entry, "cds"), SyncState::Synced);
        assert_eq!(SyncState::of(&entry, "lds"), SyncState::Stale);
        assert_eq!(SyncState::of(&entry, "eds"), SyncState::NotSent);
        assert_eq!(SyncState::of(&entry, "rds").to_string(), "NACKED");
    }
}
