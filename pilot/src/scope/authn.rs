//! Which authentication policy applies to a service port, and the mutual-TLS mode it asks for,
//! as Istio 1.4's push context chose (`AuthenticationPolicyForWorkload`):
//! 1. a `Policy` in the service's namespace that targets the service (its short name or host)
//!    and names the port (by number or name) — the first, oldest first;
//! 2. else the first such `Policy` that targets the service without ports;
//! 3. else a `Policy` in the namespace without targets (a port selector never applies there);
//! 4. else the `MeshPolicy` named `default`.
//!
//! A policy's peer methods decide mutual TLS: the first `mtls` method gives its mode (STRICT
//! unless it says PERMISSIVE); a policy without one, or no policy, means no mutual TLS.

use istio_api::pb::istio::authentication::v1alpha1 as authn;

use crate::model::{Named, PushContext, Service, ServicePort};

/// The name a MeshPolicy must have to apply.
pub(crate) const DEFAULT_POLICY_NAME: &str = "default";

/// What inbound traffic on a port must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MtlsMode {
    /// Plaintext only (no mTLS peer method).
    Disable,
    /// Mutual TLS and plaintext, told apart by the `istio` ALPN.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

impl MtlsMode {
    /// 1.4's names, as `/debug/authenticationz` and `authn tls-check` print them.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}

/// The mutual-TLS mode of a policy (none: no mutual TLS).
pub(crate) fn mtls_mode(policy: Option<&authn::Policy>) -> MtlsMode {
    use authn::peer_authentication_method::Params;
    let Some(policy) = policy else { return MtlsMode::Disable };
    for peer in &policy.peers {
        if let Some(Params::Mtls(mtls)) = &peer.params {
            return if mtls.mode == authn::mutual_tls::Mode::Permissive as i32 {
                MtlsMode::Permissive
            } else {
                MtlsMode::Strict
            };
        }
    }
    MtlsMode::Disable
}

/// The policy for a service's port, with its name as 1.4 printed it (`namespace/name`;
/// `/default` for the MeshPolicy); `None` when no policy applies.
pub(crate) fn policy_for<'a>(
    push: &'a PushContext,
    service: &Service,
    port: &ServicePort,
) -> Option<(&'a authn::Policy, String)> {
    let in_namespace = push.authn_policies.iter().filter(|policy| policy.namespace == service.namespace);
    let mut whole_service: Option<&Named<authn::Policy>> = None;
    for policy in in_namespace.clone() {
        for target in policy.spec.targets.iter().filter(|target| targets(push, policy, target, service)) {
            if target.ports.is_empty() {
                whole_service = whole_service.or(Some(policy));
            } else if target.ports.iter().any(|selector| port_matches(selector, port)) {
                return Some((&policy.spec, policy.key()));
            }
        }
    }
    let chosen = whole_service.or_else(|| in_namespace.clone().find(|policy| policy.spec.targets.is_empty()));
    if let Some(policy) = chosen {
        return Some((&policy.spec, policy.key()));
    }
    // A MeshPolicy has no namespace: 1.4 named it `/default`.
    push.mesh_policy.as_ref().map(|policy| (&policy.spec, format!("/{}", policy.name)))
}

/// Whether a target names the service: its short name or host, qualified in the policy's
/// namespace.
fn targets(
    push: &PushContext,
    policy: &Named<authn::Policy>,
    target: &authn::TargetSelector,
    service: &Service,
) -> bool {
    push.qualify(&target.name, &policy.namespace) == service.hostname
}

fn port_matches(selector: &authn::PortSelector, port: &ServicePort) -> bool {
    use authn::port_selector::Port;
    match &selector.port {
        Some(Port::Number(number)) => *number == port.number,
        Some(Port::Name(name)) => *name == port.name,
        None => false,
    }
}

/// Whether an authentication policy of a service the proxy serves binds the request principal
/// to the origin (`principalBinding: USE_ORIGIN`); otherwise it is the peer's, 1.4's default.
pub(crate) fn binds_origin(push: &PushContext, proxy: &crate::node::Proxy) -> bool {
    push.services_at(&proxy.ips).any(|service| {
        service.ports.iter().any(|port| {
            policy_for(push, service, port)
                .is_some_and(|(policy, _)| policy.principal_binding == authn::PrincipalBinding::UseOrigin as i32)
        })
    })
}

/// The mutual-TLS mode inbound traffic to a service's port must use.
pub(crate) fn inbound_mode(push: &PushContext, service: &Service, port: &ServicePort) -> MtlsMode {
    mtls_mode(policy_for(push, service, port).map(|(policy, _)| policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn service(name: &str, namespace: &str) -> Service {
        Service {
            hostname: format!("{name}.{namespace}.svc.cluster.local"),
            namespace: namespace.to_string(),
            address: None,
            ports: vec![http(8000, "http"), http(9000, "http-admin")],
            resolution: crate::model::Resolution::Static,
            mesh_external: false,
            endpoints: Vec::new(),
            service_accounts: Vec::new(),
            export_to: Vec::new(),
        }
    }

    fn http(number: u32, name: &str) -> ServicePort {
        ServicePort { name: name.to_string(), number, protocol: Protocol::Http }
    }

    fn policy(name: &str, namespace: &str, yaml: &str) -> Named<authn::Policy> {
        let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
        let spec =
            istio_api::json::decode(istio_api::kinds::by_name("Policy").expect("kind").proto, &value).expect("policy");
        Named { name: name.to_string(), namespace: namespace.to_string(), spec }
    }

    const STRICT: &str = "peers:\n- mtls: {}\n";
    const PERMISSIVE: &str = "peers:\n- mtls:\n    mode: PERMISSIVE\n";

    /// The precedence the authentication policy task walks through: mesh, then namespace,
    /// then service, then port.
    #[test]
    fn service_and_port_policies_beat_namespace_ones_which_beat_the_mesh_policy() {
        let mut push = PushContext::default();
        push.mesh.domain_suffix = "cluster.local".to_string();
        let httpbin = service("httpbin", "foo");
        let (port, admin) = (&httpbin.ports[0], &httpbin.ports[1]);
        assert_eq!(inbound_mode(&push, &httpbin, port), MtlsMode::Disable, "no policy at all");

        push.mesh_policy = Some(policy(DEFAULT_POLICY_NAME, "", STRICT));
        assert_eq!(inbound_mode(&push, &httpbin, port), MtlsMode::Strict);
        assert_eq!(policy_for(&push, &httpbin, port).expect("policy").1, "/default");

        push.authn_policies.push(policy("default", "foo", PERMISSIVE));
        assert_eq!(inbound_mode(&push, &httpbin, port), MtlsMode::Permissive, "the namespace's policy");
        assert_eq!(inbound_mode(&push, &service("httpbin", "bar"), port), MtlsMode::Strict, "not bar's");

        push.authn_policies.push(policy("httpbin", "foo", "targets:\n- name: httpbin\n"));
        assert_eq!(inbound_mode(&push, &httpbin, port), MtlsMode::Disable, "the service's, without peers");

        push.authn_policies.push(policy(
            "httpbin-admin",
            "foo",
            "targets:\n- name: httpbin.foo.svc.cluster.local\n  ports:\n  - name: http-admin\n  - number: 1234\npeers:\n- mtls: {}\n",
        ));
        assert_eq!(inbound_mode(&push, &httpbin, admin), MtlsMode::Strict, "the port's, by name");
        assert_eq!(inbound_mode(&push, &httpbin, port), MtlsMode::Disable, "other ports keep the service's");
        assert_eq!(policy_for(&push, &httpbin, admin).expect("policy").1, "foo/httpbin-admin");
    }

    #[test]
    fn peer_methods_decide_the_mode() {
        assert_eq!(mtls_mode(None), MtlsMode::Disable);
        assert_eq!(mtls_mode(Some(&policy("p", "foo", STRICT).spec)), MtlsMode::Strict);
        assert_eq!(mtls_mode(Some(&policy("p", "foo", PERMISSIVE).spec)), MtlsMode::Permissive);
        let jwt_only = policy("p", "foo", "peers:\n- jwt:\n    issuer: a\n");
        assert_eq!(mtls_mode(Some(&jwt_only.spec)), MtlsMode::Disable);
        let origins_only = policy("p", "foo", "origins:\n- jwt:\n    issuer: a\n");
        assert_eq!(mtls_mode(Some(&origins_only.spec)), MtlsMode::Disable);
    }
}
