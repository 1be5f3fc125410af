//! What `/debug/authenticationz` reports and `istioctl authn tls-check` prints, as Istio 1.4
//! computed it: for every port of every mesh service (and every subset of the DestinationRule
//! the asking proxy would use), the authentication policy that applies on the server side, the
//! TLS mode the client side would use, and whether the two work together (`OK`), cannot
//! (`CONFLICT`), or are left to automatic mutual TLS (`AUTO`).

use istio_api::pb::istio::networking::v1alpha3 as net;
use serde::Serialize;

use crate::model::{Named, PushContext, Service, ServicePort};
use crate::scope::authn::{mtls_mode, policy_for, MtlsMode};
use crate::scope::traffic_policy::port_policy;

/// What 1.4 printed where nothing applies.
const NOT_APPLICABLE: &str = "-";

/// One row, with 1.4's JSON field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AuthenticationDebug {
    pub host: String,
    pub port: u32,
    pub authentication_policy_name: String,
    pub destination_rule_name: String,
    pub server_protocol: String,
    pub client_protocol: String,
    #[serde(rename = "TLS_conflict_status")]
    pub tls_conflict_status: String,
}

/// Whether a client's TLS settings suit the server's mode.
pub(crate) fn evaluate_tls_state(auto_mtls: bool, client: Option<&net::TlsSettings>, server: MtlsMode) -> &'static str {
    use net::tls_settings::TlSmode;
    let Some(client) = client else {
        return if auto_mtls { "AUTO" } else { "OK" };
    };
    let mode = TlSmode::try_from(client.mode).unwrap_or(TlSmode::Disable);
    let compatible = matches!(
        (server, mode),
        (MtlsMode::Disable, TlSmode::Disable)
            | (MtlsMode::Strict, TlSmode::IstioMutual)
            | (MtlsMode::Permissive, TlSmode::IstioMutual | TlSmode::Disable)
    );
    if compatible {
        "OK"
    } else {
        "CONFLICT"
    }
}

/// The TLS settings for a port: the rule's (empty subset name) and each subset's.
fn tls_by_subset(rule: Option<&net::DestinationRule>, port: u32) -> Vec<(String, Option<&net::TlsSettings>)> {
    let Some(rule) = rule else { return vec![(String::new(), None)] };
    let mut settings = vec![(String::new(), port_policy(rule.traffic_policy.as_ref(), port).tls)];
    for subset in &rule.subsets {
        settings.push((subset.name.clone(), port_policy(subset.traffic_policy.as_ref(), port).tls));
    }
    settings.sort_by(|a, b| a.0.cmp(&b.0));
    settings
}

/// The rows of one service port, given the policy and DestinationRule that apply to it.
pub(crate) fn analyze(
    auto_mtls: bool,
    host: &str,
    port: u32,
    policy: Option<(&istio_api::pb::istio::authentication::v1alpha1::Policy, String)>,
    rule: Option<&Named<net::DestinationRule>>,
) -> Vec<AuthenticationDebug> {
    let server = mtls_mode(policy.as_ref().map(|(policy, _)| *policy));
    let policy_name = policy.map_or_else(|| NOT_APPLICABLE.to_string(), |(_, name)| name);
    let rule_name = rule.map_or_else(|| NOT_APPLICABLE.to_string(), |rule| rule.key());
    tls_by_subset(rule.map(|rule| &rule.spec), port)
        .into_iter()
        .map(|(subset, tls)| AuthenticationDebug {
            host: if subset.is_empty() { host.to_string() } else { format!("{host}|{subset}") },
            port,
            authentication_policy_name: policy_name.clone(),
            destination_rule_name: rule_name.clone(),
            server_protocol: server.as_str().to_string(),
            client_protocol: tls.map_or_else(
                || NOT_APPLICABLE.to_string(),
                |tls| net::tls_settings::TlSmode::try_from(tls.mode).unwrap_or_default().as_str_name().to_string(),
            ),
            tls_conflict_status: evaluate_tls_state(auto_mtls, tls, server).to_string(),
        })
        .collect()
}

/// Every mesh service port as seen by a proxy in `proxy_namespace`.
pub(crate) fn authenticationz(push: &PushContext, proxy_namespace: &str) -> Vec<AuthenticationDebug> {
    let mut rows = Vec::new();
    for service in push.services.values().filter(|service| !service.mesh_external) {
        for port in &service.ports {
            rows.extend(service_port_rows(push, service, port, proxy_namespace));
        }
    }
    rows
}

fn service_port_rows(
    push: &PushContext,
    service: &Service,
    port: &ServicePort,
    proxy_namespace: &str,
) -> Vec<AuthenticationDebug> {
    let rule = push.destination_rule_for(&service.hostname, proxy_namespace);
    analyze(push.mesh.auto_mtls, &service.hostname, port.number, policy_for(push, service, port), rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_api::pb::istio::authentication::v1alpha1 as authn;
    use net::tls_settings::TlSmode;

    fn tls(mode: TlSmode) -> net::TlsSettings {
        net::TlsSettings { mode: mode as i32, ..Default::default() }
    }

    /// Istio 1.4.6's `TestEvaluateTLSState` table: (client, server, expected, with auto mTLS).
    #[test]
    fn client_and_server_modes_agree_or_conflict_as_istio_said() {
        let cases: [(Option<TlSmode>, MtlsMode, &str, &str); 12] = [
            (None, MtlsMode::Disable, "OK", "AUTO"),
            (None, MtlsMode::Permissive, "OK", "AUTO"),
            (None, MtlsMode::Strict, "OK", "AUTO"),
            (Some(TlSmode::IstioMutual), MtlsMode::Strict, "OK", "OK"),
            (Some(TlSmode::Disable), MtlsMode::Disable, "OK", "OK"),
            (Some(TlSmode::Disable), MtlsMode::Permissive, "OK", "OK"),
            (Some(TlSmode::IstioMutual), MtlsMode::Permissive, "OK", "OK"),
            (Some(TlSmode::Disable), MtlsMode::Strict, "CONFLICT", "CONFLICT"),
            (Some(TlSmode::Mutual), MtlsMode::Strict, "CONFLICT", "CONFLICT"),
            (Some(TlSmode::Simple), MtlsMode::Strict, "CONFLICT", "CONFLICT"),
            (Some(TlSmode::Simple), MtlsMode::Permissive, "CONFLICT", "CONFLICT"),
            (Some(TlSmode::Mutual), MtlsMode::Permissive, "CONFLICT", "CONFLICT"),
        ];
        for (client, server, expected, with_auto) in cases {
            let client = client.map(tls);
            assert_eq!(evaluate_tls_state(false, client.as_ref(), server), expected, "{client:?} {server:?}");
            assert_eq!(evaluate_tls_state(true, client.as_ref(), server), with_auto, "{client:?} {server:?} auto");
        }
    }

    fn strict() -> authn::Policy {
        authn::Policy {
            peers: vec![authn::PeerAuthenticationMethod {
                params: Some(authn::peer_authentication_method::Params::Mtls(authn::MutualTls::default())),
            }],
            ..Default::default()
        }
    }

    fn rule(policy: net::TrafficPolicy, subsets: Vec<net::Subset>) -> Named<net::DestinationRule> {
        Named {
            name: "some-rule".to_string(),
            namespace: "default".to_string(),
            spec: net::DestinationRule { traffic_policy: Some(policy), subsets, ..Default::default() },
        }
    }

    fn row(policy: &str, rule: &str, server: &str, client: &str, status: &str) -> AuthenticationDebug {
        AuthenticationDebug {
            host: "foo.default".to_string(),
            port: 8080,
            authentication_policy_name: policy.to_string(),
            destination_rule_name: rule.to_string(),
            server_protocol: server.to_string(),
            client_protocol: client.to_string(),
            tls_conflict_status: status.to_string(),
        }
    }

    /// Istio 1.4.6's `TestAnalyzeMTLSSettings` table.
    #[test]
    fn rows_name_the_policy_the_rule_and_each_subset() {
        let policy = strict();
        let named = || Some((&policy, "bar/foo".to_string()));
        assert_eq!(analyze(false, "foo.default", 8080, None, None), [row("-", "-", "DISABLE", "-", "OK")]);
        assert_eq!(analyze(true, "foo.default", 8080, None, None), [row("-", "-", "DISABLE", "-", "AUTO")]);
        assert_eq!(analyze(false, "foo.default", 8080, named(), None), [row("bar/foo", "-", "STRICT", "-", "OK")]);

        let without_tls = rule(net::TrafficPolicy::default(), vec![]);
        assert_eq!(
            analyze(false, "foo.default", 8080, named(), Some(&without_tls)),
            [row("bar/foo", "default/some-rule", "STRICT", "-", "OK")]
        );
        let disabled = net::TrafficPolicy { tls: Some(tls(TlSmode::Disable)), ..Default::default() };
        assert_eq!(
            analyze(false, "foo.default", 8080, named(), Some(&rule(disabled.clone(), vec![]))),
            [row("bar/foo", "default/some-rule", "STRICT", "DISABLE", "CONFLICT")]
        );
        let port_level = net::TrafficPolicy {
            port_level_settings: vec![net::traffic_policy::PortTrafficPolicy {
                port: Some(net::PortSelector { number: 8080 }),
                tls: Some(tls(TlSmode::IstioMutual)),
                ..Default::default()
            }],
            ..disabled.clone()
        };
        assert_eq!(
            analyze(false, "foo.default", 8080, named(), Some(&rule(port_level.clone(), vec![]))),
            [row("bar/foo", "default/some-rule", "STRICT", "ISTIO_MUTUAL", "OK")]
        );
        let simple_on_the_port = net::TrafficPolicy {
            port_level_settings: vec![net::traffic_policy::PortTrafficPolicy {
                port: Some(net::PortSelector { number: 8080 }),
                tls: Some(tls(TlSmode::Simple)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let subsets = vec![
            net::Subset { name: "foobar".to_string(), traffic_policy: Some(simple_on_the_port), ..Default::default() },
            net::Subset { name: "foo".to_string(), ..Default::default() },
        ];
        let rows = analyze(false, "foo.default", 8080, named(), Some(&rule(port_level, subsets)));
        let summary: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|row| (row.host.as_str(), row.client_protocol.as_str(), row.tls_conflict_status.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("foo.default", "ISTIO_MUTUAL", "OK"),
                ("foo.default|foo", "-", "OK"),
                ("foo.default|foobar", "SIMPLE", "CONFLICT"),
            ]
        );
    }
}
