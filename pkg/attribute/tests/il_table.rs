//! Runs every case of the expression-language table (1.4.6's `il/testing` table, transcribed into
//! `il_table/cases.rs`) through the type checker and the evaluator: the result type and value,
//! the evaluation error, or the exact compile error, and the attributes each evaluation looked at.

mod il_table {
    pub(crate) mod cases;
    pub(crate) mod types;
}

use std::borrow::Cow;
use std::collections::HashMap;

use il_table::cases::CASES;
use il_table::types::{Case, Conf, Want, V};
use istio_attribute::{Compiled, MapBag, OwnedValue, Referenced, Timestamp, Value, ValueType};

fn manifest(conf: Conf) -> HashMap<&'static str, ValueType> {
    use ValueType::*;
    let entries: &[(&str, ValueType)] = match conf {
        Conf::Default => &[
            ("ai", Int64),
            ("bi", Int64),
            ("ab", Bool),
            ("bb", Bool),
            ("b1", Bool),
            ("b2", Bool),
            ("as", String),
            ("bs", String),
            ("ad", Double),
            ("bd", Double),
            ("ar", StringMap),
            ("br", StringMap),
            ("sm", StringMap),
            ("adur", Duration),
            ("bdur", Duration),
            ("at", Timestamp),
            ("bt", Timestamp),
            ("t1", Timestamp),
            ("t2", Timestamp),
            ("aip", IpAddress),
            ("bip", IpAddress),
            ("adns", DnsName),
            ("bdns", DnsName),
            ("amail", EmailAddress),
            ("bmail", EmailAddress),
            ("auri", Uri),
            ("buri", Uri),
        ],
        Conf::Eval => &[
            ("a", Int64),
            ("x", Int64),
            ("y", Int64),
            ("request.size", Int64),
            ("request.size1", Int64),
            ("request.user", String),
            ("request.user2", String),
            ("request.user3", String),
            ("source.name", String),
            ("source.target", String),
            ("service.name", String),
            ("service.user", String),
            ("origin.name", String),
            ("headername", String),
            ("servicename", String),
            ("request.header", StringMap),
            ("source.labels", StringMap),
            ("request.time", Timestamp),
            ("destination.ip", IpAddress),
        ],
        Conf::Istio06 => &[
            ("origin.ip", IpAddress),
            ("origin.uid", String),
            ("origin.user", String),
            ("request.headers", StringMap),
            ("request.id", String),
            ("request.host", String),
            ("request.method", String),
            ("request.path", String),
            ("request.reason", String),
            ("request.referer", String),
            ("request.scheme", String),
            ("request.size", Int64),
            ("request.time", Timestamp),
            ("request.useragent", String),
            ("response.code", Int64),
            ("response.duration", Duration),
            ("response.headers", StringMap),
            ("response.size", Int64),
            ("response.time", Timestamp),
            ("source.uid", String),
            ("source.user", String),
            ("destination.uid", String),
            ("connection.id", String),
            ("connection.received.bytes", Int64),
            ("connection.received.bytes_total", Int64),
            ("connection.sent.bytes", Int64),
            ("connection.sent.bytes_total", Int64),
            ("connection.duration", Duration),
            ("connection.mtls", Bool),
            ("context.protocol", String),
            ("context.timestamp", Timestamp),
            ("context.time", Timestamp),
            ("api.service", String),
            ("api.version", String),
            ("api.operation", String),
            ("api.protocol", String),
            ("request.auth.principal", String),
            ("request.auth.audiences", String),
            ("request.auth.presenter", String),
            ("request.auth.claims", StringMap),
            ("request.api_key", String),
            ("source.ip", IpAddress),
            ("source.labels", StringMap),
            ("source.name", String),
            ("source.namespace", String),
            ("source.service", String),
            ("source.serviceAccount", String),
            ("destination.ip", IpAddress),
            ("destination.labels", StringMap),
            ("destination.name", String),
            ("destination.namespace", String),
            ("destination.service", String),
            ("destination.serviceAccount", String),
        ],
    };
    entries.iter().copied().collect()
}

/// A table value as a bag value: strings stay strings (the wire has no DNS-name type).
fn value(input: V) -> OwnedValue {
    match input {
        V::S(text) => Value::String(Cow::Borrowed(text)),
        V::I(value) => Value::Int64(value),
        V::D(value) => Value::Double(value),
        V::B(value) => Value::Bool(value),
        V::T(text) => Value::Timestamp(Timestamp::parse_rfc3339(text).expect("table timestamp")),
        V::Dur(nanos) => Value::Duration(nanos),
        V::Bytes(bytes) => Value::Bytes(Cow::Borrowed(bytes)),
        V::M(entries) => Value::StringMap(Cow::Owned(
            entries.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
        )),
    }
}

fn matches_expected(actual: &Value<'_>, expected: V) -> bool {
    match (actual, expected) {
        (actual, V::S(text)) => actual.as_str() == Some(text),
        (Value::Int64(a), V::I(b)) => *a == b,
        (Value::Double(a), V::D(b)) => *a == b,
        (Value::Bool(a), V::B(b)) => *a == b,
        (Value::Duration(a), V::Dur(b)) => *a == b,
        (actual, expected) => actual.same_as(&value(expected)),
    }
}

fn run(case: &Case) -> Result<(), String> {
    let types = manifest(case.conf);
    let compiled = match (Compiled::new(case.expr, &types), case.want) {
        (Err(error), Want::CompileErr(message)) if error.to_string() == message => return Ok(()),
        (Err(error), _) => return Err(format!("compile error {:?}", error.to_string())),
        (Ok(_), Want::CompileErr(message)) => return Err(format!("compiled, but wanted error {message:?}")),
        (Ok(compiled), _) => compiled,
    };
    let mut bag = MapBag::new();
    for (name, input) in case.input {
        bag.set(*name, value(*input));
    }
    let mut referenced = Referenced::default();
    let result = compiled.evaluate(&bag, &mut referenced);
    match (result, case.want) {
        (Ok(actual), Want::Value(type_name, expected)) => {
            if compiled.result_type().as_str_name() != type_name {
                return Err(format!("type {} != {type_name}", compiled.result_type().as_str_name()));
            }
            if !matches_expected(&actual, expected) {
                return Err(format!("value {actual:?} != {expected:?}"));
            }
        }
        (Err(error), Want::EvalErr(prefix)) if error.to_string().starts_with(prefix) => {}
        (result, want) => return Err(format!("got {result:?}, want {want:?}")),
    }
    if let Some(expected) = case.referenced {
        if referenced.list() != expected {
            return Err(format!("referenced {:?} != {expected:?}", referenced.list()));
        }
    }
    Ok(())
}

#[test]
fn every_case_of_the_table() {
    let failures: Vec<String> = CASES
        .iter()
        .enumerate()
        .filter_map(|(index, case)| run(case).err().map(|why| format!("#{index} `{}`: {why}", case.expr)))
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
