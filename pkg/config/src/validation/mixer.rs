//! Rules for `config.istio.io/v1alpha2`: Mixer's rule / instance / handler / attributemanifest
//! (plus the legacy per-adapter and per-template kinds) and the Mixer client kinds HTTPAPISpec,
//! HTTPAPISpecBinding, QuotaSpec and QuotaSpecBinding. Expressions are parsed (not type-checked:
//! that needs Mixer's attribute manifests), references must be well formed, and the params of a
//! known adapter or template must decode into its proto and pass that adapter's own checks.

use istio_api::json::JsonError;
use istio_api::kinds::{self, Kind};
use istio_api::pb::adapter;
use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_api::pb::istio::policy::v1beta1 as policy;
use serde_json::Value;

use super::common::*;
use super::report::{typed, Report};
use istio_attribute::expr;

pub(super) fn validate(kind: &Kind, spec: &Value, report: &mut Report) -> Result<(), JsonError> {
    match kind.kind {
        "rule" => rule(&typed(kind, spec)?, report),
        "instance" => instance(&typed(kind, spec)?, spec, report),
        "handler" => handler(&typed(kind, spec)?, spec, report),
        "attributemanifest" => attribute_manifest(&typed(kind, spec)?, report),
        "HTTPAPISpec" => http_api_spec(&typed(kind, spec)?, report),
        "HTTPAPISpecBinding" => http_api_spec_binding(&typed(kind, spec)?, report),
        "QuotaSpec" => quota_spec(&typed(kind, spec)?, report),
        "QuotaSpecBinding" => quota_spec_binding(&typed(kind, spec)?, report),
        _ if kind.legacy => legacy(kind, spec, report),
        _ => {}
    }
    Ok(())
}

fn expression(field: &str, text: &str, report: &mut Report) {
    if let Err(error) = expr::parse(text) {
        report.error(field, error.to_string());
    }
}

/// Mixer references: `name`, `name.namespace` or `name.kind.namespace`, each part a DNS label.
fn reference(field: &str, what: &str, name: &str, report: &mut Report) {
    if name.is_empty() {
        report.error(field, format!("{what} must be specified"));
    } else if name.split('.').any(|part| !is_dns1123_label(part)) {
        report.error(field, format!("invalid {what} reference {name:?}: expected name[.kind].namespace"));
    }
}

fn rule(rule: &policy::Rule, report: &mut Report) {
    if !rule.r#match.is_empty() {
        expression("spec.match", &rule.r#match, report);
    }
    if rule.actions.is_empty()
        && rule.request_header_operations.is_empty()
        && rule.response_header_operations.is_empty()
    {
        report.error("spec.actions", "a rule must have at least one action or header operation");
    }
    let mut action_names = std::collections::HashSet::new();
    for (index, action) in rule.actions.iter().enumerate() {
        let field = format!("spec.actions[{index}]");
        reference(&format!("{field}.handler"), "handler", &action.handler, report);
        if action.instances.is_empty() {
            report.error(format!("{field}.instances"), "an action must name at least one instance");
        }
        for (position, instance) in action.instances.iter().enumerate() {
            reference(&format!("{field}.instances[{position}]"), "instance", instance, report);
        }
        if !action.name.is_empty() && !action_names.insert(action.name.as_str()) {
            report.error(format!("{field}.name"), format!("action name {:?} is used more than once", action.name));
        }
    }
    for (list, operations) in [
        ("requestHeaderOperations", &rule.request_header_operations),
        ("responseHeaderOperations", &rule.response_header_operations),
    ] {
        for (index, operation) in operations.iter().enumerate() {
            let field = format!("spec.{list}[{index}]");
            if operation.name.is_empty() {
                report.error(format!("{field}.name"), "header operation must name a header");
            }
            for (position, value) in operation.values.iter().enumerate() {
                expression(&format!("{field}.values[{position}]"), value, report);
            }
        }
    }
    if let Some(sampling) = &rule.sampling {
        if let Some(random) = &sampling.random {
            if !random.attribute_expression.is_empty() {
                expression("spec.sampling.random.attributeExpression", &random.attribute_expression, report);
            }
            if let Some(percent) = &random.percent_sampled {
                let limit = if percent.denominator == policy::fractional_percent::DenominatorType::TenThousand as i32 {
                    10_000
                } else {
                    100
                };
                if percent.numerator > limit {
                    report.error(
                        "spec.sampling.random.percentSampled.numerator",
                        format!("numerator {} exceeds the denominator {limit}", percent.numerator),
                    );
                }
            }
        }
        if let Some(rate_limit) = &sampling.rate_limit {
            if rate_limit.max_unsampled_entries < 0 || rate_limit.sampling_rate < 0 {
                report.error("spec.sampling.rateLimit", "maxUnsampledEntries and samplingRate must be non-negative");
            }
            if let Some(duration) = &rate_limit.sampling_duration {
                report.check("spec.sampling.rateLimit.samplingDuration", validate_duration(duration));
            }
        }
    }
}

/// Parses every string in a template's params as an expression (every template field is one).
fn expressions_in(field: &str, value: &Value, report: &mut Report) {
    match value {
        Value::String(text) => expression(field, text, report),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                expressions_in(&format!("{field}[{index}]"), item, report);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                expressions_in(&format!("{field}.{key}"), item, report);
            }
        }
        _ => {}
    }
}

/// The legacy kind whose spec is the params of a compiled template or adapter named `name`.
fn compiled(name: &str) -> Option<&'static Kind> {
    kinds::all().iter().find(|kind| kind.legacy && kind.kind == name)
}

fn check_one_of(report: &mut Report, compiled_field: (&str, &str), custom_field: (&str, &str), what: &str) {
    match (compiled_field.1.is_empty(), custom_field.1.is_empty()) {
        (true, true) => report.error(
            "spec",
            format!("either {} or {} must be specified for the {what}", compiled_field.0, custom_field.0),
        ),
        (false, false) => report.error(
            "spec",
            format!("only one of {} or {} can be specified for the {what}", compiled_field.0, custom_field.0),
        ),
        _ => {}
    }
}

fn params_of(spec: &Value) -> Value {
    spec.get("params").cloned().unwrap_or_else(|| Value::Object(Default::default()))
}

fn instance(instance: &policy::Instance, spec: &Value, report: &mut Report) {
    check_one_of(
        report,
        ("compiledTemplate", &instance.compiled_template),
        ("template", &instance.template),
        "instance",
    );
    for (attribute, value) in &instance.attribute_bindings {
        let field = format!("spec.attributeBindings.{attribute}");
        if attribute.is_empty() {
            report.error("spec.attributeBindings", "attribute binding must name an attribute");
        }
        expression(&field, value, report);
    }
    if instance.compiled_template.is_empty() {
        return;
    }
    match compiled(&instance.compiled_template) {
        Some(template) if template.proto.ends_with(".InstanceParam") => {
            let params = params_of(spec);
            if let Err(error) = istio_api::json::decode_dynamic(template.proto, &params) {
                report.error(params_path(&error), error.to_string());
                return;
            }
            expressions_in("spec.params", &params, report);
        }
        _ => report.error("spec.compiledTemplate", format!("unknown template {:?}", instance.compiled_template)),
    }
}

fn params_path(error: &JsonError) -> String {
    match error {
        JsonError::Mismatch { path, .. } if !path.is_empty() => format!("spec.params.{path}"),
        _ => "spec.params".to_string(),
    }
}

fn handler(handler: &policy::Handler, spec: &Value, report: &mut Report) {
    check_one_of(report, ("compiledAdapter", &handler.compiled_adapter), ("adapter", &handler.adapter), "handler");
    if !handler.adapter.is_empty() {
        match &handler.connection {
            Some(connection) if !connection.address.is_empty() => {}
            _ => report.error("spec.connection.address", "an out-of-process handler needs connection.address"),
        }
    }
    if handler.compiled_adapter.is_empty() {
        return;
    }
    let Some(adapter_kind) = compiled(&handler.compiled_adapter).filter(|kind| !kind.proto.ends_with(".InstanceParam"))
    else {
        report.error("spec.compiledAdapter", format!("unknown adapter {:?}", handler.compiled_adapter));
        return;
    };
    let params = params_of(spec);
    if let Err(error) = istio_api::json::decode_dynamic(adapter_kind.proto, &params) {
        report.error(params_path(&error), error.to_string());
        return;
    }
    adapter_params(adapter_kind, "spec.params", &params, report);
}

fn legacy(kind: &Kind, spec: &Value, report: &mut Report) {
    if kind.proto.ends_with(".InstanceParam") {
        expressions_in("spec", spec, report);
    } else {
        adapter_params(kind, "spec", spec, report);
    }
}

/// The adapter's own configuration checks, on params already known to decode.
fn adapter_params(kind: &Kind, field: &str, params: &Value, report: &mut Report) {
    let decoded = |report: &mut Report| -> Option<()> {
        match kind.kind {
            "prometheus" => prometheus(field, &istio_api::json::decode(kind.proto, params).ok()?, report),
            "listchecker" => list(field, &istio_api::json::decode(kind.proto, params).ok()?, report),
            "memquota" => memquota(field, &istio_api::json::decode(kind.proto, params).ok()?, report),
            "redisquota" => redisquota(field, &istio_api::json::decode(kind.proto, params).ok()?, report),
            "denier" => denier(field, &istio_api::json::decode(kind.proto, params).ok()?, report),
            _ => {}
        }
        Some(())
    };
    if decoded(report).is_none() {
        report.error(field, format!("params do not decode as {}", kind.proto));
    }
}

fn prometheus(field: &str, params: &adapter::prometheus::config::Params, report: &mut Report) {
    use adapter::prometheus::config::params::metric_info::buckets_definition::Definition;
    use adapter::prometheus::config::params::metric_info::Kind as MetricKind;
    let name_ok = |name: &str| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (index, metric) in params.metrics.iter().enumerate() {
        let field = format!("{field}.metrics[{index}]");
        if !name_ok(&metric.name) {
            report.error(format!("{field}.name"), format!("invalid metric name {:?}", metric.name));
        }
        if !metric.namespace.is_empty() && !name_ok(&metric.namespace) {
            report.error(format!("{field}.namespace"), format!("invalid metric namespace {:?}", metric.namespace));
        }
        if metric.instance_name.is_empty() {
            report.error(format!("{field}.instanceName"), "instance_name is required");
        }
        if metric.kind == MetricKind::Unspecified as i32 {
            report.error(format!("{field}.kind"), "metric kind must be GAUGE, COUNTER or DISTRIBUTION");
        }
        for label in &metric.label_names {
            if !name_ok(label) || label.contains(':') {
                report.error(format!("{field}.labelNames"), format!("invalid label name {label:?}"));
            }
        }
        let definition = metric.buckets.as_ref().and_then(|buckets| buckets.definition.as_ref());
        if metric.kind == MetricKind::Distribution as i32 && definition.is_none() {
            report.error(format!("{field}.buckets"), "a DISTRIBUTION metric needs a buckets definition");
        }
        match definition {
            Some(Definition::LinearBuckets(linear)) if linear.num_finite_buckets <= 0 || linear.width <= 0.0 => {
                report.error(format!("{field}.buckets.linearBuckets"), "numFiniteBuckets and width must be positive");
            }
            Some(Definition::ExponentialBuckets(exp))
                if exp.num_finite_buckets <= 0 || exp.growth_factor <= 1.0 || exp.scale <= 0.0 =>
            {
                report.error(
                    format!("{field}.buckets.exponentialBuckets"),
                    "numFiniteBuckets and scale must be positive and growthFactor above 1",
                );
            }
            Some(Definition::ExplicitBuckets(explicit))
                if explicit.bounds.is_empty() || explicit.bounds.windows(2).any(|pair| pair[0] >= pair[1]) =>
            {
                report.error(
                    format!("{field}.buckets.explicitBuckets.bounds"),
                    "bounds must be a non-empty increasing list",
                );
            }
            _ => {}
        }
    }
}

fn millis(duration: Option<&prost_types::Duration>) -> i64 {
    duration.map_or(0, |d| d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos / 1_000_000)))
}

fn list(field: &str, params: &adapter::list::config::Params, report: &mut Report) {
    use adapter::list::config::params::ListEntryType;
    if !params.provider_url.is_empty() {
        let scheme_ok = params.provider_url.starts_with("http://") || params.provider_url.starts_with("https://");
        if !scheme_ok {
            report.error(
                format!("{field}.providerUrl"),
                format!("providerUrl {:?} must be an http or https URL", params.provider_url),
            );
        }
        let refresh = millis(params.refresh_interval.as_ref());
        if refresh < 1000 {
            report.error(format!("{field}.refreshInterval"), "refreshInterval must be at least 1 second");
        }
        if millis(params.ttl.as_ref()) <= refresh {
            report.error(format!("{field}.ttl"), "ttl must be > refreshInterval");
        }
    }
    if params.caching_use_count < 0 {
        report.error(format!("{field}.cachingUseCount"), "cachingUseCount must be >= 0");
    }
    if params.entry_type == ListEntryType::IpAddresses as i32 {
        for (index, entry) in params.overrides.iter().enumerate() {
            if validate_ip_subnet(entry).is_err() {
                report.error(
                    format!("{field}.overrides[{index}]"),
                    format!("could not parse override {entry:?} as an IP address or CIDR block"),
                );
            }
        }
    }
}

fn memquota(field: &str, params: &adapter::memquota::config::Params, report: &mut Report) {
    let mut names = std::collections::HashSet::new();
    for (index, quota) in params.quotas.iter().enumerate() {
        let field = format!("{field}.quotas[{index}]");
        if quota.name.is_empty() {
            report.error(format!("{field}.name"), "quota name is required");
        } else if !names.insert(quota.name.as_str()) {
            report.error(format!("{field}.name"), format!("quota {:?} is defined more than once", quota.name));
        }
        if quota.max_amount <= 0 {
            report.error(format!("{field}.maxAmount"), format!("max amount {} must be > 0", quota.max_amount));
        }
        if millis(quota.valid_duration.as_ref()) < 0 {
            report.error(format!("{field}.validDuration"), "validDuration must be >= 0");
        }
        for (position, rule) in quota.overrides.iter().enumerate() {
            if rule.max_amount <= 0 {
                report.error(
                    format!("{field}.overrides[{position}].maxAmount"),
                    format!("max amount {} must be > 0", rule.max_amount),
                );
            }
        }
    }
}

fn redisquota(field: &str, params: &adapter::redisquota::config::Params, report: &mut Report) {
    use adapter::redisquota::config::params::QuotaAlgorithm;
    if params.redis_server_url.is_empty() {
        report.error(format!("{field}.redisServerUrl"), "redis server url should not be empty");
    }
    if params.connection_pool_size <= 0 {
        report.error(
            format!("{field}.connectionPoolSize"),
            format!("connection pool size of {} is invalid, must be > 0", params.connection_pool_size),
        );
    }
    for (index, quota) in params.quotas.iter().enumerate() {
        let field = format!("{field}.quotas[{index}]");
        if quota.name.is_empty() {
            report.error(format!("{field}.name"), "quota name is required");
        }
        if quota.max_amount <= 0 {
            report.error(format!("{field}.maxAmount"), format!("max amount {} must be > 0", quota.max_amount));
        }
        let valid = millis(quota.valid_duration.as_ref());
        if valid <= 0 {
            report.error(format!("{field}.validDuration"), "valid duration must be > 0");
        }
        if quota.rate_limit_algorithm == QuotaAlgorithm::RollingWindow as i32 {
            let bucket = millis(quota.bucket_duration.as_ref());
            if bucket <= 0 || bucket >= valid {
                report.error(
                    format!("{field}.bucketDuration"),
                    "a ROLLING_WINDOW quota needs 0 < bucketDuration < validDuration",
                );
            }
        }
        for (position, rule) in quota.overrides.iter().enumerate() {
            if rule.dimensions.is_empty() {
                report.error(format!("{field}.overrides[{position}].dimensions"), "an override must set dimensions");
            }
            if rule.max_amount <= 0 {
                report.error(
                    format!("{field}.overrides[{position}].maxAmount"),
                    format!("max amount {} must be > 0", rule.max_amount),
                );
            }
        }
    }
}

fn denier(field: &str, params: &adapter::denier::config::Params, report: &mut Report) {
    if let Some(status) = &params.status {
        if !(0..=16).contains(&status.code) {
            report.error(format!("{field}.status.code"), format!("{} is not a gRPC status code (0..16)", status.code));
        }
    }
    if params.valid_use_count < 0 {
        report.error(format!("{field}.validUseCount"), "validUseCount must be >= 0");
    }
}

fn attribute_manifest(manifest: &policy::AttributeManifest, report: &mut Report) {
    for (name, info) in &manifest.attributes {
        if name.is_empty() {
            report.error("spec.attributes", "attribute names must not be empty");
        }
        if info.value_type == policy::ValueType::Unspecified as i32 {
            report.error(format!("spec.attributes.{name}.valueType"), "valueType must be set");
        }
    }
}

fn http_api_spec(spec: &mcc::HttpapiSpec, report: &mut Report) {
    use mcc::api_key::Key;
    use mcc::httpapi_spec_pattern::Pattern;
    if spec.patterns.is_empty() {
        report.error("spec.patterns", "at least one pattern must be specified");
    }
    for (index, pattern) in spec.patterns.iter().enumerate() {
        let field = format!("spec.patterns[{index}]");
        if pattern.http_method.is_empty() {
            report.error(format!("{field}.httpMethod"), "http_method cannot be empty");
        }
        match &pattern.pattern {
            Some(Pattern::UriTemplate(template)) if template.is_empty() => {
                report.error(format!("{field}.uriTemplate"), "uri_template cannot be empty")
            }
            Some(Pattern::Regex(regex)) if regex.is_empty() => {
                report.error(format!("{field}.regex"), "regex cannot be empty")
            }
            Some(Pattern::Regex(regex)) => report.check(format!("{field}.regex"), validate_regex(regex)),
            Some(Pattern::UriTemplate(_)) => {}
            None => report.error(&field, "a pattern needs uriTemplate or regex"),
        }
    }
    for (index, key) in spec.api_keys.iter().enumerate() {
        let field = format!("spec.apiKeys[{index}]");
        match &key.key {
            Some(Key::Query(query)) if query.is_empty() => {
                report.error(format!("{field}.query"), "query cannot be empty")
            }
            Some(Key::Header(header)) if header.is_empty() => {
                report.error(format!("{field}.header"), "header cannot be empty")
            }
            Some(Key::Cookie(cookie)) if cookie.is_empty() => {
                report.error(format!("{field}.cookie"), "cookie cannot be empty")
            }
            _ => {}
        }
    }
}

fn istio_service(field: &str, service: &mcc::IstioService, report: &mut Report) {
    match (service.name.is_empty(), service.service.is_empty()) {
        (true, true) => report.error(field, "name or service is mandatory for a service reference"),
        (false, false) => report.error(field, "specify either name or service, not both"),
        (true, false) => {
            if !service.namespace.is_empty() {
                report.error(format!("{field}.namespace"), "namespace is not valid when service is provided");
            }
            if !service.domain.is_empty() {
                report.error(format!("{field}.domain"), "domain is not valid when service is provided");
            }
        }
        (false, true) => {
            if !is_dns1123_label(&service.name) {
                report.error(format!("{field}.name"), format!("name {:?} must be a valid label", service.name));
            }
        }
    }
    if !service.namespace.is_empty() && !is_dns1123_label(&service.namespace) {
        report.error(format!("{field}.namespace"), format!("namespace {:?} must be a valid label", service.namespace));
    }
    if !service.domain.is_empty() {
        report.check(format!("{field}.domain"), validate_fqdn(&service.domain));
    }
    report.check(format!("{field}.labels"), validate_labels(&service.labels));
}

fn spec_references<'a>(
    field: &str,
    what: &str,
    references: impl Iterator<Item = (&'a str, &'a str)>,
    report: &mut Report,
) -> usize {
    let mut count = 0;
    for (index, (name, namespace)) in references.enumerate() {
        count += 1;
        if name.is_empty() {
            report.error(format!("{field}[{index}].name"), format!("name is mandatory for {what}"));
        }
        if !namespace.is_empty() && !is_dns1123_label(namespace) {
            report
                .error(format!("{field}[{index}].namespace"), format!("namespace {namespace:?} must be a valid label"));
        }
    }
    count
}

fn http_api_spec_binding(binding: &mcc::HttpapiSpecBinding, report: &mut Report) {
    if binding.services.is_empty() {
        report.error("spec.services", "at least one service must be specified");
    }
    for (index, service) in binding.services.iter().enumerate() {
        istio_service(&format!("spec.services[{index}]"), service, report);
    }
    let references = binding.api_specs.iter().map(|spec| (spec.name.as_str(), spec.namespace.as_str()));
    if spec_references("spec.apiSpecs", "HTTPAPISpecReference", references, report) == 0 {
        report.error("spec.apiSpecs", "at least one spec must be specified");
    }
}

fn quota_spec(spec: &mcc::QuotaSpec, report: &mut Report) {
    use mcc::string_match::MatchType;
    if spec.rules.is_empty() {
        report.error("spec.rules", "a least one rule must be specified");
    }
    for (index, rule) in spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{index}]");
        for (position, matcher) in rule.r#match.iter().enumerate() {
            for (name, clause) in &matcher.clause {
                let field = format!("{field}.match[{position}].clause.{name}");
                if name.is_empty() {
                    report.error(&field, "a clause name must not be empty");
                }
                match &clause.match_type {
                    None => report.error(&field, "a clause must not be empty"),
                    Some(MatchType::Exact(value)) if value.is_empty() => {
                        report.error(&field, "a clause exact must not be empty")
                    }
                    Some(MatchType::Prefix(value)) if value.is_empty() => {
                        report.error(&field, "a clause prefix must not be empty")
                    }
                    Some(MatchType::Regex(value)) if value.is_empty() => {
                        report.error(&field, "a clause regex must not be empty")
                    }
                    Some(MatchType::Regex(value)) => report.check(&field, validate_regex(value)),
                    Some(_) => {}
                }
            }
        }
        if rule.quotas.is_empty() {
            report.error(format!("{field}.quotas"), "a rule must have at least one quota");
        }
        for (position, quota) in rule.quotas.iter().enumerate() {
            if quota.quota.is_empty() {
                report.error(format!("{field}.quotas[{position}].quota"), "a quota must have a name");
            }
            if quota.charge <= 0 {
                report.error(format!("{field}.quotas[{position}].charge"), "a quota must have a positive charge");
            }
        }
    }
}

fn quota_spec_binding(binding: &mcc::QuotaSpecBinding, report: &mut Report) {
    if binding.services.is_empty() {
        report.error("spec.services", "at least one service must be specified");
    }
    for (index, service) in binding.services.iter().enumerate() {
        istio_service(&format!("spec.services[{index}]"), service, report);
    }
    let references = binding.quota_specs.iter().map(|spec| (spec.name.as_str(), spec.namespace.as_str()));
    if spec_references("spec.quotaSpecs", "QuotaSpecReference", references, report) == 0 {
        report.error("spec.quotaSpecs", "at least one spec must be specified");
    }
}
