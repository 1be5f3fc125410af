//! Mixer as a real process: `mixs server --configStoreURL fs://DIR` with 1.4's default config and
//! policy samples, driven by `istioctl x mixer check|report` (1.4's mixc) and by raw gRPC
//! messages built from 1.4's protos: denials with referenced attributes, a rate limit, reports,
//! a bad config edit that leaves the last good table serving, bad wire input answered with
//! clear errors, and the dispatch metrics.

use std::time::Duration;

use e2e::{http_get, run, until, Process};
use istio_api::pb::istio::mixer::v1 as mixer;

const DENY_RATINGS_FROM_REVIEWS_V3: &str = "destination.labels=app:ratings,source.labels=app:reviews;version:v3";

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A pod for kubernetesenv to find, in the same directory (the store Mixer reads pods from).
fn pod(name: &str, app: &str, version: &str, address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: {app}, version: {version}}}\nspec:\n  serviceAccountName: bookinfo-{app}\n  containers: [{{name: {app}, ports: [{{containerPort: 9080}}]}}]\nstatus:\n  podIP: {address}\n"
    )
}

struct Mixer {
    process: Process,
    api: String,
    monitoring: String,
    _dir: tempfile::TempDir,
}

fn start_mixer(files: &[(&str, String)]) -> Mixer {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write config");
    }
    let store = format!("fs://{}", dir.path().display());
    let pods = dir.path().display().to_string();
    let process = Process::start(
        "mixs",
        &[
            "server",
            "--configStoreURL",
            &store,
            "--podStore",
            &pods,
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--monitoringPort",
            "0",
        ],
    );
    let banner = process
        .next_line(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("mixs did not start:\n{}", process.stderr()));
    let address = |label: &str| {
        banner
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
            .trim()
            .to_string()
    };
    let (api, monitoring) = (address("API on "), address("monitoring on "));
    Mixer { process, api, monitoring, _dir: dir }
}

fn mixc(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = run("istioctl", &[&["x", "mixer"], args].concat(), None);
    (code, format!("{stdout}{stderr}"))
}

fn check_ratings_call(address: &str) -> String {
    mixc(&[
        "check",
        "-m",
        address,
        "-s",
        "destination.namespace=default,context.reporter.kind=inbound",
        "--stringmap_attributes",
        DENY_RATINGS_FROM_REVIEWS_V3,
    ])
    .1
}

#[test]
fn mixs_serves_checks_quotas_and_reports_from_a_directory() {
    let mixer = start_mixer(&[
        ("config.yaml", workspace_file("install/mixer/config.yaml")),
        ("deny.yaml", workspace_file("samples/bookinfo/policy/mixer-rule-deny-label.yaml")),
        ("ratelimit.yaml", workspace_file("samples/bookinfo/policy/mixer-rule-productpage-ratelimit.yaml")),
        ("pods.yaml", pod("reviews-v3-abc", "reviews", "v3", "10.1.0.9")),
    ]);

    // The denial, with the attributes it depended on (mixc asks with no global words).
    until("the deny rule to apply", Duration::from_secs(10), || {
        let output = check_ratings_call(&mixer.api);
        output.contains("PERMISSION_DENIED").then_some(()).ok_or(output)
    });
    let output = check_ratings_call(&mixer.api);
    assert!(
        output.contains("Check RPC completed successfully. Check status was PERMISSION_DENIED (denyreviewsv3handler.default:Not allowed)"),
        "{output}"
    );
    assert!(output.contains("Valid use count: 1000, valid duration: 5s"), "{output}");
    for line in [
        "source.labels::version EXACT",
        "source.labels::app EXACT",
        "destination.labels::app EXACT",
        "source.uid ABSENCE",
    ] {
        assert!(output.contains(line), "{line} missing:\n{output}");
    }

    // kubernetesenv knows the caller by its uid: labels need not be sent.
    let (_, output) = mixc(&[
        "check",
        "-m",
        &mixer.api,
        "-s",
        "source.uid=kubernetes://reviews-v3-abc.default,destination.namespace=default",
        "--stringmap_attributes",
        "destination.labels=app:ratings",
    ]);
    assert!(output.contains("PERMISSION_DENIED (denyreviewsv3handler.default:Not allowed)"), "{output}");

    // The memquota sample: two per five seconds for one client of productpage.
    let quota_call = |client: &str| {
        mixc(&[
            "check",
            "-m",
            &mixer.api,
            "-s",
            "destination.namespace=default",
            "--stringmap_attributes",
            &format!("destination.labels=app:productpage,request.headers=x-forwarded-for:{client}"),
            "-q",
            "requestcountquota=1",
        ])
        .1
    };
    let granted: Vec<bool> = (0..3)
        .map(|_| {
            let output = quota_call("10.9.9.9");
            assert!(output.contains("Granted Amount"), "{output}");
            output.lines().any(|line| {
                line.trim_start().starts_with("requestcountquota") && line.split_whitespace().nth(1) == Some("1")
            })
        })
        .collect();
    assert_eq!(granted, [true, true, false]);

    let (code, output) = mixc(&[
        "report",
        "-m",
        &mixer.api,
        "-s",
        "destination.namespace=default",
        "-r",
        "3",
        "--report_batch_size",
        "2",
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output.matches("Report RPC returned OK").count(), 2, "{output}");

    // Dispatches are counted per handler with 1.4's labels.
    let (status, metrics) = http_get(&mixer.monitoring, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"mixer_runtime_dispatches_total{adapter="denier",handler="denyreviewsv3handler.default",meshFunction="checknothing",error="false"}"#),
        "{metrics}"
    );
    // The config gauges under 1.4.6's exported names and its dashboard's, the last change's
    // handler figures, destinations per variety, and handlers and instances per request.
    for expected in [
        "mixer_config_rule_config_count 4",
        "mixer_config_rule_configs_total 4",
        "mixer_config_rule_config_errors_total 0",
        "mixer_config_template_configs_total 0",
        "mixer_handler_closed_handlers_total 0",
        r#"mixer_dispatcher_destinations_per_variety_total{variety="TEMPLATE_VARIETY_CHECK"}"#,
        "mixer_dispatcher_destinations_per_request_bucket{le=\"1.0\"}",
        "mixer_dispatcher_instances_per_request_count",
    ] {
        assert!(metrics.contains(expected), "missing {expected:?}:\n{metrics}");
    }
    let new_handlers = metrics
        .lines()
        .find_map(|line| line.strip_prefix("mixer_handler_new_handlers_total "))
        .and_then(|value| value.parse::<u64>().ok());
    assert!(new_handlers.is_some_and(|count| count > 0), "handlers built at the first config: {metrics}");
    drop(mixer.process);
}

#[test]
fn a_bad_edit_is_reported_and_the_last_good_config_keeps_serving() {
    let mixer = start_mixer(&[
        ("config.yaml", workspace_file("install/mixer/config.yaml")),
        ("deny.yaml", workspace_file("samples/bookinfo/policy/mixer-rule-deny-label.yaml")),
    ]);
    until("the deny rule to apply", Duration::from_secs(10), || {
        let output = check_ratings_call(&mixer.api);
        output.contains("PERMISSION_DENIED").then_some(()).ok_or(output)
    });
    let dir = mixer._dir.path();
    // A handler whose params do not decode: refused by validation, named with its field.
    let bad_handler = workspace_file("samples/bookinfo/policy/mixer-rule-deny-label.yaml")
        .replace("message: Not allowed", "message: Not allowed\n      nosuchfield: 1");
    std::fs::write(dir.join("deny.yaml"), bad_handler).expect("write");
    mixer.process.wait_for_stderr("nosuchfield", Duration::from_secs(10));
    // A rule whose match names no attribute: compiled out, with the rule and field named.
    std::fs::write(
        dir.join("broken-rule.yaml"),
        "apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: broken, namespace: default}\nspec:\n  match: nosuch.attribute == \"x\"\n  actions: [{handler: denyreviewsv3handler, instances: [denyreviewsv3request]}]\n",
    )
    .expect("write");
    mixer.process.wait_for_stderr(
        "rule='broken.rule.default'.Match: unknown attribute nosuch.attribute",
        Duration::from_secs(10),
    );
    // The last good handler still denies.
    let output = check_ratings_call(&mixer.api);
    assert!(output.contains("PERMISSION_DENIED (denyreviewsv3handler.default:Not allowed)"), "{output}");
    // The broken rule is counted as a rule error and a match error, under 1.4.6's names.
    until("the rule error in the config gauges", Duration::from_secs(10), || {
        let (_, metrics) = http_get(&mixer.monitoring, "/metrics");
        let has = |line: &str| metrics.lines().any(|candidate| candidate == line);
        (has("mixer_config_rule_config_match_error_total 1") && has("mixer_config_rule_config_errors_total 1"))
            .then_some(())
            .ok_or(metrics)
    });
}

#[test]
fn bad_wire_input_gets_clear_errors_and_mixer_keeps_serving() {
    let mixer = start_mixer(&[
        ("config.yaml", workspace_file("install/mixer/config.yaml")),
        ("deny.yaml", workspace_file("samples/bookinfo/policy/mixer-rule-deny-label.yaml")),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", mixer.api))
            .expect("endpoint")
            .connect()
            .await
            .expect("connects");
        let mut client = mixer::mixer_client::MixerClient::new(channel);

        // A caller that knows more global words than Mixer.
        let request = mixer::CheckRequest { global_word_count: 9999, ..Default::default() };
        let error = client.check(request).await.expect_err("refused");
        assert_eq!(error.code(), tonic::Code::Internal);
        assert_eq!(
            error.message(),
            "inconsistent global dictionary versions used: mixer knows 222 words, caller knows 9999"
        );

        // Indices that name no word: those attributes are left out; the rest is checked.
        let attributes = mixer::CompressedAttributes {
            words: vec!["default".into()],
            strings: [(100_000, 4), (38, -1)].into(),
            ..Default::default()
        };
        let response = client
            .check(mixer::CheckRequest { attributes: Some(attributes), global_word_count: 222, ..Default::default() })
            .await
            .expect("checked")
            .into_inner();
        let precondition = response.precondition.expect("precondition");
        assert_eq!(precondition.status.expect("status").code, 0);
        assert!(precondition.valid_duration.is_some(), "always sent, as 1.4's Mixer did");

        // A delta batch whose second element names no word: that element is refused by name.
        let report = mixer::ReportRequest {
            attributes: vec![
                mixer::CompressedAttributes { int64s: [(1, 80)].into(), ..Default::default() },
                mixer::CompressedAttributes { int64s: [(4_646_464, 1)].into(), ..Default::default() },
            ],
            global_word_count: 222,
            ..Default::default()
        };
        let error = client.report(report).await.expect_err("refused");
        assert_eq!(error.code(), tonic::Code::Unknown);
        assert!(
            error.message().contains("attribute index 4646464 is not defined in the available dictionaries"),
            "{}",
            error.message()
        );

        // A message over the size limit.
        let huge = mixer::CompressedAttributes { words: vec!["x".repeat(2 * 1024 * 1024)], ..Default::default() };
        let error = client
            .check(mixer::CheckRequest { attributes: Some(huge), ..Default::default() })
            .await
            .expect_err("too large");
        assert_eq!(error.code(), tonic::Code::OutOfRange, "{error:?}");
    });
    // Still serving.
    until("the deny rule to apply", Duration::from_secs(10), || {
        let output = check_ratings_call(&mixer.api);
        output.contains("PERMISSION_DENIED").then_some(()).ok_or(output)
    });
}
