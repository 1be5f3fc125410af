//! What a proxy's check-cache hit costs: the cache key of a request's attributes under the
//! shape of referenced attributes Mixer answered with (the kubernetesenv inputs, the identity
//! namespace and a rule on three labels, as the deny-label sample gives), and the evaluation of
//! a rule's match. Nanoseconds per operation, best of five runs of a million each.
//!
//!   cargo bench -p istio-attribute --bench cache_key

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use istio_attribute::wire::referenced::{Recorder, Shape};
use istio_attribute::{Compiled, Lookup, MapBag, NoTracking, Tracker, Value, ValueType};

fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

/// Nanoseconds per call of `operation`, best of five runs.
fn time(runs: u32, mut operation: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..runs {
                operation();
            }
            started.elapsed().as_nanos() as f64 / f64::from(runs)
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let request = MapBag::new()
        .with("context.reporter.kind", text("inbound"))
        .with("destination.namespace", text("default"))
        .with("destination.uid", text("kubernetes://ratings-v1-abc.default"))
        .with("destination.port", Value::Int64(9080))
        .with("source.ip", Value::Bytes(Cow::Owned(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 44, 1, 7])))
        .with("destination.labels", labels(&[("app", "ratings"), ("version", "v1")]))
        .with("source.labels", labels(&[("app", "reviews"), ("version", "v3")]))
        .with("request.headers", labels(&[(":path", "/ratings/0"), ("user-agent", "curl/8"), ("x-request-id", "abc")]))
        .with("request.path", text("/ratings/0"));
    let mut recorder = Recorder::default();
    for name in ["context.reporter.kind", "destination.namespace", "destination.uid", "destination.port", "source.ip"] {
        recorder.attribute(name, Lookup::Found);
    }
    for name in ["source.uid", "context.protocol"] {
        recorder.attribute(name, Lookup::Absent);
    }
    recorder.map_key("destination.labels", "app", true);
    recorder.map_key("source.labels", "app", true);
    recorder.map_key("source.labels", "version", true);
    let shape = Shape::from_proto(&recorder.to_proto(222), &request).expect("shape");
    let key = time(1_000_000, || {
        black_box(shape.signature(black_box(&request), ""));
    });
    let types: HashMap<&str, ValueType> =
        HashMap::from([("destination.labels", ValueType::StringMap), ("source.labels", ValueType::StringMap)]);
    let rule = Compiled::new(
        r#"destination.labels["app"] == "ratings" && source.labels["app"]=="reviews" && source.labels["version"] == "v3""#,
        &types,
    )
    .expect("compiles");
    let evaluation = time(1_000_000, || {
        black_box(rule.evaluate_bool(black_box(&request), &mut NoTracking).ok());
    });
    println!("check-cache key of a request (10 referenced attributes): {key:.0} ns");
    println!("deny-label rule match evaluated: {evaluation:.0} ns");
}
