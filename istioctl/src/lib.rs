//! istioctl: the command line of istio-rs. Each subcommand lives in its own module; `main.rs`
//! only parses flags and runs the chosen command.

pub(crate) mod analyze;
pub(crate) mod authn;
pub(crate) mod authz;
pub(crate) mod authz_convert;
pub(crate) mod cluster_apply;
pub(crate) mod convert_ingress;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod describe;
pub(crate) mod kube;
pub(crate) mod kube_inject;
pub(crate) mod kube_uninject;
pub(crate) mod local;
pub(crate) mod manifest;
pub(crate) mod mcp;
pub(crate) mod metrics;
pub(crate) mod mixer;
pub(crate) mod proxy_config;
pub(crate) mod proxy_diff;
pub(crate) mod proxy_status;
pub(crate) mod secrets;
pub(crate) mod table;
pub(crate) mod validate;
pub(crate) mod verify_install;
pub(crate) mod version;
pub(crate) mod xds;

use clap::{Parser, Subcommand};

/// Command-line interface of istioctl.
#[derive(Debug, Parser)]
#[command(name = "istioctl", version, about = "Istio control interface (istio-rs)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate Istio config files offline, with the same rules Galley's webhook applies.
    Validate(validate::ValidateArgs),
    /// Install the mesh on this host (the local platform): `--set profile=demo`.
    #[command(alias = "manifest-apply")]
    Install(local::InstallArgs),
    /// Remove the mesh and everything it created from this host.
    Uninstall,
    /// The demo profile and Bookinfo on this host, in one command.
    Demo(demo::DemoArgs),
    /// List or show installation profiles.
    #[command(subcommand)]
    Profile(local::ProfileCommand),
    /// The installation as Kubernetes objects: `manifest generate --set profile=demo`.
    Manifest(manifest::ManifestArgs),
    /// Verify an installation on a cluster (`-f FILE` or `--set …`), or check a cluster before one.
    #[command(name = "verify-install")]
    VerifyInstall(verify_install::VerifyInstallArgs),
    /// Convert Kubernetes Ingresses into Istio VirtualServices, as the mesh serves them.
    #[command(name = "convert-ingress")]
    ConvertIngress(convert_ingress::ConvertIngressArgs),
    /// Inject the sidecar into the workloads of a Kubernetes YAML file.
    #[command(name = "kube-inject")]
    KubeInject(kube_inject::KubeInjectArgs),
    /// A pod's proxy configuration: clusters, listeners, routes, endpoints, bootstrap, log levels.
    #[command(name = "proxy-config", alias = "pc")]
    ProxyConfig(proxy_config::ProxyConfigArgs),
    /// Interact with Istio authentication policies.
    #[command(subcommand)]
    Authn(authn::AuthnCommand),
    /// Sync state of every proxy connected to Pilot.
    #[command(name = "proxy-status", alias = "ps")]
    ProxyStatus(proxy_status::ProxyStatusArgs),
    /// Access to Istio web UIs: prometheus, grafana, kiali, jaeger, zipkin, envoy POD.
    #[command(name = "dashboard", visible_aliases = ["dash", "d"])]
    Dashboard(dashboard::DashboardArgs),
    /// Prints out build version information: the client, the control plane and the data plane.
    Version(version::VersionArgs),
    /// Experimental commands.
    #[command(name = "x", alias = "experimental", subcommand)]
    Experimental(Experimental),
}

#[derive(Debug, Subcommand)]
pub enum Experimental {
    /// Analyze Istio configuration and print validation messages, as 1.4's analyzers did.
    Analyze(analyze::AnalyzeArgs),
    /// Describe a pod or service and the Istio configuration that affects it.
    #[command(alias = "des")]
    Describe(describe::DescribeArgs),
    /// Workload metrics from Prometheus: request rate, error rate, p50/p90/p99 latency.
    #[command(alias = "m")]
    Metrics(metrics::MetricsArgs),
    /// Take the sidecar out of the workloads of a Kubernetes YAML file (the inverse of kube-inject).
    #[command(name = "kube-uninject")]
    KubeUninject(kube_uninject::KubeUninjectArgs),
    /// The local platform's kubectl verbs: apply, delete, get, label, logs, exec.
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Connect to an MCP server (Galley) as a sink and print what it serves, as JSON.
    Mcp(mcp::McpArgs),
    /// Connect to Pilot as a proxy and print the xDS resources it sends, as Envoy v3 JSON.
    Xds(xds::XdsArgs),
    /// Inspect authorization: what guards a pod's listeners (`check`).
    #[command(subcommand)]
    Authz(authz::AuthzCommand),
    /// Talk to Mixer as 1.4's mixc did (`check`, `report`), or evaluate an expression (`eval`).
    #[command(subcommand)]
    Mixer(mixer::MixerCommand),
}

/// Runs a parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Version(args) => version::run(&args),
        Command::ConvertIngress(args) => convert_ingress::run(&args),
        Command::Install(args) => local::install(&args),
        Command::Uninstall => local::uninstall(),
        Command::Demo(args) => demo::run(&args),
        Command::Profile(command) => local::profile(&command),
        Command::Manifest(args) => manifest::run(&args),
        Command::VerifyInstall(args) => verify_install::run(&args),
        Command::Experimental(Experimental::Local(command)) => local::local(command),
        Command::KubeInject(args) => kube_inject::run(&args),
        Command::ProxyConfig(args) => proxy_config::run(&args),
        Command::ProxyStatus(args) => match &args.pod {
            Some(pod) => proxy_diff::run(&args, pod),
            None => proxy_status::run(&args),
        },
        Command::Dashboard(args) => dashboard::run(&args),
        Command::Authn(command) => authn::run(&command),
        Command::Experimental(Experimental::Authz(command)) => authz::run(&command),
        Command::Experimental(Experimental::Mixer(command)) => mixer::run(&command),
        Command::Experimental(Experimental::Analyze(args)) => analyze::run(&args),
        Command::Experimental(Experimental::Describe(args)) => describe::run(&args),
        Command::Experimental(Experimental::Metrics(args)) => metrics::run(&args),
        Command::Experimental(Experimental::KubeUninject(args)) => kube_uninject::run(&args),
        Command::Experimental(Experimental::Mcp(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(mcp::run(args))
        }
        Command::Experimental(Experimental::Xds(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(xds::run(args))
        }
    }
}
