//! Pilot scale benchmark: N services, M simulated sidecars over ADS.
//!
//! `cargo bench -p pilot --bench xds_scale -- [--services N] [--clients M]` starts the real
//! `pilot` binary on a generated config directory, connects M ADS clients that behave like
//! Envoy (type_url::CLUSTER and type_url::LISTENER, then type_url::ENDPOINT for the cluster names and type_url::ROUTE for the route names, ACKing every
//! response), and measures:
//! - the connect storm: time until every client has ACKed all four types;
//! - a config change (a VirtualService edit): time until all clients ACKed it (p50/p99/max);
//! - an endpoint change (one ServiceEntry's endpoints, as when one workload's pods move): the same;
//! - every ServiceEntry's endpoints changing at once: the same;
//! - Pilot's resident memory after each phase.
//!
//! Run under `cargo test` it only checks it can start and exits.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use istio_xds::type_url;
use prost::Message;
use tokio::sync::{mpsc, watch};

/// Writes the mesh: `services` ServiceEntries with two endpoints each (their last octet
/// `endpoint_suffix`, except `moved`'s, which is `moved_suffix`), and svc0's VirtualService
/// splitting `weight`/`100 - weight` between its subsets.
fn write_config(dir: &Path, services: usize, (endpoint_suffix, moved, moved_suffix): (u8, usize, u8), weight: u32) {
    let mut text = String::new();
    for index in 0..services {
        let endpoint_suffix = if index == moved { moved_suffix } else { endpoint_suffix };
        text.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {{name: svc{index}, namespace: bench}}\nspec:\n  hosts: [svc{index}.bench.svc.cluster.local]\n  addresses: [10.{}.{}.1]\n  ports: [{{number: {}, name: http, protocol: HTTP}}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints:\n  - {{address: 10.200.{}.{endpoint_suffix}, labels: {{version: v1}}}}\n  - {{address: 10.201.{}.{endpoint_suffix}, labels: {{version: v2}}}}\n",
            index / 250, index % 250, 8000 + (index % 20), index % 250, index % 250
        ));
    }
    std::fs::write(dir.join("services.yaml"), text).expect("write services");
    let vs = format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {{name: svc0, namespace: bench}}\nspec:\n  hosts: [svc0.bench.svc.cluster.local]\n  http:\n  - route:\n    - destination: {{host: svc0.bench.svc.cluster.local, subset: v1}}\n      weight: {weight}\n    - destination: {{host: svc0.bench.svc.cluster.local, subset: v2}}\n      weight: {}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {{name: svc0, namespace: bench}}\nspec:\n  host: svc0.bench.svc.cluster.local\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n",
        100 - weight
    );
    std::fs::write(dir.join("rules.yaml"), vs).expect("write rules");
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Names decoded from one type_url::CLUSTER or type_url::LISTENER response version, shared by every simulated client: the
/// responses are identical for these sidecars, and decoding them 2000 times would measure the
/// benchmark's own CPU use on this machine rather than Pilot's.
type DecodedNames = Arc<std::sync::Mutex<HashMap<(&'static str, String), Vec<String>>>>;

fn decoded_names(
    cache: &DecodedNames,
    kind: &'static str,
    version: &str,
    decode: impl FnOnce() -> Vec<String>,
) -> Vec<String> {
    if let Some(found) = istio_runtime::sync::lock(cache).get(&(kind, version.to_string())) {
        return found.clone();
    }
    let names = decode();
    istio_runtime::sync::lock(cache).insert((kind, version.to_string()), names.clone());
    names
}

/// One simulated sidecar. Reports (client, version) each time all four types are ACKed at a
/// version.
async fn client(
    index: usize,
    address: String,
    converged: mpsc::UnboundedSender<(usize, u64)>,
    decoded: DecodedNames,
    dialing: Arc<tokio::sync::Semaphore>,
) {
    // Dial at most a listen backlog's worth at once: thousands of simultaneous SYNs overflow the
    // kernel's accept queue and measure its retransmit backoff instead of Pilot.
    let permit = dialing.acquire_owned().await;
    let mut ads = loop {
        match AggregatedDiscoveryServiceClient::connect(address.clone()).await {
            Ok(client) => break client.max_decoding_message_size(256 * 1024 * 1024),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    drop(permit);
    let (requests, receiver) = mpsc::unbounded_channel();
    let node = Node {
        id: format!("sidecar~10.99.{}.{}~client{index}.bench~bench.svc.cluster.local", index / 250, index % 250),
        ..Default::default()
    };
    let request = |type_url: &str, names: Vec<String>, version: &str, nonce: &str| DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names,
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    };
    let mut first = request(type_url::CLUSTER, vec![], "", "");
    first.node = Some(node);
    let _ = requests.send(first);
    let _ = requests.send(request(type_url::LISTENER, vec![], "", ""));
    let Ok(response) =
        ads.stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver)).await
    else {
        return;
    };
    let mut stream = response.into_inner();
    let mut acked: HashMap<&'static str, u64> = HashMap::new();
    let mut eds_names: Vec<String> = Vec::new();
    let mut rds_names: Vec<String> = Vec::new();
    let mut last_nonce: HashMap<&'static str, String> = HashMap::new();
    while let Ok(Some(response)) = stream.message().await {
        let kind = match response.type_url.as_str() {
            type_url::CLUSTER => type_url::CLUSTER,
            type_url::ENDPOINT => type_url::ENDPOINT,
            type_url::LISTENER => type_url::LISTENER,
            type_url::ROUTE => type_url::ROUTE,
            _ => continue,
        };
        let version: u64 = response.version_info.parse().unwrap_or(0);
        let _ = requests.send(request(
            kind,
            if kind == type_url::ENDPOINT {
                eds_names.clone()
            } else if kind == type_url::ROUTE {
                rds_names.clone()
            } else {
                vec![]
            },
            &response.version_info,
            &response.nonce,
        ));
        last_nonce.insert(kind, response.nonce.clone());
        acked.insert(kind, version);
        if kind == type_url::CLUSTER {
            let names = decoded_names(&decoded, type_url::CLUSTER, &response.version_info, || {
                response
                    .resources
                    .iter()
                    .filter_map(|any| {
                        envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(any.value.as_slice()).ok()
                    })
                    .filter(|cluster| cluster.eds_cluster_config.is_some())
                    .map(|cluster| cluster.name)
                    .collect()
            });
            if names != eds_names {
                eds_names = names;
                let nonce = last_nonce.get(type_url::ENDPOINT).cloned().unwrap_or_default();
                let _ = requests.send(request(type_url::ENDPOINT, eds_names.clone(), "", &nonce));
            }
        }
        if kind == type_url::LISTENER {
            let names = decoded_names(&decoded, type_url::LISTENER, &response.version_info, || {
                response
                    .resources
                    .iter()
                    .filter_map(|any| Listener::decode(any.value.as_slice()).ok())
                    .filter_map(|listener| listener.name.strip_prefix("0.0.0.0_").map(str::to_string))
                    .filter(|port| port.parse::<u32>().is_ok_and(|p| (8000..9000).contains(&p)))
                    .collect()
            });
            if names != rds_names {
                rds_names = names;
                let nonce = last_nonce.get(type_url::ROUTE).cloned().unwrap_or_default();
                let _ = requests.send(request(type_url::ROUTE, rds_names.clone(), "", &nonce));
            }
        }
        // Every ACK is reported once the client holds all four types: after that, pushes carry
        // only what changed, so "converged on version N" means "ACKed every version-N response".
        if [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::ROUTE]
            .iter()
            .all(|kind| acked.contains_key(kind))
        {
            let _ = converged.send((index, version));
        }
    }
}

/// Waits until every client has ACKed a response of `version` (or later), then a quiet second
/// for any further responses of that version; each client's latency is its last such ACK.
async fn wait_all(
    receiver: &mut mpsc::UnboundedReceiver<(usize, u64)>,
    clients: usize,
    version: u64,
    started: Instant,
) -> Vec<Duration> {
    let mut done: HashMap<usize, Duration> = HashMap::new();
    loop {
        let wait = if done.len() < clients { Duration::from_secs(600) } else { Duration::from_secs(1) };
        match tokio::time::timeout(wait, receiver.recv()).await {
            Ok(Some((index, reached))) if reached >= version => {
                done.insert(index, started.elapsed());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) if done.len() == clients => break,
            Ok(None) | Err(_) => panic!("only {} of {clients} clients converged on version {version}", done.len()),
        }
    }
    let mut latencies: Vec<Duration> = done.into_values().collect();
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

fn report(phase: &str, latencies: &[Duration], pid: u32) {
    println!(
        "{phase:<18} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms   pilot RSS {:>7.1} MiB",
        percentile(latencies, 50).as_secs_f64() * 1000.0,
        percentile(latencies, 99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        rss_mib(pid)
    );
}

struct Pilot(Child);

impl Drop for Pilot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("xds_scale: run with `cargo bench -p pilot --bench xds_scale -- --services N --clients M`");
        return;
    }
    let services = arg(&args, "--services", 1000);
    let clients = arg(&args, "--clients", 2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), services, (1, 0, 1), 50);
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let pilot = Pilot(
            Command::new(env!("CARGO_BIN_EXE_pilot"))
                .args([
                    "discovery",
                    "--configDir",
                    &dir.path().display().to_string(),
                    "--grpcAddr",
                    &format!("127.0.0.1:{port}"),
                    "--httpAddr",
                    "127.0.0.1:0",
                    "--monitoringAddr",
                    "127.0.0.1:0",
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start pilot"),
        );
        let pid = pilot.0.id();
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "pilot xDS scale: {services} services x {clients} sidecars (pilot RSS at start {:.1} MiB)",
            rss_mib(pid)
        );
        let (converged, mut reports) = mpsc::unbounded_channel();
        let started = Instant::now();
        let (_keep, _) = watch::channel(());
        let address = Arc::new(format!("http://127.0.0.1:{port}"));
        let decoded: DecodedNames = Arc::default();
        let dialing = Arc::new(tokio::sync::Semaphore::new(100));
        for index in 0..clients {
            tokio::spawn(client(index, address.to_string(), converged.clone(), decoded.clone(), dialing.clone()));
        }
        let storm = wait_all(&mut reports, clients, 1, started).await;
        report("connect storm", &storm, pid);

        let changed = Instant::now();
        write_config(dir.path(), services, (1, 0, 1), 20);
        let config = wait_all(&mut reports, clients, 2, changed).await;
        report("config change", &config, pid);

        let changed = Instant::now();
        write_config(dir.path(), services, (1, 0, 2), 20);
        let endpoints = wait_all(&mut reports, clients, 3, changed).await;
        report("endpoint change", &endpoints, pid);

        let changed = Instant::now();
        write_config(dir.path(), services, (3, 0, 3), 20);
        let all_endpoints = wait_all(&mut reports, clients, 4, changed).await;
        report("all endpoints", &all_endpoints, pid);
        drop(pilot);
    });
}
