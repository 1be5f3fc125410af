//! The command line of `proxy sidecar` and `proxy router`: the flags Istio 1.4's injection
//! template and gateway charts pass to pilot-agent, with the same names, defaults and Go-style
//! durations, so an injected 1.4 pod spec runs unchanged.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use istio_duration::parse as parse_go_duration;

/// How the proxy authenticates to Pilot (`--controlPlaneAuthPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlPlaneAuthPolicy {
    None,
    MutualTls,
}

/// Flags shared by `proxy sidecar` and `proxy router`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Run this Envoy binary with a generated bootstrap instead of the built-in data plane.
    #[arg(long = "binaryPath")]
    pub binary_path: Option<PathBuf>,
    /// Directory for generated files (the Envoy bootstrap).
    #[arg(long = "configPath", default_value = "/etc/istio/proxy")]
    pub config_path: PathBuf,
    /// Use this Envoy bootstrap file as it is instead of generating one (with --binaryPath).
    #[arg(long = "customConfigFile")]
    pub custom_config_file: Option<PathBuf>,
    /// The node's cluster (`node.cluster`); sidecars use `<app>.<namespace>`.
    #[arg(long = "serviceCluster", default_value = "istio-proxy")]
    pub service_cluster: String,
    /// How long listeners drain on shutdown before the proxy exits.
    #[arg(long = "drainDuration", default_value = "45s", value_parser = parse_go_duration)]
    pub drain_duration: Duration,
    /// Upper bound on the whole shutdown.
    #[arg(long = "parentShutdownDuration", default_value = "1m0s", value_parser = parse_go_duration)]
    pub parent_shutdown_duration: Duration,
    /// Pilot's xDS address, `host:port`.
    #[arg(long = "discoveryAddress", default_value = "istio-pilot:15010")]
    pub discovery_address: String,
    /// Zipkin collector `host:port` spans go to; empty for no tracing.
    #[arg(long = "zipkinAddress", default_value = "")]
    pub zipkin_address: String,
    /// Data-plane log level: trace, debug, info, warning, error, critical, off.
    #[arg(long = "proxyLogLevel", default_value = "warning")]
    pub proxy_log_level: String,
    /// Per-component data-plane log levels, `name:level,...`.
    #[arg(long = "proxyComponentLogLevel", default_value = "misc:error")]
    pub proxy_component_log_level: String,
    /// The agent's own log levels, `scope:level,...` (`default:info`).
    #[arg(long = "log_output_level", default_value = "default:info")]
    pub log_output_level: String,
    /// How often DNS-resolved clusters are re-resolved.
    #[arg(long = "dnsRefreshRate", default_value = "300s", value_parser = parse_go_duration)]
    pub dns_refresh_rate: Duration,
    /// Connect timeout for the connection to Pilot.
    #[arg(long = "connectTimeout", default_value = "1s", value_parser = parse_go_duration)]
    pub connect_timeout: Duration,
    /// The admin API port (always on 127.0.0.1).
    #[arg(long = "proxyAdminPort", default_value_t = 15000)]
    pub proxy_admin_port: u16,
    /// Worker threads of the data plane; 0 means one per core.
    #[arg(long = "concurrency", default_value_t = 0)]
    pub concurrency: usize,
    /// NONE, or MUTUAL_TLS to reach Pilot over mutual TLS with the certificates in /etc/certs.
    #[arg(long = "controlPlaneAuthPolicy", value_enum, default_value = "NONE", ignore_case = true)]
    pub control_plane_auth_policy: ControlPlaneAuthPolicy,
    /// Pilot's SPIFFE identity checked under MUTUAL_TLS (default: istio-pilot-service-account in istio-system).
    #[arg(long = "pilotIdentity", default_value = "")]
    pub pilot_identity: String,
    /// The port of the Prometheus listener (`/stats/prometheus`); 15090 as in 1.4, where it was fixed.
    #[arg(long = "statsPort", default_value_t = 15090)]
    pub stats_port: u16,
    /// Use incremental (delta) xDS instead of state of the world.
    #[arg(long = "deltaXds")]
    pub delta_xds: bool,
    /// The status server port (readiness, app probes); 0 turns it off.
    #[arg(long = "statusPort", default_value_t = 0)]
    pub status_port: u16,
    /// The application's ports, comma separated; readiness waits until inbound traffic to them is configured.
    #[arg(long = "applicationPorts", default_value = "")]
    pub application_ports: String,
    /// The mesh's trust domain.
    #[arg(long = "trust-domain", default_value = "")]
    pub trust_domain: String,
    /// DNS domain of the node id (default `<POD_NAMESPACE>.svc.cluster.local`).
    #[arg(long = "domain", default_value = "")]
    pub domain: String,
    /// The workload part of the node id (default `<POD_NAME>.<POD_NAMESPACE>`).
    #[arg(long = "id", default_value = "")]
    pub id: String,
    /// The IP of the node id (default `INSTANCE_IP`, else this host's first non-loopback address).
    #[arg(long = "ip", default_value = "")]
    pub ip: String,
    /// The platform the workload runs on; only Kubernetes naming is supported.
    #[arg(long = "serviceregistry", default_value = "Kubernetes")]
    pub service_registry: String,
    /// Where the node agent serves SDS (used when SDS_ENABLED=true).
    #[arg(long = "sdsUdsPath", default_value = "unix:/var/run/sds/uds_path")]
    pub sds_uds_path: String,
    /// The Mixer client is configured by Pilot; this 1.4 flag is accepted for compatibility.
    #[arg(long = "mixerIdentity", default_value = "", hide = true)]
    pub mixer_identity: String,
    /// Accepted for compatibility with 1.4 templates; statsd export is not offered.
    #[arg(long = "statsdUdpAddress", default_value = "", hide = true)]
    pub statsd_udp_address: String,
    /// Accepted for compatibility with 1.4 templates (it was always true there).
    #[arg(long = "controlPlaneBootstrap", default_value_t = true, hide = true, action = clap::ArgAction::Set)]
    pub control_plane_bootstrap: bool,
    /// Accepted for compatibility with 1.4 templates.
    #[arg(long = "disableInternalTelemetry", hide = true)]
    pub disable_internal_telemetry: bool,
}

/// Flags the agent cannot honour; each names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("--applicationPorts: {0:?} is not a port number")]
    ApplicationPort(String),
    #[error("--serviceregistry {0}: only Kubernetes is supported")]
    Registry(String),
    #[error("--customConfigFile is an Envoy bootstrap and needs --binaryPath")]
    CustomConfigWithoutEnvoy,
    #[error("--statsdUdpAddress: statsd export is not supported; scrape :15090/stats/prometheus")]
    Statsd,
    #[error(transparent)]
    Address(#[from] AddressError),
}

/// Text that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not host:port")]
pub struct AddressError(pub String);

impl AgentArgs {
    /// The application ports as numbers; a word that is not a port is an error naming it.
    pub fn application_ports(&self) -> Result<Vec<u16>, ArgsError> {
        self.application_ports
            .split(',')
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| text.parse().map_err(|_| ArgsError::ApplicationPort(text.to_string())))
            .collect()
    }

    /// The trust domain, `cluster.local` unless given.
    pub fn trust_domain(&self) -> &str {
        if self.trust_domain.is_empty() {
            "cluster.local"
        } else {
            &self.trust_domain
        }
    }

    /// The SPIFFE name Pilot's certificate must carry under MUTUAL_TLS.
    pub fn pilot_san(&self) -> String {
        if self.pilot_identity.is_empty() {
            format!("spiffe://{}/ns/istio-system/sa/istio-pilot-service-account", self.trust_domain())
        } else {
            self.pilot_identity.clone()
        }
    }

    /// Rejects combinations the agent cannot honour, before anything starts.
    pub fn validate(&self) -> Result<(), ArgsError> {
        self.application_ports()?;
        if self.service_registry != "Kubernetes" {
            return Err(ArgsError::Registry(self.service_registry.clone()));
        }
        if self.custom_config_file.is_some() && self.binary_path.is_none() {
            return Err(ArgsError::CustomConfigWithoutEnvoy);
        }
        if !self.statsd_udp_address.is_empty() {
            return Err(ArgsError::Statsd);
        }
        split_host_port(&self.discovery_address)?;
        Ok(())
    }
}

/// Splits `host:port` (or `[v6]:port`), with an error naming the text.
pub fn split_host_port(address: &str) -> Result<(String, u16), AddressError> {
    let invalid = || AddressError(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_string(), port.parse().map_err(|_| invalid())?))
}

/// Parses agent flags alone (`argv[0]` is the program name), for tests.
#[cfg(test)]
pub fn parse(argv: &[&str]) -> Result<AgentArgs, clap::Error> {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }
    Cli::try_parse_from(argv).map(|cli| cli.agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments Istio 1.4's injection template gives `istio-proxy`.
    const INJECTED: &[&str] = &[
        "proxy",
        "--domain",
        "default.svc.cluster.local",
        "--configPath",
        "/etc/istio/proxy",
        "--binaryPath",
        "/usr/local/bin/envoy",
        "--serviceCluster",
        "productpage.default",
        "--drainDuration",
        "45s",
        "--parentShutdownDuration",
        "1m0s",
        "--discoveryAddress",
        "istio-pilot.istio-system:15010",
        "--zipkinAddress",
        "zipkin.istio-system:9411",
        "--proxyLogLevel=warning",
        "--proxyComponentLogLevel=misc:error",
        "--dnsRefreshRate",
        "300s",
        "--connectTimeout",
        "10s",
        "--proxyAdminPort",
        "15000",
        "--concurrency",
        "2",
        "--controlPlaneAuthPolicy",
        "NONE",
        "--statusPort",
        "15020",
        "--applicationPorts",
        "9080",
        "--trust-domain=cluster.local",
    ];

    #[test]
    fn accepts_the_1_4_injected_arguments() {
        let agent = parse(INJECTED).expect("parse");
        agent.validate().expect("valid");
        assert_eq!(agent.drain_duration, Duration::from_secs(45));
        assert_eq!(agent.parent_shutdown_duration, Duration::from_secs(60));
        assert_eq!(agent.connect_timeout, Duration::from_secs(10));
        assert_eq!(agent.application_ports().map_err(|error| error.to_string()), Ok(vec![9080]));
        assert_eq!(agent.control_plane_auth_policy, ControlPlaneAuthPolicy::None);
        assert_eq!(agent.binary_path, Some(PathBuf::from("/usr/local/bin/envoy")));
        assert_eq!(agent.pilot_san(), "spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account");
    }

    #[test]
    fn gateway_arguments_parse_too() {
        let agent = parse(&[
            "proxy",
            "--log_output_level=default:info",
            "--serviceCluster",
            "istio-ingressgateway",
            "--controlPlaneAuthPolicy",
            "MUTUAL_TLS",
            "--discoveryAddress",
            "istio-pilot:15011",
        ])
        .expect("parse");
        assert_eq!(agent.control_plane_auth_policy, ControlPlaneAuthPolicy::MutualTls);
        assert_eq!(agent.status_port, 0);
    }

    #[test]
    fn bad_values_are_named() {
        let error = parse(&["proxy", "--drainDuration", "45"]).expect_err("error").to_string();
        assert!(error.contains("\"45\""), "{error}");
        let agent = parse(&["proxy", "--applicationPorts", "9080,http"]).expect("parse");
        assert_eq!(
            agent.validate().map_err(|error| error.to_string()),
            Err("--applicationPorts: \"http\" is not a port number".to_string())
        );
        let agent = parse(&["proxy", "--discoveryAddress", "pilot"]).expect("parse");
        assert!(agent.validate().expect_err("no port").to_string().contains("\"pilot\""));
    }

    #[test]
    fn splits_addresses() {
        assert_eq!(split_host_port("istio-pilot.istio-system:15010"), Ok(("istio-pilot.istio-system".into(), 15010)));
        assert_eq!(split_host_port("[::1]:15010"), Ok(("::1".into(), 15010)));
        assert!(split_host_port(":15010").is_err());
    }
}
