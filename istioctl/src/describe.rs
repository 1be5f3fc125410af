//! `istioctl x describe pod POD` and `x describe service SVC`: what affects a pod, in words, as
//! 1.4's did. For the pod: its ports, readiness, mesh membership and labels; for each Service
//! that selects it: the ports and their protocols, the DestinationRule the pod's proxy uses
//! (which subsets match the pod, the traffic policy), the effective mutual TLS (from Pilot's
//! `/debug/authenticationz`), the VirtualService whose routes reach it (weights, matches, and
//! warnings such as "No destinations match pod subsets"), and the RBAC policies guarding its
//! inbound port; then how the ingress gateway exposes it. The DestinationRule and
//! VirtualService are found as 1.4 found them, from the `istio.config` breadcrumbs Pilot puts on
//! the proxy's clusters and routes. It works on this host's mesh and on a cluster.
//!
//! `--why` goes beyond 1.4: it reads the pod's proxy stats and its access log and says in words
//! why recent requests failed (see `describe/why.rs`).

mod access;
mod render;
mod why;

use anyhow::bail;
use istio_config::object::Object;
use serde_json::Value;

pub(crate) use access::Access;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[command(subcommand)]
    pub what: DescribeWhat,
}

#[derive(Debug, clap::Subcommand)]
pub enum DescribeWhat {
    /// Describe a pod and the Istio configuration that affects it.
    Pod(TargetArgs),
    /// Describe a service, its pods and the Istio configuration that affects them.
    #[command(alias = "svc")]
    Service(TargetArgs),
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// `NAME[.NAMESPACE]`; for a pod, a Deployment's name picks its only pod.
    pub name: String,
    /// The namespace (names in it are printed without it).
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Suppress warnings for unmeshed pods.
    #[arg(long = "ignoreUnmeshed")]
    pub ignore_unmeshed: bool,
    /// Also say why the pod's recent requests failed, from its proxy's stats and access log.
    #[arg(long = "why")]
    pub why: bool,
    #[command(flatten)]
    pub kube: crate::kube::KubeArgs,
}

pub(crate) fn run(args: &DescribeArgs) -> anyhow::Result<i32> {
    let (target, pod_wanted) = match &args.what {
        DescribeWhat::Pod(target) => (target, true),
        DescribeWhat::Service(target) => (target, false),
    };
    let (name, namespace) = match target.name.split_once('.') {
        Some((name, namespace)) => (name.to_string(), namespace.to_string()),
        None => (target.name.clone(), target.namespace.clone()),
    };
    let access = Access::new(&target.kube)?;
    let mut out = String::new();
    let context = render::Context { namespace: target.namespace.clone(), ignore_unmeshed: target.ignore_unmeshed };
    let pods_described = if pod_wanted {
        let pod = access.pod(&name, &namespace)?;
        describe_pod(&access, &context, &pod, &mut out)?;
        vec![pod]
    } else {
        describe_service(&access, &context, &name, &namespace, &mut out)?
    };
    print!("{out}");
    if target.why {
        for pod in &pods_described {
            print!("{}", why::explain(&access, pod)?);
        }
    }
    Ok(0)
}

/// A Service's pod selector.
fn selector(service: &Object) -> std::collections::BTreeMap<String, String> {
    istio_local::objects::string_map(service.spec().get("selector"))
}

fn selects(selector: &std::collections::BTreeMap<String, String>, pod: &Object) -> bool {
    istio_local::objects::selects(selector, &istio_local::objects::labels(pod))
}

fn describe_pod(access: &Access, context: &render::Context, pod: &Object, out: &mut String) -> anyhow::Result<()> {
    render::pod(out, context, pod);
    let services: Vec<Object> = access
        .list("", "v1", "Service", "services", pod.namespace())?
        .into_iter()
        .filter(|service| selects(&selector(service), pod))
        .collect();
    if services.is_empty() && !context.ignore_unmeshed {
        out.push_str(&format!(
            "Warning: No Kubernetes Services select pod {} (see https://istio.io/docs/setup/kubernetes/additional-setup/requirements/ )\n",
            context.kname(pod)
        ));
    }
    out.push_str("--------------------\n");
    let pods_labels = vec![pod.clone()];
    describe_pod_services(access, context, pod, &services, &pods_labels, out)?;
    ingress_info(access, context, &services, &pods_labels, out)
}

fn describe_service(
    access: &Access,
    context: &render::Context,
    name: &str,
    namespace: &str,
    out: &mut String,
) -> anyhow::Result<Vec<Object>> {
    let services = access.list("", "v1", "Service", "services", namespace)?;
    let Some(service) = services.into_iter().find(|service| service.name() == name) else {
        bail!("services \"{name}\" not found in namespace {namespace}");
    };
    let selector = selector(&service);
    let mut selected = 0;
    let mut meshed = Vec::new();
    for pod in access.list("", "v1", "Pod", "pods", namespace)?.into_iter().filter(|pod| selects(&selector, pod)) {
        selected += 1;
        let phase = pod.body.get("status").and_then(|s| s["phase"].as_str()).unwrap_or_default().to_string();
        if phase != "Running" {
            out.push_str(&format!("   Pod is not Running ({phase})\n"));
            continue;
        }
        match render::container_ready(&pod, crate::describe::render::PROXY_CONTAINER) {
            Some(true) => meshed.push(pod),
            Some(false) => out.push_str(&format!(
                "WARNING: Pod {} Container {} NOT READY\n",
                context.kname(&pod),
                render::PROXY_CONTAINER
            )),
            None => out.push_str(&format!(
                "Pod {}: no container \"{}\" in pod\n",
                context.kname(&pod),
                render::PROXY_CONTAINER
            )),
        }
    }
    if meshed.is_empty() {
        if selected == 0 {
            out.push_str(&format!("Service {:?} has no pods.\n", context.kname(&service)));
        } else {
            out.push_str(&format!(
                "Service {:?} has no Istio pods.  ({selected} pods in service).\nUse `istioctl experimental add-to-mesh`, `istioctl kube-inject`, or redeploy with Istio automatic sidecar injection.\n",
                context.kname(&service)
            ));
        }
        return Ok(meshed);
    }
    let services = vec![service];
    describe_pod_services(access, context, &meshed[0], &services, &meshed, out)?;
    ingress_info(access, context, &services, &meshed, out)?;
    Ok(vec![meshed[0].clone()])
}

/// The Istio object a breadcrumb names, if it still exists.
fn config_object(access: &Access, kind: &str, breadcrumb: Option<(String, String)>) -> Option<Object> {
    let (name, namespace) = breadcrumb?;
    let (object_kind, plural) = match kind {
        "destination-rule" => ("DestinationRule", "destinationrules"),
        _ => ("VirtualService", "virtualservices"),
    };
    let objects = access.list("networking.istio.io", "v1alpha3", object_kind, plural, &namespace).ok()?;
    objects.into_iter().find(|object| object.name() == name)
}

fn describe_pod_services(
    access: &Access,
    context: &render::Context,
    pod: &Object,
    services: &[Object],
    pods_labels: &[Object],
    out: &mut String,
) -> anyhow::Result<()> {
    let meshed = render::is_meshed(pod);
    let authn = if meshed {
        match access.authenticationz(pod) {
            Ok(rows) => Some(rows),
            Err(error) => {
                out.push_str(&format!("{error:#}\n"));
                None
            }
        }
    } else {
        None
    };
    let dump = match access.config_dump(pod) {
        Ok(dump) => dump,
        Err(_) if context.ignore_unmeshed => return Ok(()),
        Err(error) => bail!("failed to execute command on sidecar: {error:#}"),
    };
    for (row, service) in services.iter().enumerate() {
        if row != 0 {
            out.push_str("--------------------\n");
        }
        render::service(out, context, service, pod);
        let ports: Vec<Value> = service.spec()["ports"].as_array().cloned().unwrap_or_default();
        let prefix = |port: i64| if ports.len() > 1 { format!("{port} ") } else { String::new() };
        for port in &ports {
            let number = port["port"].as_i64().unwrap_or(0);
            let rule =
                config_object(access, "destination-rule", render::destination_rule_breadcrumb(&dump, service, number));
            let (matching, nonmatching) =
                rule.as_ref().map(|rule| render::subsets(rule, pods_labels)).unwrap_or_default();
            if let Some(rule) = &rule {
                out.push_str(&prefix(number));
                render::destination_rule(out, context, rule, pods_labels);
            }
            out.push_str(&prefix(number));
            render::authn(out, context, pod, authn.as_deref(), service, number);
            let virtual_service =
                config_object(access, "virtual-service", render::virtual_service_breadcrumb(&dump, service, number));
            if let Some(virtual_service) = &virtual_service {
                out.push_str(&prefix(number));
                render::virtual_service(out, context, virtual_service, service, &matching, &nonmatching, rule.as_ref());
            }
            let policies = render::rbac_policies(&dump, number);
            if !policies.is_empty() {
                out.push_str(&prefix(number));
                out.push_str(&format!("RBAC policies: {}\n", policies.join(", ")));
            }
        }
    }
    Ok(())
}

/// How the ingress gateway exposes the services: its address and the VirtualService its routes
/// to them come from.
fn ingress_info(
    access: &Access,
    context: &render::Context,
    services: &[Object],
    pods_labels: &[Object],
    out: &mut String,
) -> anyhow::Result<()> {
    let system = access.istio_namespace();
    let gateways: Vec<Object> = access
        .list("", "v1", "Pod", "pods", &system)?
        .into_iter()
        .filter(|pod| {
            pod.metadata.labels.as_ref().and_then(|l| l.get("istio")).map(String::as_str) == Some("ingressgateway")
        })
        .filter(|pod| pod.body.get("status").and_then(|s| s["phase"].as_str()) == Some("Running"))
        .collect();
    let Some(gateway) = gateways.first() else {
        out.push_str("Skipping Gateway information (no ingress gateway pods)\n");
        return Ok(());
    };
    let gateway_services: Vec<Object> = access
        .list("", "v1", "Service", "services", &system)?
        .into_iter()
        .filter(|s| {
            s.metadata.labels.as_ref().and_then(|l| l.get("istio")).map(String::as_str) == Some("ingressgateway")
        })
        .collect();
    let Some(gateway_service) = gateway_services.first() else { bail!("no ingress gateway service") };
    let dump = access
        .config_dump(gateway)
        .map_err(|error| anyhow::anyhow!("failed to execute command on ingress gateway sidecar: {error:#}"))?;
    let address = render::ingress_address(gateway_service, gateway);
    for (row, service) in services.iter().enumerate() {
        for port in service.spec()["ports"].as_array().into_iter().flatten() {
            let number = port["port"].as_i64().unwrap_or(0);
            let rule =
                config_object(access, "destination-rule", render::destination_rule_breadcrumb(&dump, service, number));
            let (matching, nonmatching) =
                rule.as_ref().map(|rule| render::subsets(rule, pods_labels)).unwrap_or_default();
            let Some(virtual_service) =
                config_object(access, "virtual-service", render::virtual_service_breadcrumb(&dump, service, number))
            else {
                continue;
            };
            out.push_str(if row == 0 { "\n" } else { "--------------------\n" });
            render::ingress_service(out, gateway_service, gateway, &address);
            render::virtual_service(out, context, &virtual_service, service, &matching, &nonmatching, rule.as_ref());
        }
    }
    Ok(())
}
