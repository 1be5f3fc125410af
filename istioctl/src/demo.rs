//! `istioctl demo`: the demo profile and Bookinfo on this host in one command. It installs
//! the mesh, enables injection in `default`, deploys Bookinfo with its gateway and
//! destination rules, waits until `/productpage` answers through the ingress gateway, prints
//! where to look and what to try, and tears everything down on Ctrl-C (or
//! `istioctl demo --down`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use istio_config::object::Object;
use istio_local::{kubectl, objects, teardown, Layout};
use serde_json::Value;

const BOOKINFO: &str = include_str!("../../samples/bookinfo/platform/kube/bookinfo.yaml");
const GATEWAY: &str = include_str!("../../samples/bookinfo/networking/bookinfo-gateway.yaml");
const DESTINATION_RULES: &str = include_str!("../../samples/bookinfo/networking/destination-rule-all.yaml");
/// The same rules with ISTIO_MUTUAL, which the docs apply when mutual TLS is enabled.
const DESTINATION_RULES_MTLS: &str = include_str!("../../samples/bookinfo/networking/destination-rule-all-mtls.yaml");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Tear a running demo down instead.
    #[arg(long)]
    pub down: bool,
    /// More profile settings, as for `install --set`.
    #[arg(long = "set", short = 's')]
    pub set: Vec<String>,
    /// Return once the demo is up instead of waiting for Ctrl-C (tear down later with `--down`).
    #[arg(long)]
    pub detach: bool,
    /// How long to wait for Bookinfo to answer.
    #[arg(long, default_value = "5m", value_parser = istio_duration::parse)]
    pub timeout: Duration,
    /// When the demo does not come up, leave what was started running to look at (its logs,
    /// `istioctl x local get pods -A`), instead of tearing it down.
    #[arg(long = "keep-on-failure")]
    pub keep_on_failure: bool,
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    if args.down {
        return crate::local::uninstall();
    }
    if let Some((pid, root)) = istio_local::teardown::other_daemon(&layout) {
        eprintln!("✘ another installation runs on this host (daemon {pid}, ISTIO_LOCAL_ROOT={root}); remove it first");
        return Ok(1);
    }
    if istio_local::teardown::daemon_pid(&layout).is_some() {
        eprintln!(
            "✘ a mesh is already installed here ({}); `istioctl demo --down` removes it",
            layout.root().display()
        );
        return Ok(1);
    }
    // Ctrl-C, at any point, tears down what was started so far; this thread then ends the
    // process, and the main thread leaves that to it.
    let teardown_layout = layout.clone();
    let tearing_down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let interrupted = tearing_down.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(istio_runtime::shutdown_signal());
        interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("\ntearing down…");
        let code = match crate::local::uninstall_at(&teardown_layout) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("✘ {error:#}");
                1
            }
        };
        std::process::exit(code);
    });
    let started = Instant::now();
    let result = bring_up(&layout, args, &tearing_down);
    let gateway = match result {
        Ok(gateway) => gateway,
        Err(_) if tearing_down.load(std::sync::atomic::Ordering::SeqCst) => loop {
            // The signal thread is tearing down and will end the process.
            std::thread::sleep(Duration::from_secs(1));
        },
        Err(error) => {
            eprintln!("✘ {error:#}");
            if args.keep_on_failure {
                eprintln!(
                    "left running for inspection: logs under {}, `istioctl demo --down` removes it",
                    layout.root().join("logs").display()
                );
                return Ok(1);
            }
            eprintln!("tearing down what was started…");
            let _ = teardown::uninstall(&layout, &mut |_| {});
            return Ok(1);
        }
    };
    println!();
    println!("✔ Bookinfo is up ({} s). Open:", started.elapsed().as_secs());
    println!("    http://{gateway}/productpage");
    println!(
        "    http://{}:{}/metrics   # the mesh's metrics (istio_requests_total, …), from istio-telemetry",
        istio_local::install::TELEMETRY.address,
        istio_local::install::MIXER_PROMETHEUS_PORT
    );
    if istio_local::prereq::find_program(istio_local::install::PROMETHEUS.binary).is_some() {
        println!(
            "    http://{}:{}/graph   # Prometheus: try istio_requests_total",
            istio_local::install::PROMETHEUS.address,
            istio_local::install::PROMETHEUS_PORT
        );
    }
    println!(
        "    http://{}:{}/api/v2/traces?serviceName=istio-ingressgateway   # traces (Zipkin's API), from the trace collector",
        istio_local::install::TRACING.address,
        istio_local::install::ZIPKIN_PORT
    );
    println!(
        "    http://{}:{}/graph   # the mesh console: service graph, dashboards, traces, config",
        istio_local::install::CONSOLE.address,
        istio_local::install::CONSOLE_PORT
    );
    println!();
    let istioctl = istioctl_invocation();
    let samples = samples_dir();
    println!("Then try (from another terminal):");
    println!("    {istioctl} x local apply -f {samples}/bookinfo/networking/virtual-service-all-v1.yaml   # no stars");
    println!(
        "    {istioctl} x local apply -f {samples}/bookinfo/networking/virtual-service-reviews-v3.yaml   # red stars"
    );
    println!("    {istioctl} proxy-status");
    println!("    {istioctl} proxy-config cluster productpage-v1 | head");
    println!("    {istioctl} x describe pod productpage-v1");
    println!("    {istioctl} x analyze -k");
    println!("    {istioctl} x local get pods");
    println!("    {istioctl} x local logs productpage-v1 -c istio-proxy");
    println!();
    if args.detach {
        println!("The demo keeps running; `istioctl demo --down` removes it.");
        return Ok(0);
    }
    println!("Press Ctrl-C to tear it all down (or run `istioctl demo --down`).");
    // The signal thread tears down on Ctrl-C; here we only notice a teardown from elsewhere.
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if tearing_down.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if teardown::daemon_pid(&layout).is_none() {
            println!("the demo was stopped");
            return Ok(0);
        }
    }
}

/// Installs and deploys; returns the ingress gateway's address.
fn bring_up(layout: &Layout, args: &DemoArgs, interrupted: &std::sync::atomic::AtomicBool) -> anyhow::Result<String> {
    let check_interrupted = || -> anyhow::Result<()> {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    };
    let mut sets = vec!["profile=demo".to_string()];
    sets.extend(args.set.iter().cloned());
    // With mutual TLS required everywhere, Bookinfo's rules must ask for it too (the docs'
    // destination-rule-all-mtls.yaml), or they would override the mesh-wide ISTIO_MUTUAL rule.
    let mtls = istio_local::install::Plan::new(&sets)?.mtls_enabled();
    let (destination_rules, rules_source) = if mtls {
        (DESTINATION_RULES_MTLS, "samples/bookinfo/networking/destination-rule-all-mtls.yaml")
    } else {
        (DESTINATION_RULES, "samples/bookinfo/networking/destination-rule-all.yaml")
    };
    crate::local::install_with(layout, &sets, &mut |line| println!("{line}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        println!(
            "{}",
            kubectl::label_namespace(layout, "default", &[("istio-injection".into(), "enabled".into())]).await?
        );
        check_interrupted()?;
        for (text, source) in [
            (BOOKINFO, "samples/bookinfo/platform/kube/bookinfo.yaml"),
            (GATEWAY, "samples/bookinfo/networking/bookinfo-gateway.yaml"),
            (destination_rules, rules_source),
        ] {
            for line in kubectl::apply(layout, kubectl::parse(text, source, "default")?).await? {
                println!("{line}");
            }
        }
        println!("waiting for the pods to be ready…");
        let deadline = Instant::now() + args.timeout;
        let mut announced = std::collections::BTreeSet::new();
        let gateway = loop {
            check_interrupted()?;
            let pods = kubectl::list(layout, &objects::pods(), None).await?;
            for pod in &pods {
                if pod_ready(pod) && announced.insert(pod.name().to_string()) {
                    println!("  ✔ {}/{} ready", pod.namespace(), pod.name());
                }
                if let Some(message) = pod.body.get("status").and_then(|s| s.get("message")).and_then(Value::as_str) {
                    if pod.body.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str) == Some("Failed") {
                        bail!("pod {}/{} failed: {message}", pod.namespace(), pod.name());
                    }
                }
            }
            let expected = ["details", "ratings", "reviews", "productpage", "istio-ingressgateway"];
            let all_ready = expected.iter().all(|app| {
                pods.iter()
                    .any(|pod| objects::labels(pod).get("app").map(String::as_str) == Some(*app) && pod_ready(pod))
            }) && pods.iter().filter(|pod| pod.namespace() == "default").all(pod_ready);
            if all_ready {
                let gateway = pods
                    .iter()
                    .find(|pod| objects::labels(pod).get("istio").map(String::as_str) == Some("ingressgateway"))
                    .and_then(|pod| pod.body.get("status")?.get("podIP")?.as_str().map(str::to_string))
                    .context("the ingress gateway has no address")?;
                break gateway;
            }
            if Instant::now() > deadline {
                bail!("the pods were not all ready within {:?} (see `istioctl x local get pods -A`)", args.timeout);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        println!("waiting for /productpage through the ingress gateway at {gateway}…");
        loop {
            check_interrupted()?;
            // Ready means the whole page: details and reviews reached through the sidecars too.
            let (status, body) = http_get(&gateway, "/productpage").await;
            if status == 200 && body.contains("Book Details") && body.contains("Book Reviews") {
                return Ok(gateway);
            }
            if Instant::now() > deadline {
                bail!(
                    "http://{gateway}/productpage did not answer 200 with the whole page in time (last status {status}{})",
                    page_errors(&body)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// What a Bookinfo page says went wrong (`; Error fetching product details!`), if anything.
fn page_errors(body: &str) -> String {
    let complaints = ["Error fetching product details", "Error fetching product reviews", "currently unavailable"];
    let mut said = String::new();
    for line in body.lines().map(str::trim) {
        if complaints.iter().any(|complaint| line.contains(complaint)) {
            let text: String = line.split(['<', '>']).step_by(2).collect::<Vec<_>>().join("").trim().to_string();
            said.push_str("; ");
            said.push_str(if text.is_empty() { line } else { &text });
        }
    }
    said
}

fn pod_ready(pod: &Object) -> bool {
    pod.body
        .get("status")
        .and_then(|status| status.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

/// A plain GET; (0, "") when it cannot connect.
async fn http_get(host: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((host, 80))).await
    else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, text.into_owned())
}

/// How to run this istioctl from another terminal: `istioctl` when that name on PATH is this
/// binary, else its path (relative to the working directory when under it); with `sudo` when the
/// demo runs through sudo, and with `ISTIO_LOCAL_ROOT` when the mesh lives elsewhere.
fn istioctl_invocation() -> String {
    let current = std::env::current_exe().ok().and_then(|path| path.canonicalize().ok());
    let on_path = istio_local::prereq::find_program("istioctl").and_then(|path| path.canonicalize().ok());
    let program = match (&current, &on_path) {
        (Some(current), Some(on_path)) if current == on_path => "istioctl".to_string(),
        (Some(current), _) => {
            let cwd = std::env::current_dir().ok().and_then(|dir| dir.canonicalize().ok());
            match cwd.and_then(|cwd| current.strip_prefix(cwd).ok().map(|relative| relative.to_path_buf())) {
                Some(relative) => format!("./{}", relative.display()),
                None => current.display().to_string(),
            }
        }
        (None, _) => "istioctl".to_string(),
    };
    let mut prefix = String::new();
    if std::env::var_os("SUDO_USER").is_some() {
        prefix.push_str("sudo ");
    }
    if let Ok(root) = std::env::var("ISTIO_LOCAL_ROOT") {
        if prefix.is_empty() {
            prefix = format!("ISTIO_LOCAL_ROOT={root} ");
        } else {
            prefix.push_str(&format!("ISTIO_LOCAL_ROOT={root} "));
        }
    }
    format!("{prefix}{program}")
}

/// Where the samples are, as a path that works from the working directory.
fn samples_dir() -> String {
    if std::path::Path::new("samples/bookinfo").is_dir() {
        return "samples".to_string();
    }
    let beside_sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    beside_sources.canonicalize().map_or_else(|_| "samples".to_string(), |path| path.display().to_string())
}
