//! Evaluating the rule shapes Mixer sees on every request allocates nothing: attribute reads,
//! map lookups, comparisons, `match`, defaults and the boolean operators borrow from the bag and
//! the compiled expression. Counted with dhat's heap profiler as the global allocator.

use std::borrow::Cow;
use std::collections::HashMap;

use istio_attribute::{Compiled, MapBag, NoTracking, Value, ValueType};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[test]
fn common_rule_shapes_evaluate_without_allocating() {
    let types: HashMap<&str, ValueType> = HashMap::from([
        ("destination.labels", ValueType::StringMap),
        ("source.labels", ValueType::StringMap),
        ("request.headers", ValueType::StringMap),
        ("request.useragent", ValueType::String),
        ("context.protocol", ValueType::String),
        ("source.ip", ValueType::IpAddress),
        ("request.size", ValueType::Int64),
        ("destination.service.host", ValueType::String),
    ]);
    let expressions = [
        r#"destination.labels["app"] == "ratings" && source.labels["app"] == "reviews" && source.labels["version"] == "v3""#,
        r#"match(request.headers["cookie"], "session=*") == false"#,
        r#"(context.protocol == "http" || context.protocol == "grpc") && (match((request.useragent | "-"), "kube-probe*") == false)"#,
        r#"source.ip | ip("0.0.0.0")"#,
        r#"request.size | 0"#,
        r#"destination.service.host | "unknown""#,
        r#"request.headers["x-user"].startsWith("jo") || request.size > 1024"#,
        r#"conditional(request.size > 10, destination.service.host, "small")"#,
    ];
    let compiled: Vec<Compiled> =
        expressions.iter().map(|text| Compiled::new(text, &types).expect("compiles")).collect();
    let labels = |pairs: &[(&str, &str)]| -> Value<'static> {
        Value::StringMap(Cow::Owned(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    };
    let bag = MapBag::new()
        .with("destination.labels", labels(&[("app", "ratings")]))
        .with("source.labels", labels(&[("app", "reviews"), ("version", "v3")]))
        .with("request.headers", labels(&[("cookie", "session=abc"), ("x-user", "jason")]))
        .with("request.useragent", Value::String("curl/7".into()))
        .with("context.protocol", Value::String("http".into()))
        .with("source.ip", Value::Bytes(Cow::Owned(vec![10, 0, 0, 1])))
        .with("request.size", Value::Int64(2048))
        .with("destination.service.host", Value::String("ratings.default.svc.cluster.local".into()));

    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let mut results = 0;
    for expression in &compiled {
        if expression.evaluate(&bag, &mut NoTracking).is_ok() {
            results += 1;
        }
    }
    let after = dhat::HeapStats::get();
    assert_eq!(results, compiled.len());
    assert_eq!(after.total_blocks - before.total_blocks, 0, "evaluation allocated");
}
