//! `istioctl x authz check POD[.NAMESPACE]` (or `-f CONFIG_DUMP.json`): what guards a pod's
//! listeners, read from its proxy's config dump, as 1.4's experimental command printed it:
//! for each filter chain of the listeners on the pod's IP or `0.0.0.0`, the certificate it
//! serves, whether it requires mutual TLS (and the mode: STRICT, or PERMISSIVE when the chain
//! is the `istio` ALPN twin of a plaintext one), the JWT issuers of its `jwt_authn` filter and
//! the RBAC policies of its RBAC filters. `-a` adds the HTTP route, SNI and ALPN columns.
//!
//! Istio 1.4 had a listener per inbound port; here the inbound ports are chains of
//! `virtualInbound`, so a chain that matches a destination port is shown as `NAME:PORT[i]`.

use anyhow::Context;
use serde_json::Value;

use crate::proxy_config::{config_dump, section};

#[derive(Debug, clap::Subcommand)]
pub enum AuthzCommand {
    /// Check Envoy config dump for authorization configuration.
    Check(CheckArgs),
    /// Convert v1alpha1 RBAC policies to v1beta1 AuthorizationPolicies.
    Convert(crate::authz_convert::ConvertArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// `POD[.NAMESPACE]`; a Deployment's name picks its only pod.
    pub pod: Option<String>,
    /// Show additional information (HTTP route, SNI and ALPN).
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Check the Envoy config dump from a file.
    #[arg(short = 'f', long = "file")]
    pub file: Option<std::path::PathBuf>,
}

pub(crate) fn run(command: &AuthzCommand) -> anyhow::Result<i32> {
    let args = match command {
        AuthzCommand::Check(args) => args,
        AuthzCommand::Convert(args) => return crate::authz_convert::run(args),
    };
    let dump: Value = match (&args.file, &args.pod) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a JSON config dump", file.display()))?
        }
        (None, Some(pod)) => config_dump(pod)?,
        (None, None) => anyhow::bail!("check needs a pod (POD[.NAMESPACE]) or --file CONFIG_DUMP"),
    };
    print!("{}", check(&dump, args.all)?);
    Ok(0)
}

/// One filter chain's findings.
#[derive(Debug, Default, PartialEq)]
struct Chain {
    listener: String,
    route: String,
    sni: String,
    alpn: String,
    certificate: String,
    mtls: String,
    jwt: String,
    authz: String,
}

/// The report for a config dump.
pub(crate) fn check(dump: &Value, all: bool) -> anyhow::Result<String> {
    let bootstrap = section(dump, "BootstrapConfigDump").context("the config dump has no bootstrap")?;
    let node_id = bootstrap["bootstrap"]["node"]["id"].as_str().unwrap_or_default();
    let parts: Vec<&str> = node_id.split('~').collect();
    anyhow::ensure!(parts.len() == 4, "invalid node ID({node_id:?}), expecting 4 '~' but found: {}", parts.len());
    let node_ip = parts[1];
    let listeners: Vec<&Value> = section(dump, "ListenersConfigDump")
        .and_then(|section| section["dynamic_listeners"].as_array())
        .map(|entries| {
            entries.iter().map(|entry| &entry["active_state"]["listener"]).filter(|l| !l.is_null()).collect()
        })
        .unwrap_or_default();
    let mut checked: Vec<(std::net::IpAddr, u32, &Value)> = listeners
        .iter()
        .filter_map(|listener| {
            let address = &listener["address"]["socket_address"];
            let ip = address["address"].as_str()?;
            (ip == node_ip || ip == "0.0.0.0").then_some(())?;
            Some((ip.parse().ok()?, address["port_value"].as_u64().unwrap_or(0) as u32, *listener))
        })
        .collect();
    checked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = format!("Checked {}/{} listeners with node IP {node_ip}.\n", checked.len(), listeners.len());
    let chains: Vec<Chain> = checked.iter().flat_map(|(_, _, listener)| chains(listener)).collect();
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = if all {
        (
            vec![
                "LISTENER[FilterChain]",
                "HTTP ROUTE",
                "SNI",
                "ALPN",
                "CERTIFICATE",
                "mTLS (MODE)",
                "JWT (ISSUERS)",
                "AuthZ (RULES)",
            ],
            chains
                .into_iter()
                .map(|c| vec![c.listener, c.route, c.sni, c.alpn, c.certificate, c.mtls, c.jwt, c.authz])
                .collect(),
        )
    } else {
        (
            vec!["LISTENER[FilterChain]", "CERTIFICATE", "mTLS (MODE)", "JWT (ISSUERS)", "AuthZ (RULES)"],
            chains.into_iter().map(|c| vec![c.listener, c.certificate, c.mtls, c.jwt, c.authz]).collect(),
        )
    };
    out.push_str(&crate::table::render(&header, &rows));
    Ok(out)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

/// `yes (N: a, b)` for a non-empty list, `yes (none)` for an empty one, `no (none)` for none.
fn summary(found: Option<Vec<String>>) -> String {
    match found {
        None => "no (none)".to_string(),
        Some(names) if names.is_empty() => "yes (none)".to_string(),
        Some(names) => format!("yes ({}: {})", names.len(), names.join(", ")),
    }
}

/// The certificate of a downstream TLS context: files, and SDS secret names.
fn certificate(context: &Value) -> String {
    let common = &context["common_tls_context"];
    let files: Vec<String> = common["tls_certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cert| cert["certificate_chain"]["filename"].as_str().unwrap_or("<inline>").to_string())
        .collect();
    let sds: Vec<String> = common["tls_certificate_sds_secret_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|secret| secret["name"].as_str().map(str::to_string))
        .collect();
    let mut text = files.join(",");
    if !sds.is_empty() {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&format!("SDS: {}", sds.join(",")));
    }
    if text.is_empty() {
        "none".to_string()
    } else {
        text
    }
}

/// The RBAC policy names of a filter config (enforced rules; 1.4 showed only those).
fn rbac_policies(config: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        config["rules"]["policies"].as_object().map(|policies| policies.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names
}

fn chains(listener: &Value) -> Vec<Chain> {
    let name = listener["name"].as_str().unwrap_or_default();
    let all: Vec<&Value> = listener["filter_chains"].as_array().into_iter().flatten().collect();
    let count = all.len();
    all.iter()
        .enumerate()
        .map(|(index, chain)| {
            let matcher = &chain["filter_chain_match"];
            let port = matcher["destination_port"].as_u64();
            let label = match port {
                Some(port) => format!("{name}:{port}"),
                None => name.to_string(),
            };
            let listener = if count > 1 { format!("{label}[{index}]") } else { label };
            let alpn = strings(&matcher["application_protocols"]);
            let tls = &chain["transport_socket"]["typed_config"];
            let (certificate_text, mtls) = if tls.is_null() {
                ("none".to_string(), "no (none)".to_string())
            } else {
                let required = tls["require_client_certificate"].as_bool().unwrap_or(false);
                let mode = if !required {
                    "none"
                } else if alpn.iter().any(|protocol| protocol == "istio") {
                    "PERMISSIVE"
                } else {
                    "STRICT"
                };
                (certificate(tls), format!("{} ({mode})", if required { "yes" } else { "no" }))
            };
            let mut found = Chain {
                listener,
                sni: strings(&matcher["server_names"]).join(","),
                alpn: alpn.join(","),
                certificate: certificate_text,
                mtls,
                ..Default::default()
            };
            let (mut issuers, mut rules): (Option<Vec<String>>, Option<Vec<String>>) = (None, None);
            for filter in chain["filters"].as_array().into_iter().flatten() {
                let config = &filter["typed_config"];
                match filter["name"].as_str().unwrap_or_default() {
                    "envoy.filters.network.rbac" => rules.get_or_insert_with(Vec::new).extend(rbac_policies(config)),
                    "envoy.filters.network.http_connection_manager" | "envoy.http_connection_manager" => {
                        found.route = config["rds"]["route_config_name"]
                            .as_str()
                            .or_else(|| config["route_config"]["name"].as_str())
                            .unwrap_or_default()
                            .to_string();
                        for http_filter in config["http_filters"].as_array().into_iter().flatten() {
                            let http_config = &http_filter["typed_config"];
                            match http_filter["name"].as_str().unwrap_or_default() {
                                "envoy.filters.http.jwt_authn" => {
                                    let mut names: Vec<String> = http_config["providers"]
                                        .as_object()
                                        .into_iter()
                                        .flat_map(|providers| providers.values())
                                        .filter_map(|provider| provider["issuer"].as_str().map(str::to_string))
                                        .collect();
                                    names.sort();
                                    issuers.get_or_insert_with(Vec::new).extend(names);
                                }
                                "envoy.filters.http.rbac" => {
                                    rules.get_or_insert_with(Vec::new).extend(rbac_policies(http_config))
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            found.jwt = summary(issuers);
            found.authz = summary(rules);
            found
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump() -> Value {
        let rbac = json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"policies": {"ns[default]-policy[productpage-viewer]-rule[0]": {}}}});
        let jwt = json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"origins-0": {"issuer": "testing@secure.istio.io"}}});
        let jwt = json!({"name": "envoy.filters.http.jwt_authn", "typed_config": jwt});
        let rbac = json!({"name": "envoy.filters.http.rbac", "typed_config": rbac});
        let hcm = |filters: Value| {
            json!({"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"route_config": {"name": "inbound|9080|http|productpage.default.svc.cluster.local"},
                             "http_filters": filters}})
        };
        let tls = json!({"typed_config": {"require_client_certificate": true,
            "common_tls_context": {"tls_certificates": [{"certificate_chain": {"filename": "/etc/certs/cert-chain.pem"}}]}}});
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
             "bootstrap": {"node": {"id": "sidecar~10.44.1.5~productpage-v1-x.default~default.svc.cluster.local"}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                {"active_state": {"listener": {"name": "virtualInbound",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                    "filter_chains": [
                        {"filter_chain_match": {"destination_port": 9080, "application_protocols": ["istio"]},
                         "transport_socket": tls, "filters": [hcm(json!([jwt, rbac, {"name": "envoy.filters.http.router"}]))]},
                        {"filter_chain_match": {"destination_port": 9080}, "filters": [hcm(json!([rbac]))]},
                    ]}}},
                {"active_state": {"listener": {"name": "10.96.0.1_443",
                    "address": {"socket_address": {"address": "10.96.0.1", "port_value": 443}}, "filter_chains": [{}]}}},
            ]},
        ]})
    }

    #[test]
    fn chains_show_certificates_mtls_issuers_and_rules() {
        let report = check(&dump(), false).expect("report");
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], "Checked 1/2 listeners with node IP 10.44.1.5.");
        assert!(lines[1].starts_with("LISTENER[FilterChain]      CERTIFICATE"), "{report}");
        assert!(lines[2].starts_with("virtualInbound:9080[0]"), "{report}");
        assert!(lines[2].contains("/etc/certs/cert-chain.pem") && lines[2].contains("yes (PERMISSIVE)"), "{report}");
        assert!(lines[2].contains("yes (1: testing@secure.istio.io)"), "{report}");
        assert!(lines[2].ends_with("yes (1: ns[default]-policy[productpage-viewer]-rule[0])"), "{report}");
        assert!(lines[3].contains("none") && lines[3].contains("no (none)"), "{report}");
        let all = check(&dump(), true).expect("report");
        assert!(all.contains("inbound|9080|http|productpage.default.svc.cluster.local") && all.contains("istio"));
    }

    #[test]
    fn a_dump_without_a_proper_node_id_is_refused() {
        let mut broken = dump();
        broken["configs"][0]["bootstrap"]["node"]["id"] = json!("nonsense");
        let error = check(&broken, false).expect_err("refused").to_string();
        assert!(error.contains("invalid node ID"), "{error}");
    }
}
