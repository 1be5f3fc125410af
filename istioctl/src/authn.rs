//! `istioctl authn tls-check POD[.NAMESPACE] [SERVICE]`: whether the mutual-TLS settings of the
//! servers (authentication policies) and of the clients (DestinationRules) agree, for every
//! service as the pod's proxy sees it, from Pilot's `/debug/authenticationz`, printed as 1.4
//! printed it: `HOST:PORT STATUS SERVER CLIENT AUTHN POLICY DESTINATION RULE`.

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::proxy_status::{http_get, pilot_debug_address};

#[derive(Debug, clap::Subcommand)]
pub enum AuthnCommand {
    /// Check whether TLS setting are matching between authentication policy and destination rules.
    #[command(name = "tls-check")]
    TlsCheck(TlsCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct TlsCheckArgs {
    /// The pod, `NAME` or `NAME.NAMESPACE`.
    pub pod: String,
    /// Only this service (its host name, e.g. `httpbin.default.svc.cluster.local`).
    pub service: Option<String>,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Pilot's debug address (its `--httpAddr`); by default the local installation's Pilot.
    #[arg(long = "pilot")]
    pub pilot: Option<String>,
}

/// One row of `/debug/authenticationz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// The table: rows sorted by host then port; with `service`, only the first row for exactly
/// that host, as 1.4 did.
pub(crate) fn render(mut rows: Vec<AuthenticationDebug>, service: Option<&str>) -> String {
    rows.sort_by(|a, b| a.host.cmp(&b.host).then(a.port.cmp(&b.port)));
    let chosen: Vec<&AuthenticationDebug> = match service {
        Some(service) => rows.iter().filter(|row| row.host == service).take(1).collect(),
        None => rows.iter().filter(|row| !row.host.is_empty()).collect(),
    };
    let cells: Vec<Vec<String>> = chosen
        .into_iter()
        .map(|row| {
            vec![
                format!("{}:{}", row.host, row.port),
                row.tls_conflict_status.clone(),
                row.server_protocol.clone(),
                row.client_protocol.clone(),
                row.authentication_policy_name.clone(),
                row.destination_rule_name.clone(),
            ]
        })
        .collect();
    crate::table::render(&["HOST:PORT", "STATUS", "SERVER", "CLIENT", "AUTHN POLICY", "DESTINATION RULE"], &cells)
}

pub(crate) fn run(command: &AuthnCommand) -> anyhow::Result<i32> {
    let AuthnCommand::TlsCheck(args) = command;
    let proxy_id = if args.pod.contains('.') { args.pod.clone() } else { format!("{}.{}", args.pod, args.namespace) };
    let pilot = pilot_debug_address(args.pilot.as_deref());
    let body = match http_get(&pilot, &format!("/debug/authenticationz?proxyID={proxy_id}")) {
        Ok(body) => body,
        Err(error) if error.to_string().contains("404") => {
            bail!("no proxy {proxy_id} is connected to Pilot at {pilot} (is the pod running with a sidecar?)")
        }
        Err(error) => return Err(error),
    };
    let rows: Vec<AuthenticationDebug> =
        serde_json::from_str(&body).context("Pilot's /debug/authenticationz is not a JSON list")?;
    print!("{}", render(rows, args.service.as_deref()));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, port: u32, status: &str, client: &str) -> AuthenticationDebug {
        AuthenticationDebug {
            host: host.to_string(),
            port,
            authentication_policy_name: "/default".to_string(),
            destination_rule_name: "istio-system/default".to_string(),
            server_protocol: "STRICT".to_string(),
            client_protocol: client.to_string(),
            tls_conflict_status: status.to_string(),
        }
    }

    /// 1.4.6's writer goldens (`istioctl/pkg/writer/pilot/testdata`) for its auth writer's
    /// rows: two services and one without a host, which is left out.
    #[test]
    fn tables_match_the_1_4_6_writer_goldens() {
        let golden = |name: &str| {
            let path = format!("{}/testdata/istio-1.4.6/writer/pilot/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
        };
        let entry = |host: &str, port: u32, n: u32| AuthenticationDebug {
            host: host.to_string(),
            port,
            authentication_policy_name: format!("auth-policy{n}/namespace{n}"),
            destination_rule_name: format!("destination-rule{n}/namespace{n}"),
            server_protocol: "HTTP".to_string(),
            client_protocol: "HTTP".to_string(),
            tls_conflict_status: "OK".to_string(),
        };
        let rows = vec![entry("host1", 1, 1), entry("host2", 2, 2), entry("", 9999, 3)];
        assert_eq!(render(rows.clone(), None).trim_end(), golden("multiAuth.txt").trim_end());
        assert_eq!(render(rows, Some("host2")).trim_end(), golden("singleAuth.txt").trim_end());
    }

    #[test]
    fn prints_the_1_4_table_sorted_and_one_service_alone() {
        let rows = vec![
            row("httpbin.foo.svc.cluster.local", 8000, "OK", "ISTIO_MUTUAL"),
            row("details.default.svc.cluster.local", 9080, "CONFLICT", "DISABLE"),
        ];
        let table = render(rows.clone(), None);
        assert_eq!(
            table,
            "HOST:PORT                                  STATUS       SERVER     CLIENT           AUTHN POLICY     DESTINATION RULE\n\
             details.default.svc.cluster.local:9080     CONFLICT     STRICT     DISABLE          /default         istio-system/default\n\
             httpbin.foo.svc.cluster.local:8000         OK           STRICT     ISTIO_MUTUAL     /default         istio-system/default\n"
        );
        let single = render(rows, Some("httpbin.foo.svc.cluster.local"));
        assert_eq!(single.lines().count(), 2, "{single}");
        assert!(single.lines().nth(1).is_some_and(|line| line.starts_with("httpbin.foo.svc.cluster.local:8000")));
    }
}
