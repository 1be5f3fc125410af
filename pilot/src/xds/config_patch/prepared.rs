//! EnvoyFilter config patches made ready once per push: each patch's value read into its v3
//! message (see `istio_xds::patch_value`), its proxy-version regex compiled, and a missing
//! match turned into "any context", as 1.4's `EnvoyFilterWrapper` did. INSERT_BEFORE and
//! INSERT_AFTER only mean something for network and HTTP filters; elsewhere they are ADD.

use std::collections::HashMap;

use istio_api::pb::istio::networking::v1alpha3 as net;
use istio_xds::patch_value::{patch_value, PatchObject, PatchValue};
use net::envoy_filter::{patch::Operation, ApplyTo, EnvoyConfigObjectMatch, PatchContext};

/// One config patch, ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct PreparedPatch {
    pub apply_to: ApplyTo,
    pub operation: Operation,
    pub matcher: EnvoyConfigObjectMatch,
    pub proxy_version: Option<regex::Regex>,
    /// The value; `None` for REMOVE.
    pub value: Option<PatchValue>,
    /// The null-VM Wasm plugin the value's filter runs (1.4's telemetry v2 filters): only a
    /// proxy that announces it gets the patch.
    pub requires_plugin: Option<String>,
}

/// The config patches of one EnvoyFilter and who they are for.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEnvoyFilter {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    /// `workloadSelector` (or the older `workloadLabels`); empty selects every proxy.
    pub selector: HashMap<String, String>,
    pub patches: Vec<PreparedPatch>,
}

/// Why a patch is left out (validation rejects these; a store that skipped validation can still
/// hold them).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error("configPatches[{index}]: no applyTo or operation")]
    Incomplete { index: usize },
    #[error("configPatches[{index}].patch.value: {message}")]
    Value { index: usize, message: String },
    #[error("configPatches[{index}].match.proxy.proxyVersion: {source}")]
    ProxyVersion { index: usize, source: regex::Error },
}

fn prepare_patch(
    index: usize,
    patch: &net::envoy_filter::EnvoyConfigObjectPatch,
) -> Result<PreparedPatch, PrepareError> {
    let apply_to = ApplyTo::try_from(patch.apply_to).unwrap_or(ApplyTo::Invalid);
    let body = patch.patch.as_ref().ok_or(PrepareError::Incomplete { index })?;
    let mut operation = Operation::try_from(body.operation).unwrap_or(Operation::Invalid);
    let object = PatchObject::of(apply_to).ok_or(PrepareError::Incomplete { index })?;
    if operation == Operation::Invalid {
        return Err(PrepareError::Incomplete { index });
    }
    if matches!(operation, Operation::InsertBefore | Operation::InsertAfter)
        && !matches!(apply_to, ApplyTo::NetworkFilter | ApplyTo::HttpFilter)
    {
        operation = Operation::Add;
    }
    let value = match (&body.value, operation) {
        (_, Operation::Remove) => None,
        (None, _) => return Err(PrepareError::Value { index, message: "missing".into() }),
        (Some(value), _) => {
            let json = istio_api::json::encode("google.protobuf.Struct", value)
                .map_err(|error| PrepareError::Value { index, message: error.to_string() })?;
            let typed = patch_value(object, &json, operation == Operation::Merge)
                .map_err(|error| PrepareError::Value { index, message: error.to_string() })?;
            Some(typed)
        }
    };
    let matcher = patch
        .r#match
        .clone()
        .unwrap_or(EnvoyConfigObjectMatch { context: PatchContext::Any as i32, ..Default::default() });
    let proxy_version = match matcher.proxy.as_ref().map(|proxy| proxy.proxy_version.as_str()) {
        Some(version) if !version.is_empty() => {
            Some(regex::Regex::new(version).map_err(|source| PrepareError::ProxyVersion { index, source })?)
        }
        _ => None,
    };
    let requires_plugin = value.as_ref().and_then(null_vm_plugin);
    Ok(PreparedPatch { apply_to, operation, matcher, proxy_version, value, requires_plugin })
}

/// The plugin a Wasm filter runs in the null VM (`vm_config.runtime: envoy.wasm.runtime.null`,
/// the plugin's name as the inline code).
fn null_vm_plugin(value: &PatchValue) -> Option<String> {
    use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source};
    use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
    use prost::Message;
    let typed = match value {
        PatchValue::HttpFilter(filter) => match &filter.filter.config_type {
            Some(envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(typed)) => typed,
            _ => return None,
        },
        PatchValue::NetworkFilter(filter) => match &filter.filter.config_type {
            Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(typed)) => typed,
            _ => return None,
        },
        _ => return None,
    };
    if !typed.type_url.ends_with(".wasm.v3.Wasm") {
        return None;
    }
    // The HTTP and network Wasm configs share their encoding (one PluginConfig, field 1).
    let envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm::VmConfig(vm) =
        Wasm::decode(typed.value.as_slice()).ok()?.config?.vm?;
    if vm.runtime != "envoy.wasm.runtime.null" {
        return None;
    }
    match vm.code?.specifier? {
        async_data_source::Specifier::Local(local) => match local.specifier? {
            data_source::Specifier::InlineString(name) => Some(name),
            _ => None,
        },
        _ => None,
    }
}

impl PreparedEnvoyFilter {
    /// The config patches of an EnvoyFilter; `None` when it has none (the insert-filter form).
    /// A patch that cannot be read is logged and left out, as 1.4 left out bad patches.
    pub(crate) fn prepare(name: &str, namespace: &str, spec: &net::EnvoyFilter) -> Option<PreparedEnvoyFilter> {
        if spec.config_patches.is_empty() {
            return None;
        }
        let key = format!("{namespace}/{name}");
        let patches = spec
            .config_patches
            .iter()
            .enumerate()
            .filter_map(|(index, patch)| match prepare_patch(index, patch) {
                Ok(prepared) => Some(prepared),
                Err(error) => {
                    tracing::warn!(envoy_filter = %key, %error, "EnvoyFilter patch left out");
                    None
                }
            })
            .collect();
        let selector =
            spec.workload_selector.as_ref().map(|s| s.labels.clone()).unwrap_or_else(|| spec.workload_labels.clone());
        Some(PreparedEnvoyFilter { key, namespace: namespace.to_string(), selector, patches })
    }

    /// The patches that apply to objects of one kind, in the order written.
    pub(crate) fn patches(&self, apply_to: ApplyTo) -> impl Iterator<Item = &PreparedPatch> {
        self.patches.iter().filter(move |patch| patch.apply_to == apply_to)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config patch from YAML in 1.4's shape, for tests.
    pub(crate) fn patch(yaml: &str) -> net::envoy_filter::EnvoyConfigObjectPatch {
        let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        istio_api::json::decode("istio.networking.v1alpha3.EnvoyFilter.EnvoyConfigObjectPatch", &value)
            .expect("a config patch")
    }

    /// An EnvoyFilter in `namespace` made of `patches`, prepared.
    pub(crate) fn envoy_filter(namespace: &str, patches: &[&str]) -> PreparedEnvoyFilter {
        let spec =
            net::EnvoyFilter { config_patches: patches.iter().map(|yaml| patch(yaml)).collect(), ..Default::default() };
        PreparedEnvoyFilter::prepare("test", namespace, &spec).expect("config patches")
    }

    /// One EnvoyFilter per patch, named in order, as 1.4.6's tests build them.
    pub(crate) fn one_per_patch(namespace: &str, patches: &[&str]) -> Vec<PreparedEnvoyFilter> {
        patches
            .iter()
            .enumerate()
            .map(|(index, yaml)| {
                let spec = net::EnvoyFilter { config_patches: vec![patch(yaml)], ..Default::default() };
                PreparedEnvoyFilter::prepare(&format!("test-envoyfilter-{index}"), namespace, &spec).expect("patches")
            })
            .collect()
    }

    #[test]
    fn inserts_outside_filters_become_adds_and_a_missing_match_is_any_context() {
        let filter = envoy_filter(
            "default",
            &[
                "{applyTo: CLUSTER, patch: {operation: INSERT_BEFORE, value: {name: new-cluster}}}",
                "{applyTo: HTTP_FILTER, patch: {operation: INSERT_AFTER, value: {name: envoy.filters.http.cors}}}",
                "{applyTo: LISTENER, match: {context: GATEWAY}, patch: {operation: REMOVE}}",
            ],
        );
        assert_eq!(filter.patches[0].operation, Operation::Add);
        assert_eq!(filter.patches[0].matcher.context, PatchContext::Any as i32);
        assert_eq!(filter.patches[1].operation, Operation::InsertAfter);
        assert!(filter.patches[2].value.is_none());
        assert_eq!(filter.patches(ApplyTo::Cluster).count(), 1);
    }

    #[test]
    fn telemetry_v2_filters_name_their_null_vm_plugin() {
        let filter = envoy_filter(
            "istio-system",
            &["{applyTo: HTTP_FILTER, match: {context: ANY, listener: {filterChain: {filter: {name: envoy.http_connection_manager}}}},
               patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.wasm, config: {config: {
                 configuration: envoy.wasm.metadata_exchange,
                 vm_config: {runtime: envoy.wasm.runtime.null, code: {inline_string: envoy.wasm.metadata_exchange}}}}}}}",
              "{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.cors}}}"],
        );
        assert_eq!(filter.patches[0].requires_plugin.as_deref(), Some("envoy.wasm.metadata_exchange"));
        assert_eq!(filter.patches[1].requires_plugin, None);
    }

    #[test]
    fn unreadable_patches_are_left_out() {
        let filter = envoy_filter(
            "default",
            &[
                "{applyTo: CLUSTER, patch: {operation: MERGE, value: {no_such_field: 1}}}",
                "{applyTo: CLUSTER, match: {proxy: {proxyVersion: '('}}, patch: {operation: REMOVE}}",
                "{applyTo: CLUSTER, patch: {operation: MERGE, value: {lb_policy: RING_HASH}}}",
            ],
        );
        assert_eq!(filter.patches.len(), 1);
    }
}
