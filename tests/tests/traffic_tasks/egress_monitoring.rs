//! Monitoring and Policies for TLS Egress: on top of the wildcard task's gateway with an SNI
//! proxy, Mixer logs each connection the gateway opens to the SNI proxy with the SNI it was asked
//! for (`connection.requested_server_name`), a list checker on that SNI refuses Wikipedia in
//! English, and, over mutual TLS, per-identity lists let `sleep-us` and `sleep-canada` each reach
//! their own languages. With a stock Envoy the gateway is reached by TLS passthrough (the
//! mutual-TLS tab needs istio-proxy's filters), so there is no source identity to police: the
//! identity part is skipped there, with the reason printed.

use super::egress_sni_proxy::{remove_sni_proxy, set_up_sni_proxy, Tab};
use super::egress_wildcard::{expected_titles_of, outside_wikipedia, titles_from};
use super::*;

/// istio-telemetry's `egress-access` entries (the stdio handler's JSON lines), from its log:
/// the local platform runs the control plane as host processes, each logging under `logs/control`.
fn egress_access_entries(mesh: &LocalMesh) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(mesh.root().join("logs/control/istio-telemetry.log")).unwrap_or_default();
    log.lines()
        .filter(|line| line.contains("egress-access"))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// How many configurations istio-policy has installed so far (its log's `mixer config
/// installed` lines).
fn policy_configs_installed(mesh: &LocalMesh) -> usize {
    let log = std::fs::read_to_string(mesh.root().join("logs/control/istio-policy.log")).unwrap_or_default();
    log.lines().filter(|line| line.contains("mixer config installed")).count()
}

/// Starts the gateway's pod afresh, for a new policy to apply at once. The `mixer` filter keeps
/// Mixer's answers for their valid duration (a minute), so a policy reaches connections that
/// were allowed just before only when those answers expire; the task's tip says as much and
/// restarts Mixer instead. A stock Envoy's `ext_authz` asks Mixer every time.
fn restart_gateway(mesh: &LocalMesh, installed_before: usize) {
    if mesh.plane != Plane::Builtin {
        return;
    }
    // First Mixer's policy side has the new rules, or the fresh proxy would cache old answers.
    until("istio-policy installs the new rules", Duration::from_secs(60), || {
        let now = policy_configs_installed(mesh);
        if now > installed_before {
            Ok(())
        } else {
            Err(format!("{now} configurations installed"))
        }
    });
    let app = "istio-egressgateway-with-sni-proxy";
    let old = mesh.pod_name("app", app).expect("the SNI-proxy gateway's pod");
    mesh.delete_in("istio-system", "pods", &old);
    until("the SNI-proxy gateway's new pod is ready", Duration::from_secs(90), || {
        let ready = mesh.pods().iter().any(|pod| {
            pod["metadata"]["labels"]["app"] == app
                && pod["metadata"]["name"] != old.as_str()
                && LocalMesh::pod_is_ready(pod)
        });
        if ready {
            Ok(())
        } else {
            Err(format!("{old} not replaced yet"))
        }
    });
}

/// The page titles `app` gets for en, de, es and fr: those of `allowed`, nothing for the rest.
fn expect_only(mesh: &LocalMesh, app: &str, allowed: &[&str]) -> Result<(), String> {
    let all = ["en", "de", "es", "fr"];
    let seen = titles_from(mesh, app, &all);
    let expected: Vec<String> = all
        .iter()
        .map(
            |language| {
                if allowed.contains(language) {
                    expected_titles_of(&[language]).remove(0)
                } else {
                    String::new()
                }
            },
        )
        .collect();
    expect(seen, expected)
}

pub(crate) fn monitoring_and_policies_for_tls_egress(mesh: &LocalMesh) {
    let _outside = outside_wikipedia(mesh);
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);
    let tab = if mesh.plane == Plane::Builtin { Tab::MutualTls } else { Tab::Passthrough };
    set_up_sni_proxy(mesh, tab);

    // SNI monitoring: each connection the gateway opens is logged with the SNI.
    mesh.apply(&sample("sleep/telemetry/sni-logging.yaml"));
    until("egress-access entries for en and de", Duration::from_secs(90), || {
        let seen = titles_from(mesh, "sleep", &["en", "de"]);
        let entries = egress_access_entries(mesh);
        let logged = |host: &str| {
            entries.iter().any(|entry| {
                entry["requestedServerName"] == host
                    && entry["connectionEvent"] == "open"
                    && entry["source"] == "istio-egressgateway-with-sni-proxy"
                    && (tab == Tab::Passthrough || entry["sourcePrincipal"] == "cluster.local/ns/default/sa/sleep")
            })
        };
        if seen == expected_titles_of(&["en", "de"]) && logged("en.wikipedia.org") && logged("de.wikipedia.org") {
            Ok(())
        } else {
            Err(format!("titles {seen:?}; egress-access entries {entries:?}"))
        }
    });

    // A policy on the SNI: everything but Wikipedia in English.
    let installed = policy_configs_installed(mesh);
    mesh.apply(&sample("sleep/policy/sni-wikipedia.yaml"));
    restart_gateway(mesh, installed);
    until("English refused, Spanish and German allowed", Duration::from_secs(90), || {
        let (code, _, _) = mesh.try_exec(
            "sleep",
            "sleep",
            &["curl", "-sk", "--max-time", "10", "https://en.wikipedia.org/wiki/Main_Page"],
        );
        let others = titles_from(mesh, "sleep", &["es", "de"]);
        if code != 0 && others == expected_titles_of(&["es", "de"]) {
            Ok(())
        } else {
            Err(format!("curl to en exited {code}; es and de titles {others:?}"))
        }
    });
    mesh.delete_file(&sample("sleep/telemetry/sni-logging.yaml"));
    mesh.delete_file(&sample("sleep/policy/sni-wikipedia.yaml"));

    if tab == Tab::MutualTls {
        by_source_identity(mesh);
    } else {
        println!(
            "monitoring and policies for TLS egress: the source-identity part is skipped with a stock Envoy: \
             it needs mutual TLS to the gateway, which needs istio-proxy's forward_downstream_sni"
        );
    }
    remove_sni_proxy(mesh);
    mesh.set_external_hosts("");
}

/// `sleep-us` and `sleep-canada`, the sleep sample under two accounts as the task's `sed` makes
/// them; the gateway logs each one's identity, and each reaches only its lists' languages.
fn by_source_identity(mesh: &LocalMesh) {
    let sleep = std::fs::read_to_string(sample("sleep/sleep.yaml")).expect("the sleep sample");
    for account in ["sleep-us", "sleep-canada"] {
        mesh.apply_yaml(&sleep.replace(": sleep", &format!(": {account}")));
        mesh.wait_ready(account, "default", 1);
    }
    mesh.apply(&sample("sleep/telemetry/sni-logging.yaml"));
    until("sleep-us's identity in the egress-access entries", Duration::from_secs(90), || {
        let seen = titles_from(mesh, "sleep-us", &["en", "de", "es", "fr"]);
        let entries = egress_access_entries(mesh);
        let logged = |host: &str| {
            entries.iter().any(|entry| {
                entry["requestedServerName"] == host
                    && entry["sourcePrincipal"] == "cluster.local/ns/default/sa/sleep-us"
            })
        };
        if seen == expected_titles_of(&["en", "de", "es", "fr"]) && logged("fr.wikipedia.org") {
            Ok(())
        } else {
            Err(format!("titles {seen:?}; egress-access entries {entries:?}"))
        }
    });
    let installed = policy_configs_installed(mesh);
    mesh.apply(&sample("sleep/policy/sni-serviceaccount.yaml"));
    restart_gateway(mesh, installed);
    until("sleep-us reaches en and es only", Duration::from_secs(90), || expect_only(mesh, "sleep-us", &["en", "es"]));
    until("sleep-canada reaches en and fr only", Duration::from_secs(90), || {
        expect_only(mesh, "sleep-canada", &["en", "fr"])
    });
    // The task's cleanup.
    for account in ["sleep-us", "sleep-canada"] {
        for kind in ["services", "deployments", "serviceaccounts"] {
            mesh.delete(kind, account);
        }
    }
    mesh.delete_file(&sample("sleep/telemetry/sni-logging.yaml"));
    mesh.delete_file(&sample("sleep/policy/sni-serviceaccount.yaml"));
}
