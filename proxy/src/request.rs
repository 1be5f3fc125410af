//! `proxy request METHOD PATH`: what `pilot-agent request` did — send one request to the local
//! admin API and print the answer (istioctl runs it inside pods for `proxy-config`).

use std::str::FromStr;

use anyhow::{anyhow, bail};
use clap::Args;
use http::Method;

use crate::http_client::Admin;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// HTTP method, e.g. GET or POST.
    pub method: String,
    /// Admin path, e.g. config_dump or /stats?filter=cds.
    pub path: String,
    /// The admin API port.
    #[arg(long = "debug-port", default_value_t = 15000)]
    pub admin_port: u16,
}

/// Sends the request and returns the body; a non-2xx answer is an error carrying the body.
pub async fn run(args: &RequestArgs) -> anyhow::Result<String> {
    let method = Method::from_str(&args.method.to_uppercase())
        .map_err(|_| anyhow!("{:?} is not an HTTP method", args.method))?;
    let admin = Admin { port: args.admin_port };
    let response = admin.call(method, &args.path).await.map_err(|error| anyhow!(error))?;
    if !response.status.is_success() {
        bail!("{} {}: {}\n{}", args.method, args.path, response.status, response.text());
    }
    Ok(response.text())
}
