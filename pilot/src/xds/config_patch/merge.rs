//! MERGE as 1.4 did it. For whole objects, `proto.Merge`: set scalars replace, repeated fields
//! append, messages merge field by field; protobuf's wire format merges exactly so when one
//! encoded message is decoded over another. For a filter, its typed config is merged with the
//! patch's: two configs of one type merge as messages, a v2 `config` is read as the filter's
//! own type first, and a config of another type leaves the filter as it was (1.4 did the same).
//! A patch's name renames the filter, unless it is the same filter under its 1.4-era name.

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::google::protobuf::Any;
use istio_xds::patch_value::{canonical_filter_name, message_bytes_from_json, FilterValue};
use prost::Message;

/// Merges `patch` into `target` as `proto.Merge` does.
pub(crate) fn merge<M: Message>(target: &mut M, patch: &M) {
    // Decoding a valid encoding of the same message type cannot fail.
    let _ = target.merge(patch.encode_to_vec().as_slice());
}

/// A typed config merged with a patch's typed config or untyped `config`; `None` when they
/// cannot be merged (other types, or JSON that is not the config's type).
fn merge_config(existing: &Any, typed: Option<&Any>, untyped: Option<&serde_json::Value>) -> Option<Any> {
    let patch_bytes = match (typed, untyped) {
        (Some(typed), _) if typed.type_url == existing.type_url => typed.value.clone(),
        (Some(typed), _) => {
            tracing::warn!(filter_type = %existing.type_url, patch_type = %typed.type_url, "EnvoyFilter MERGE of another type skipped");
            return None;
        }
        (None, Some(json)) => match message_bytes_from_json(&existing.type_url, json) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(filter_type = %existing.type_url, %error, "EnvoyFilter MERGE skipped");
                return None;
            }
        },
        (None, None) => return None,
    };
    let mut value = existing.value.clone();
    value.extend_from_slice(&patch_bytes);
    // Concatenated encodings decode as the merge; encoded again, equal configs are equal bytes.
    match istio_xds::json::reencode(&existing.type_url, &value) {
        Ok(value) => Some(Any { type_url: existing.type_url.clone(), value }),
        Err(error) => {
            tracing::warn!(filter_type = %existing.type_url, %error, "EnvoyFilter MERGE skipped");
            None
        }
    }
}

fn merged_name(existing: &str, patch: &str) -> String {
    if patch.is_empty() || canonical_filter_name(patch) == canonical_filter_name(existing) {
        existing.to_string()
    } else {
        patch.to_string()
    }
}

/// MERGE into a network filter; one without a typed config is left alone, as in 1.4.
pub(crate) fn merge_network_filter(target: &mut Filter, patch: &FilterValue<Filter>) {
    let Some(filter::ConfigType::TypedConfig(existing)) = &target.config_type else { return };
    let typed = match &patch.filter.config_type {
        Some(filter::ConfigType::TypedConfig(typed)) => Some(typed),
        _ => None,
    };
    let merged = merge_config(existing, typed, patch.untyped.as_ref());
    target.name = merged_name(&target.name, &patch.filter.name);
    if let Some(merged) = merged {
        target.config_type = Some(filter::ConfigType::TypedConfig(merged));
    }
}

/// MERGE into an HTTP filter; one without a typed config is left alone, as in 1.4.
pub(crate) fn merge_http_filter(target: &mut HttpFilter, patch: &FilterValue<HttpFilter>) {
    let Some(http_filter::ConfigType::TypedConfig(existing)) = &target.config_type else { return };
    let typed = match &patch.filter.config_type {
        Some(http_filter::ConfigType::TypedConfig(typed)) => Some(typed),
        _ => None,
    };
    let merged = merge_config(existing, typed, patch.untyped.as_ref());
    target.name = merged_name(&target.name, &patch.filter.name);
    if let Some(merged) = merged {
        target.config_type = Some(http_filter::ConfigType::TypedConfig(merged));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

    #[test]
    fn merge_is_proto_merge() {
        let mut target = Cluster {
            name: "outbound|80||foo.bar".into(),
            lb_policy: cluster::LbPolicy::LeastRequest as i32,
            ..Default::default()
        };
        merge(&mut target, &Cluster { lb_policy: cluster::LbPolicy::RingHash as i32, ..Default::default() });
        assert_eq!(target.name, "outbound|80||foo.bar", "unset fields leave the target's");
        assert_eq!(target.lb_policy, cluster::LbPolicy::RingHash as i32);
        // A zero value cannot unset: ROUND_ROBIN is the enum's zero.
        merge(&mut target, &Cluster { lb_policy: cluster::LbPolicy::RoundRobin as i32, ..Default::default() });
        assert_eq!(target.lb_policy, cluster::LbPolicy::RingHash as i32);

        // Map keys replace whole values; other keys stay.
        let metadata = |entries: &[(&str, &str)]| {
            let filter_metadata = entries
                .iter()
                .map(|(key, value)| {
                    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
                    let field = ("value".to_string(), Value { kind: Some(Kind::StringValue(value.to_string())) });
                    (key.to_string(), Struct { fields: [field].into_iter().collect() })
                })
                .collect();
            Some(envoy_types::pb::envoy::config::core::v3::Metadata { filter_metadata, ..Default::default() })
        };
        target.metadata = metadata(&[("istio", "old"), ("other", "kept")]);
        merge(&mut target, &Cluster { metadata: metadata(&[("istio", "new")]), ..Default::default() });
        assert_eq!(target.metadata, metadata(&[("istio", "new"), ("other", "kept")]));

        // A oneof set to another case replaces it.
        target.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32));
        let custom = cluster::CustomClusterType { name: "envoy.clusters.aggregate".into(), ..Default::default() };
        merge(
            &mut target,
            &Cluster {
                cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(custom.clone())),
                ..Default::default()
            },
        );
        assert_eq!(target.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::ClusterType(custom)));
    }

    #[test]
    fn a_filter_without_a_typed_config_is_left_alone() {
        let mut target = Filter { name: "mixer".into(), config_type: None };
        let patch = FilterValue {
            filter: Filter { name: "renamed".into(), config_type: None },
            untyped: Some(serde_json::json!({"upstream_cluster": "scooby"})),
        };
        merge_network_filter(&mut target, &patch);
        assert_eq!(target, Filter { name: "mixer".into(), config_type: None });
    }

    #[test]
    fn filter_configs_of_one_type_merge_and_a_v2_config_is_read_as_the_filters_type() {
        let manager = HttpConnectionManager { stat_prefix: "inbound_80".into(), ..Default::default() };
        let mut target = Filter {
            name: "envoy.filters.network.http_connection_manager".into(),
            config_type: Some(filter::ConfigType::TypedConfig(crate::xds::any(manager))),
        };
        let patch = FilterValue {
            filter: Filter {
                name: "envoy.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(crate::xds::any(HttpConnectionManager {
                    xff_num_trusted_hops: 4,
                    ..Default::default()
                }))),
            },
            untyped: None,
        };
        merge_network_filter(&mut target, &patch);
        assert_eq!(target.name, "envoy.filters.network.http_connection_manager", "the 1.4 name is the same filter");
        let Some(filter::ConfigType::TypedConfig(typed)) = &target.config_type else { panic!("untyped") };
        let merged = HttpConnectionManager::decode(typed.value.as_slice()).unwrap();
        assert_eq!((merged.stat_prefix.as_str(), merged.xff_num_trusted_hops), ("inbound_80", 4));

        let mut fault = HttpFilter {
            name: "envoy.filters.http.fault".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(crate::xds::any(HttpFault::default()))),
            ..Default::default()
        };
        let patch = FilterValue {
            filter: HttpFilter::default(),
            untyped: Some(serde_json::json!({"upstream_cluster": "scooby"})),
        };
        merge_http_filter(&mut fault, &patch);
        let Some(http_filter::ConfigType::TypedConfig(typed)) = &fault.config_type else { panic!("untyped") };
        assert_eq!(HttpFault::decode(typed.value.as_slice()).unwrap().upstream_cluster, "scooby");

        let untouched = fault.clone();
        let other_type = FilterValue {
            filter: HttpFilter {
                config_type: Some(http_filter::ConfigType::TypedConfig(crate::xds::any(manager_default()))),
                ..Default::default()
            },
            untyped: None,
        };
        merge_http_filter(&mut fault, &other_type);
        assert_eq!(fault, untouched, "a config of another type is not merged");
    }

    fn manager_default() -> HttpConnectionManager {
        HttpConnectionManager::default()
    }
}
