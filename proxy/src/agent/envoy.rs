//! `--binaryPath`: run a stock Envoy as the data plane, as 1.4's pilot-agent did. The agent
//! starts Envoy on the bootstrap it wrote, restarts it with backoff when it dies, and on
//! shutdown drains its listeners (new requests are told to close their connections), waits for
//! open connections to finish up to `--drainDuration`, then stops it.

use istio_runtime::backoff::Backoff;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::http_client::Admin;

/// How an Envoy is started and stopped.
#[derive(Debug, Clone)]
pub(crate) struct EnvoyOptions {
    pub binary: PathBuf,
    pub bootstrap: PathBuf,
    pub admin: Admin,
    pub log_level: String,
    pub component_log_level: String,
    pub concurrency: usize,
    pub drain_duration: Duration,
    pub parent_shutdown_duration: Duration,
}

/// Consecutive quick deaths after which the agent gives up (and the pod restarts), as 1.4 did.
const MAX_RESTARTS: u32 = 10;
/// A run this long counts as healthy and resets the restart budget.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl EnvoyOptions {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&self.bootstrap)
            // Once the agent drains, every response asks its client to close (no gradual ramp).
            .args(["--disable-hot-restart", "--drain-strategy", "immediate", "--drain-time-s"])
            .arg(self.drain_duration.as_secs().max(1).to_string())
            .arg("--parent-shutdown-time-s")
            .arg(self.parent_shutdown_duration.as_secs().max(1).to_string())
            .args(["--log-level", &self.log_level]);
        if !self.component_log_level.is_empty() {
            command.args(["--component-log-level", &self.component_log_level]);
        }
        if self.concurrency > 0 {
            command.args(["--concurrency", &self.concurrency.to_string()]);
        }
        command.kill_on_drop(true);
        command
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        self.command().spawn().with_context(|| format!("starting {}", self.binary.display()))
    }
}

/// Runs Envoy until `shutdown` resolves, then drains and stops it. Fails when Envoy cannot be
/// started or keeps dying.
pub(crate) async fn supervise(
    options: EnvoyOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut quick_deaths = 0u32;
    // 200 ms doubling to 12.8 s between quick deaths.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(12_800), false);
    loop {
        let mut child = options.spawn()?;
        tracing::info!(pid = child.id(), "started {}", options.binary.display());
        let started = Instant::now();
        let status: ExitStatus = tokio::select! {
            status = child.wait() => status.context("waiting for envoy")?,
            () = &mut shutdown => {
                drain_and_stop(&options, &mut child).await;
                return Ok(());
            }
        };
        if started.elapsed() >= HEALTHY_RUN {
            quick_deaths = 0;
            backoff.reset();
        }
        quick_deaths += 1;
        if quick_deaths > MAX_RESTARTS {
            bail!("envoy exited ({status}) {MAX_RESTARTS} times in a row; giving up");
        }
        let delay = backoff.next_delay();
        tracing::warn!("envoy exited ({status}); restarting in {delay:?}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Graceful stop: drain listeners, wait for connections to close (at most the drain
/// duration), then SIGTERM, and SIGKILL if Envoy is still there at the parent-shutdown deadline.
async fn drain_and_stop(options: &EnvoyOptions, child: &mut Child) {
    let deadline = Instant::now() + options.drain_duration;
    match options.admin.post("/drain_listeners?graceful").await {
        Ok(response) if response.status.is_success() => {
            tracing::info!("draining envoy for up to {:?}", options.drain_duration);
            while Instant::now() < deadline {
                match active_connections(options.admin).await {
                    Some(0) | None => break,
                    Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(response) => tracing::warn!("envoy refused to drain: {}", response.status),
        Err(error) => tracing::warn!("could not drain envoy: {error}"),
    }
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let grace = options.parent_shutdown_duration.saturating_sub(options.drain_duration).max(Duration::from_secs(5));
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => tracing::info!("envoy stopped ({status})"),
        _ => {
            tracing::warn!("envoy did not stop within {grace:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Open downstream connections on the data-plane listeners (the admin listener excluded).
async fn active_connections(admin: Admin) -> Option<u64> {
    let stats = admin.stats(r"^listener\..*\.downstream_cx_active$").await.ok()?;
    Some(stats.iter().filter(|(name, _)| !name.starts_with("listener.admin.")).map(|(_, value)| value).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_command_line() {
        let options = EnvoyOptions {
            binary: "/usr/local/bin/envoy".into(),
            bootstrap: "/etc/istio/proxy/envoy-rev0.json".into(),
            admin: Admin { port: 15000 },
            log_level: "warning".into(),
            component_log_level: "misc:error".into(),
            concurrency: 2,
            drain_duration: Duration::from_secs(45),
            parent_shutdown_duration: Duration::from_secs(60),
        };
        let command = options.command();
        let args: Vec<String> = command.as_std().get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "-c /etc/istio/proxy/envoy-rev0.json --disable-hot-restart --drain-strategy immediate --drain-time-s 45 --parent-shutdown-time-s 60 \
             --log-level warning --component-log-level misc:error --concurrency 2"
        );
    }
}
