//! Templates: the shapes of the instances Mixer hands to adapters. An instance object names a
//! template (`compiledTemplate: quota`) and gives, per field, a CEXL expression; at request time
//! every expression is evaluated against the request's attributes and the result is an
//! [`Instance`].
//!
//! The templates are 1.4's: `checknothing`, `listentry`, `quota`, `authorization`, `apikey`
//! (checks and quotas), `metric`, `logentry`, `tracespan` and `reportnothing` (reports), and the
//! attribute generator `kubernetes`. Field names in errors are 1.4's Go names (`Value`, `Dimensions[source]`,
//! `Subject.User`).

use std::collections::BTreeMap;
use std::sync::Arc;

use istio_api::pb;
use istio_attribute::check::AttributeTypes;
use istio_attribute::{Bag, CompileError, Compiled, OwnedValue, Tracker, ValueType};
use serde_json::Value as Json;

/// A template Mixer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    CheckNothing,
    ListEntry,
    Quota,
    Authorization,
    ApiKey,
    Metric,
    LogEntry,
    TraceSpan,
    ReportNothing,
    Kubernetes,
}

/// When Mixer calls a template's handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variety {
    Check,
    Quota,
    Report,
    AttributeGenerator,
}

impl Template {
    pub const ALL: [Template; 10] = [
        Template::CheckNothing,
        Template::ListEntry,
        Template::Quota,
        Template::Authorization,
        Template::ApiKey,
        Template::Metric,
        Template::LogEntry,
        Template::TraceSpan,
        Template::ReportNothing,
        Template::Kubernetes,
    ];

    /// By `compiledTemplate` name, or by the legacy per-template kind name.
    pub fn by_name(name: &str) -> Option<Template> {
        Template::ALL.into_iter().find(|template| template.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Template::CheckNothing => "checknothing",
            Template::ListEntry => "listentry",
            Template::Quota => "quota",
            Template::Authorization => "authorization",
            Template::ApiKey => "apikey",
            Template::Metric => "metric",
            Template::LogEntry => "logentry",
            Template::TraceSpan => "tracespan",
            Template::ReportNothing => "reportnothing",
            Template::Kubernetes => "kubernetes",
        }
    }

    pub fn variety(self) -> Variety {
        match self {
            Template::Quota => Variety::Quota,
            Template::Metric | Template::LogEntry | Template::TraceSpan | Template::ReportNothing => Variety::Report,
            Template::Kubernetes => Variety::AttributeGenerator,
            _ => Variety::Check,
        }
    }

    /// The proto message an instance's `params` decode into.
    fn params_proto(self) -> &'static str {
        match self {
            Template::CheckNothing => "checknothing.InstanceParam",
            Template::ListEntry => "listentry.InstanceParam",
            Template::Quota => "quota.InstanceParam",
            Template::Authorization => "authorization.InstanceParam",
            Template::ApiKey => "apikey.InstanceParam",
            Template::Metric => "metric.InstanceParam",
            Template::LogEntry => "logentry.InstanceParam",
            Template::TraceSpan => "tracespan.InstanceParam",
            Template::ReportNothing => "reportnothing.InstanceParam",
            Template::Kubernetes => "adapter.template.kubernetes.InstanceParam",
        }
    }
}

/// Where a field's expression goes and what type it must have (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldSpec {
    /// Key in [`Instance::fields`] (`value`, `subject.user`, `dimensions.source`).
    key: Arc<str>,
    /// The name 1.4's errors used (`Value`, `Subject.User`, `Dimensions[source]`).
    go_path: String,
    expected: Option<ValueType>,
    /// A map entry (`dimensions`, `properties`): errors read `'…'; cause` as 1.4's.
    map_entry: bool,
}

/// One field's expression, type-checked.
#[derive(Debug, Clone)]
struct Field {
    spec: FieldSpec,
    expression: Arc<Compiled>,
}

/// An instance config whose expressions compile against the manifests.
#[derive(Debug, Clone)]
pub struct InstanceBuilder {
    /// The full name (`requestcountquota.instance.istio-system`), what adapters see.
    pub name: Arc<str>,
    pub template: Template,
    fields: Vec<Field>,
    /// `kubernetes` only: output attribute ← expression over `adapter_template_kubernetes.output.*`.
    pub bindings: Vec<(String, Arc<Compiled>)>,
}

/// A field expression that does not type-check, with 1.4's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    #[error("{0}")]
    Params(String),
    #[error("failed to evaluate expression for field '{field}': {cause}")]
    Field { field: String, cause: CompileError },
    #[error("failed to evaluate expression for field '{field}'; {cause}")]
    MapEntry { field: String, cause: CompileError },
    #[error("error type checking for field '{field}': Evaluated expression type {actual} want {expected}")]
    FieldType { field: String, actual: &'static str, expected: &'static str },
    #[error("error evaluating AttributeBinding expression '{expression}' for attribute '{attribute}': {cause}")]
    Binding { expression: String, attribute: String, cause: CompileError },
    #[error("error evaluating AttributeBinding: type '{attribute_type}' for attribute '{attribute}' does not match type '{expression_type}' for expression '{expression}'")]
    BindingType { attribute_type: &'static str, attribute: String, expression_type: &'static str, expression: String },
    #[error("error evaluating AttributeBinding expression for attribute key '{0}': attribute is not in any manifest")]
    BindingAttribute(String),
}

/// The prefix the `kubernetes` template's outputs take as attributes (`$out.` in bindings).
pub const KUBERNETES_OUTPUT_PREFIX: &str = "adapter_template_kubernetes.output.";

/// The `kubernetes` template's output fields and their types.
pub const KUBERNETES_OUTPUTS: &[(&str, ValueType)] = &[
    ("source_pod_uid", ValueType::String),
    ("source_pod_ip", ValueType::IpAddress),
    ("source_pod_name", ValueType::String),
    ("source_labels", ValueType::StringMap),
    ("source_namespace", ValueType::String),
    ("source_service_account_name", ValueType::String),
    ("source_host_ip", ValueType::IpAddress),
    ("source_workload_uid", ValueType::String),
    ("source_workload_name", ValueType::String),
    ("source_workload_namespace", ValueType::String),
    ("source_owner", ValueType::String),
    ("destination_pod_uid", ValueType::String),
    ("destination_pod_ip", ValueType::IpAddress),
    ("destination_pod_name", ValueType::String),
    ("destination_container_name", ValueType::String),
    ("destination_labels", ValueType::StringMap),
    ("destination_namespace", ValueType::String),
    ("destination_service_account_name", ValueType::String),
    ("destination_host_ip", ValueType::IpAddress),
    ("destination_workload_uid", ValueType::String),
    ("destination_workload_name", ValueType::String),
    ("destination_workload_namespace", ValueType::String),
    ("destination_owner", ValueType::String),
];

fn scalar(key: &str, go_path: &str, expected: ValueType, text: &str, out: &mut Vec<(FieldSpec, String)>) {
    out.push((
        FieldSpec { key: key.into(), go_path: go_path.to_string(), expected: Some(expected), map_entry: false },
        text.to_string(),
    ));
}

fn map_entries(
    key: &str,
    go_path: &str,
    entries: &std::collections::HashMap<String, String>,
    out: &mut Vec<(FieldSpec, String)>,
) {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort();
    for (name, text) in sorted {
        out.push((
            FieldSpec {
                key: format!("{key}.{name}").into(),
                go_path: format!("{go_path}[{name}]"),
                expected: None,
                map_entry: true,
            },
            text.clone(),
        ));
    }
}

/// The `monitored_resource_*` fields the report templates share.
fn monitored_resource(
    resource_type: &str,
    dimensions: &std::collections::HashMap<String, String>,
    out: &mut Vec<(FieldSpec, String)>,
) {
    scalar("monitored_resource_type", "MonitoredResourceType", ValueType::String, resource_type, out);
    map_entries("monitored_resource_dimensions", "MonitoredResourceDimensions", dimensions, out);
}

/// An instance's field expressions and (for `kubernetes`) its attribute bindings.
type Expressions = (Vec<(FieldSpec, String)>, Vec<(String, String)>);

/// The field expressions of an instance's params, by template.
fn field_expressions(template: Template, params: &Json) -> Result<Expressions, InstanceError> {
    let params = if params.is_null() { Json::Object(Default::default()) } else { params.clone() };
    let decode_error = |error: istio_api::json::JsonError| InstanceError::Params(error.to_string());
    let proto = template.params_proto();
    let mut fields = Vec::new();
    let mut bindings = Vec::new();
    match template {
        Template::CheckNothing | Template::ReportNothing => {
            istio_api::json::decode_dynamic(proto, &params).map_err(decode_error)?;
        }
        Template::ListEntry => {
            let decoded: pb::listentry::InstanceParam =
                istio_api::json::decode(proto, &params).map_err(decode_error)?;
            fields.push((
                FieldSpec { key: "value".into(), go_path: "Value".into(), expected: None, map_entry: true },
                decoded.value,
            ));
        }
        Template::Quota => {
            let decoded: pb::quota::InstanceParam = istio_api::json::decode(proto, &params).map_err(decode_error)?;
            map_entries("dimensions", "Dimensions", &decoded.dimensions, &mut fields);
        }
        Template::Authorization => {
            let decoded: pb::authorization::InstanceParam =
                istio_api::json::decode(proto, &params).map_err(decode_error)?;
            let subject = decoded.subject.unwrap_or_default();
            scalar("subject.user", "Subject.User", ValueType::String, &subject.user, &mut fields);
            scalar("subject.groups", "Subject.Groups", ValueType::String, &subject.groups, &mut fields);
            map_entries("subject.properties", "Subject.Properties", &subject.properties, &mut fields);
            let action = decoded.action.unwrap_or_default();
            scalar("action.namespace", "Action.Namespace", ValueType::String, &action.namespace, &mut fields);
            scalar("action.service", "Action.Service", ValueType::String, &action.service, &mut fields);
            scalar("action.method", "Action.Method", ValueType::String, &action.method, &mut fields);
            scalar("action.path", "Action.Path", ValueType::String, &action.path, &mut fields);
            map_entries("action.properties", "Action.Properties", &action.properties, &mut fields);
        }
        Template::ApiKey => {
            let decoded: pb::apikey::InstanceParam = istio_api::json::decode(proto, &params).map_err(decode_error)?;
            scalar("api", "Api", ValueType::String, &decoded.api, &mut fields);
            scalar("api_version", "ApiVersion", ValueType::String, &decoded.api_version, &mut fields);
            scalar("api_operation", "ApiOperation", ValueType::String, &decoded.api_operation, &mut fields);
            scalar("api_key", "ApiKey", ValueType::String, &decoded.api_key, &mut fields);
            scalar("timestamp", "Timestamp", ValueType::Timestamp, &decoded.timestamp, &mut fields);
        }
        Template::Metric => {
            let decoded: pb::metric::InstanceParam = istio_api::json::decode(proto, &params).map_err(decode_error)?;
            fields.push((
                FieldSpec { key: "value".into(), go_path: "Value".into(), expected: None, map_entry: false },
                decoded.value,
            ));
            map_entries("dimensions", "Dimensions", &decoded.dimensions, &mut fields);
            monitored_resource(&decoded.monitored_resource_type, &decoded.monitored_resource_dimensions, &mut fields);
        }
        Template::LogEntry => {
            let decoded: pb::logentry::InstanceParam = istio_api::json::decode(proto, &params).map_err(decode_error)?;
            map_entries("variables", "Variables", &decoded.variables, &mut fields);
            scalar("timestamp", "Timestamp", ValueType::Timestamp, &decoded.timestamp, &mut fields);
            scalar("severity", "Severity", ValueType::String, &decoded.severity, &mut fields);
            monitored_resource(&decoded.monitored_resource_type, &decoded.monitored_resource_dimensions, &mut fields);
        }
        Template::TraceSpan => {
            let decoded: pb::tracespan::InstanceParam =
                istio_api::json::decode(proto, &params).map_err(decode_error)?;
            let strings = [
                ("trace_id", "TraceId", &decoded.trace_id),
                ("span_id", "SpanId", &decoded.span_id),
                ("parent_span_id", "ParentSpanId", &decoded.parent_span_id),
                ("span_name", "SpanName", &decoded.span_name),
                ("source_name", "SourceName", &decoded.source_name),
                ("destination_name", "DestinationName", &decoded.destination_name),
                ("api_protocol", "ApiProtocol", &decoded.api_protocol),
            ];
            for (key, go_path, text) in strings {
                scalar(key, go_path, ValueType::String, text, &mut fields);
            }
            scalar("start_time", "StartTime", ValueType::Timestamp, &decoded.start_time, &mut fields);
            scalar("end_time", "EndTime", ValueType::Timestamp, &decoded.end_time, &mut fields);
            map_entries("span_tags", "SpanTags", &decoded.span_tags, &mut fields);
            scalar("http_status_code", "HttpStatusCode", ValueType::Int64, &decoded.http_status_code, &mut fields);
            scalar("client_span", "ClientSpan", ValueType::Bool, &decoded.client_span, &mut fields);
            let rewrite = &decoded.rewrite_client_span_id;
            scalar("rewrite_client_span_id", "RewriteClientSpanId", ValueType::Bool, rewrite, &mut fields);
            scalar("source_ip", "SourceIp", ValueType::IpAddress, &decoded.source_ip, &mut fields);
            scalar("destination_ip", "DestinationIp", ValueType::IpAddress, &decoded.destination_ip, &mut fields);
            let sizes = [
                ("request_size", "RequestSize", &decoded.request_size),
                ("request_total_size", "RequestTotalSize", &decoded.request_total_size),
                ("response_size", "ResponseSize", &decoded.response_size),
                ("response_total_size", "ResponseTotalSize", &decoded.response_total_size),
            ];
            for (key, go_path, text) in sizes {
                scalar(key, go_path, ValueType::Int64, text, &mut fields);
            }
        }
        Template::Kubernetes => {
            let decoded: pb::adapter::template::kubernetes::InstanceParam =
                istio_api::json::decode(proto, &params).map_err(decode_error)?;
            scalar("source_uid", "SourceUid", ValueType::String, &decoded.source_uid, &mut fields);
            scalar("source_ip", "SourceIp", ValueType::IpAddress, &decoded.source_ip, &mut fields);
            scalar("destination_uid", "DestinationUid", ValueType::String, &decoded.destination_uid, &mut fields);
            scalar("destination_ip", "DestinationIp", ValueType::IpAddress, &decoded.destination_ip, &mut fields);
            scalar("destination_port", "DestinationPort", ValueType::Int64, &decoded.destination_port, &mut fields);
            let mut sorted: Vec<_> = decoded.attribute_bindings.into_iter().collect();
            sorted.sort();
            bindings = sorted;
        }
    }
    // Empty expressions leave their field unset.
    fields.retain(|(_, text)| !text.trim().is_empty());
    Ok((fields, bindings))
}

/// The attribute types for a `kubernetes` instance's bindings: its outputs, then the manifests.
struct WithOutputs<'t> {
    manifests: &'t dyn AttributeTypes,
}

impl AttributeTypes for WithOutputs<'_> {
    fn attribute_type(&self, name: &str) -> Option<ValueType> {
        name.strip_prefix(KUBERNETES_OUTPUT_PREFIX)
            .and_then(|field| KUBERNETES_OUTPUTS.iter().find(|(output, _)| *output == field))
            .map(|(_, value_type)| *value_type)
            .or_else(|| self.manifests.attribute_type(name))
    }
}

impl InstanceBuilder {
    /// Type-checks an instance's params (the instance's `params`, or a legacy kind's spec).
    pub fn new(
        name: &str,
        template: Template,
        params: &Json,
        bindings: &Json,
        types: &dyn AttributeTypes,
    ) -> Result<InstanceBuilder, InstanceError> {
        let (expressions, mut binding_texts) = field_expressions(template, params)?;
        if let Some(extra) = bindings.as_object() {
            for (attribute, text) in extra {
                binding_texts.push((attribute.clone(), text.as_str().unwrap_or_default().to_string()));
            }
        }
        let mut fields = Vec::with_capacity(expressions.len());
        for (spec, text) in expressions {
            let expression = Compiled::new(&text, types).map_err(|cause| {
                if spec.map_entry {
                    InstanceError::MapEntry { field: spec.go_path.clone(), cause }
                } else {
                    InstanceError::Field { field: spec.go_path.clone(), cause }
                }
            })?;
            if let Some(expected) = spec.expected {
                if expression.result_type() != expected {
                    return Err(InstanceError::FieldType {
                        field: spec.go_path.clone(),
                        actual: expression.result_type().as_str_name(),
                        expected: expected.as_str_name(),
                    });
                }
            }
            fields.push(Field { spec, expression: Arc::new(expression) });
        }
        let mut compiled_bindings = Vec::new();
        if template == Template::Kubernetes {
            let with_outputs = WithOutputs { manifests: types };
            for (attribute, text) in binding_texts {
                let rewritten = text.replace("$out.", KUBERNETES_OUTPUT_PREFIX);
                let expression = Compiled::new(&rewritten, &with_outputs).map_err(|cause| InstanceError::Binding {
                    expression: text.clone(),
                    attribute: attribute.clone(),
                    cause,
                })?;
                let Some(attribute_type) = types.attribute_type(&attribute) else {
                    return Err(InstanceError::BindingAttribute(attribute));
                };
                if attribute_type != expression.result_type() {
                    return Err(InstanceError::BindingType {
                        attribute_type: attribute_type.as_str_name(),
                        attribute,
                        expression_type: expression.result_type().as_str_name(),
                        expression: text,
                    });
                }
                compiled_bindings.push((attribute, Arc::new(expression)));
            }
        }
        Ok(InstanceBuilder { name: name.into(), template, fields, bindings: compiled_bindings })
    }

    /// Builds the instance for one request.
    pub fn build(&self, bag: &dyn Bag, tracker: &mut dyn Tracker) -> Result<Instance, String> {
        let mut values = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let value = field
                .expression
                .evaluate(bag, tracker)
                .map_err(|error| format!("evaluation failed at [{}]'{}': '{error}'", self.name, field.spec.go_path))?;
            values.push((field.spec.key.clone(), value.into_owned()));
        }
        // Collected at once, the map is built in one pass rather than by searching per insert.
        Ok(Instance { name: self.name.clone(), template: self.template, fields: BTreeMap::from_iter(values) })
    }

    /// The short name quotas are asked for by (`requestcountquota` of
    /// `requestcountquota.instance.istio-system`).
    pub fn short_name(&self) -> &str {
        if self.name.matches('.').count() == 2 {
            self.name.split('.').next().unwrap_or(&self.name)
        } else {
            &self.name
        }
    }
}

/// One request's instance: what a handler gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Shared with the builder: every request's instance carries the same name.
    pub name: Arc<str>,
    pub template: Template,
    /// Field values by key (`value`, `dimensions.source`, `subject.user`); unset fields are absent.
    pub fields: BTreeMap<Arc<str>, OwnedValue>,
}

impl Instance {
    pub fn field(&self, key: &str) -> Option<&OwnedValue> {
        self.fields.get(key)
    }

    /// The entries of a map field (`dimensions`), by entry name.
    pub fn map_field(&self, key: &str) -> BTreeMap<&str, &OwnedValue> {
        self.map_entries(key).collect()
    }

    /// The entries of a map field in name order, without collecting them.
    pub fn map_entries<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a str, &'a OwnedValue)> + 'a {
        let prefix = format!("{key}.");
        self.fields
            .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
            .map_while(move |(name, value)| name.strip_prefix(prefix.as_str()).map(|entry| (entry, value)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use istio_attribute::{MapBag, NoTracking, Value};
    use serde_json::json;

    use super::*;

    fn types() -> HashMap<&'static str, ValueType> {
        HashMap::from([
            ("request.headers", ValueType::StringMap),
            ("destination.labels", ValueType::StringMap),
            ("destination.service.name", ValueType::String),
            ("source.ip", ValueType::IpAddress),
            ("source.uid", ValueType::String),
            ("destination.port", ValueType::Int64),
            ("source.labels", ValueType::StringMap),
            ("source.name", ValueType::String),
        ])
    }

    #[test]
    fn quota_dimensions_evaluate_per_request() {
        let params = json!({"dimensions": {
            "source": "request.headers[\"x-forwarded-for\"] | \"unknown\"",
            "destination": "destination.labels[\"app\"] | destination.service.name | \"unknown\"",
        }});
        let builder = InstanceBuilder::new(
            "requestcountquota.instance.istio-system",
            Template::Quota,
            &params,
            &Json::Null,
            &types(),
        )
        .expect("compiles");
        assert_eq!(builder.short_name(), "requestcountquota");
        let bag = MapBag::new()
            .with("request.headers", Value::StringMap(Default::default()))
            .with("destination.service.name", Value::String("productpage".into()));
        let instance = builder.build(&bag, &mut NoTracking).expect("builds");
        let dimensions = instance.map_field("dimensions");
        assert_eq!(dimensions["source"], &Value::String("unknown".into()));
        assert_eq!(dimensions["destination"], &Value::String("productpage".into()));
    }

    #[test]
    fn field_errors_name_the_field_as_1_4_did() {
        let error =
            InstanceBuilder::new("x", Template::ListEntry, &json!({"value": "nosuch.attr"}), &Json::Null, &types())
                .expect_err("unknown attribute");
        assert_eq!(error.to_string(), "failed to evaluate expression for field 'Value'; unknown attribute nosuch.attr");
        let error = InstanceBuilder::new(
            "x",
            Template::Authorization,
            &json!({"subject": {"user": "destination.port"}}),
            &Json::Null,
            &types(),
        )
        .expect_err("wrong type");
        assert_eq!(
            error.to_string(),
            "error type checking for field 'Subject.User': Evaluated expression type INT64 want STRING"
        );
        let error = InstanceBuilder::new(
            "x",
            Template::ListEntry,
            &json!({"value": "a", "extra_field": 1}),
            &Json::Null,
            &types(),
        )
        .expect_err("unknown field");
        assert!(error.to_string().contains("extra_field"), "{error}");
        let builder = InstanceBuilder::new(
            "appversion.instance.default",
            Template::ListEntry,
            &json!({"value": "source.labels[\"version\"]"}),
            &Json::Null,
            &types(),
        )
        .expect("compiles");
        assert_eq!(
            builder.build(&MapBag::new(), &mut NoTracking).expect_err("absent map"),
            "evaluation failed at [appversion.instance.default]'Value': 'lookup failed: 'source.labels''"
        );
    }

    #[test]
    fn kubernetes_bindings_read_outputs_and_must_match_types() {
        let params = json!({"source_uid": "source.uid | \"\"", "source_ip": "source.ip | ip(\"0.0.0.0\")", "destination_port": "destination.port | 0"});
        let bindings = json!({"source.name": "$out.source_pod_name | \"unknown\"", "source.labels": "$out.source_labels | emptyStringMap()"});
        let builder = InstanceBuilder::new(
            "attributes.instance.istio-system",
            Template::Kubernetes,
            &params,
            &bindings,
            &types(),
        )
        .expect("compiles");
        assert_eq!(builder.bindings.len(), 2);
        let wrong = json!({"source.name": "$out.source_pod_ip"});
        let error = InstanceBuilder::new("a", Template::Kubernetes, &params, &wrong, &types()).expect_err("type");
        assert!(error.to_string().contains("does not match type 'IP_ADDRESS'"), "{error}");
    }
}
