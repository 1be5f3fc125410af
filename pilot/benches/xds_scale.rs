//! Pilot scale benchmark: N services, M simulated sidecars over ADS.
//!
//! `cargo bench -p pilot --bench xds_scale -- [--services N] [--clients M] [--namespaces K]
//! [--sweep]` starts the real `pilot` binary on a generated config directory, connects M ADS
//! clients that behave like Envoy (CDS and LDS, then EDS for the cluster names and RDS for the
//! route names, ACKing every response), and measures:
//! - the connect storm: time until every client has ACKed all four types;
//! - a config change (a VirtualService edit): time until every affected client ACKed it
//!   (p50/p99/max);
//! - an endpoint change (one ServiceEntry's endpoints, as when one workload's pods move): the same;
//! - every ServiceEntry's endpoints changing at once: the same;
//! - Pilot's resident memory after each phase, and the CPU time it and the simulated proxies
//!   (this process, on the same cores) spent on each.
//!
//! With `--namespaces K` the services and clients are spread over K namespaces, each with a
//! Sidecar that limits its proxies to their own namespace (the namespace isolation Istio's
//! sizing assumed). `--sweep` runs 250, 500, 1000 and 2000 services (and 10), each unscoped and
//! with 10 namespaces, and prints how each figure grows.
//!
//! `--no-eds-debounce` runs Pilot with `PILOT_ENABLE_EDS_DEBOUNCE=false` (endpoint changes
//! pushed without waiting for the quiet period). `XDS_SCALE_PILOT_LOG=FILE` keeps Pilot's log (at info) in FILE.
//! `XDS_SCALE_PERF=DIR` records Pilot's CPU profile of each phase with `perf record` into
//! `DIR/<phase>.data` (the setup's own work, writing the config, is not in it).
//!
//! Run under `cargo test` it only checks it can start and exits.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use istio_xds::type_url;
use prost::Message;
use tokio::sync::mpsc;

/// The shape of the generated mesh.
#[derive(Clone, Copy)]
struct Mesh {
    services: usize,
    clients: usize,
    /// 1: every service and client in `bench`, no Sidecar; more: `bench0…`, a Sidecar in each.
    namespaces: usize,
    /// Endpoint changes wait for the debounce like config (Pilot's default), or not.
    eds_debounce: bool,
}

impl Mesh {
    fn namespace(&self, index: usize) -> String {
        if self.namespaces <= 1 {
            "bench".to_string()
        } else {
            format!("bench{}", index % self.namespaces)
        }
    }

    /// Clients whose proxies hold svc0 (all of them without scoping).
    fn clients_seeing_svc0(&self) -> usize {
        (0..self.clients).filter(|index| self.namespace(*index) == self.namespace(0)).count()
    }
}

/// Writes `text` to `file` unless it holds that already: a change touches only the objects it
/// changes, as one watch event per object would on Kubernetes.
fn write_if_changed(file: &Path, text: &str) {
    if std::fs::read_to_string(file).ok().as_deref() != Some(text) {
        std::fs::write(file, text).expect("write config");
    }
}

/// Writes the mesh, one object per file: `services` ServiceEntries with two endpoints each
/// (their last octet `endpoint_suffix`, except `moved`'s, which is `moved_suffix`), svc0's
/// VirtualService splitting `weight`/`100 - weight` between its subsets, and with namespaces a
/// Sidecar per namespace.
fn write_config(dir: &Path, mesh: Mesh, (endpoint_suffix, moved, moved_suffix): (u8, usize, u8), weight: u32) {
    for index in 0..mesh.services {
        let endpoint_suffix = if index == moved { moved_suffix } else { endpoint_suffix };
        let namespace = mesh.namespace(index);
        let text = format!(
            "---\napiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {{name: svc{index}, namespace: {namespace}}}\nspec:\n  hosts: [svc{index}.{namespace}.svc.cluster.local]\n  addresses: [10.{}.{}.1]\n  ports: [{{number: {}, name: http, protocol: HTTP}}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints:\n  - {{address: 10.200.{}.{endpoint_suffix}, labels: {{version: v1}}}}\n  - {{address: 10.201.{}.{endpoint_suffix}, labels: {{version: v2}}}}\n",
            index / 250, index % 250, 8000 + (index % 20), index % 250, index % 250
        );
        write_if_changed(&dir.join(format!("svc{index}.yaml")), &text);
    }
    if mesh.namespaces > 1 {
        for index in 0..mesh.namespaces {
            let text = format!(
                "---\napiVersion: networking.istio.io/v1alpha3\nkind: Sidecar\nmetadata: {{name: default, namespace: {}}}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n",
                mesh.namespace(index)
            );
            write_if_changed(&dir.join(format!("sidecar{index}.yaml")), &text);
        }
    }
    let namespace = mesh.namespace(0);
    let host = format!("svc0.{namespace}.svc.cluster.local");
    let vs = format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {{name: svc0, namespace: {namespace}}}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: {host}, subset: v1}}\n      weight: {weight}\n    - destination: {{host: {host}, subset: v2}}\n      weight: {}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {{name: svc0, namespace: {namespace}}}\nspec:\n  host: {host}\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n",
        100 - weight
    );
    write_if_changed(&dir.join("rules.yaml"), &vs);
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resource names a simulated sidecar subscribes to, and their encoding as the
/// `resource_names` fields of a request.
#[derive(Default, PartialEq)]
struct Names {
    list: Vec<String>,
    encoded: bytes::Bytes,
}

impl Names {
    fn new(list: Vec<String>) -> Names {
        let encoded = DiscoveryRequest { resource_names: list.clone(), ..Default::default() }.encode_to_vec();
        Names { list, encoded: encoded.into() }
    }
}

/// Names decoded from one CDS or LDS response version, shared by every simulated client: the
/// responses are identical for these sidecars, and decoding them, and encoding the names into
/// each ACK, 2000 times would measure the benchmark's own CPU use on this machine rather than
/// Pilot's (a real proxy does this work on its own machine).
type DecodedNames = Arc<std::sync::Mutex<HashMap<(&'static str, String, String), Arc<Names>>>>;

fn decoded_names(
    cache: &DecodedNames,
    (kind, version, namespace): (&'static str, &str, &str),
    decode: impl FnOnce() -> Vec<String>,
) -> Arc<Names> {
    let key = (kind, version.to_string(), namespace.to_string());
    if let Some(found) = istio_runtime::sync::lock(cache).get(&key) {
        return found.clone();
    }
    let names = Arc::new(Names::new(decode()));
    istio_runtime::sync::lock(cache).insert(key, names.clone());
    names
}

/// The simulated sidecars' side of the ADS stream: requests go out already encoded (their
/// names' encoding is shared, see `Names`), responses are decoded as Envoy's.
#[derive(Clone, Copy)]
struct AdsCodec;

struct EncodedRequest;
struct ResponseDecoder;

impl tonic::codec::Codec for AdsCodec {
    type Encode = bytes::Bytes;
    type Decode = DiscoveryResponse;
    type Encoder = EncodedRequest;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> EncodedRequest {
        EncodedRequest
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for EncodedRequest {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: bytes::Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = DiscoveryResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<DiscoveryResponse>, tonic::Status> {
        DiscoveryResponse::decode(src).map(Some).map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

/// One simulated sidecar. Reports (client, version) each time all four types are ACKed at a
/// version.
async fn client(
    index: usize,
    namespace: String,
    address: String,
    converged: mpsc::UnboundedSender<(usize, u64)>,
    decoded: DecodedNames,
    dialing: Arc<tokio::sync::Semaphore>,
) {
    // Dial at most a listen backlog's worth at once: thousands of simultaneous SYNs overflow the
    // kernel's accept queue and measure its retransmit backoff instead of Pilot.
    let permit = dialing.acquire_owned().await;
    let channel = loop {
        let endpoint = tonic::transport::Endpoint::from_shared(address.clone()).expect("Pilot's address");
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    drop(permit);
    let mut ads = tonic::client::Grpc::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let (requests, receiver) = mpsc::unbounded_channel::<bytes::Bytes>();
    let node = Node {
        id: format!(
            "sidecar~10.99.{}.{}~client{index}.{namespace}~{namespace}.svc.cluster.local",
            index / 250,
            index % 250
        ),
        ..Default::default()
    };
    // A request: its own fields, then the names' shared encoding (fields may come in any order).
    let request = |type_url: &str, names: &Names, version: &str, nonce: &str, node: Option<Node>| {
        let mut encoded = DiscoveryRequest {
            type_url: type_url.to_string(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            node,
            ..Default::default()
        }
        .encode_to_vec();
        encoded.extend_from_slice(&names.encoded);
        bytes::Bytes::from(encoded)
    };
    let no_names = Arc::new(Names::default());
    let _ = requests.send(request(type_url::CLUSTER, &no_names, "", "", Some(node)));
    let _ = requests.send(request(type_url::LISTENER, &no_names, "", "", None));
    if ads.ready().await.is_err() {
        return;
    }
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let outgoing = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver));
    let Ok(response) = ads.streaming(outgoing, path, AdsCodec).await else {
        return;
    };
    let mut stream = response.into_inner();
    let mut acked: HashMap<&'static str, u64> = HashMap::new();
    let mut eds_names = no_names.clone();
    let mut rds_names = no_names.clone();
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
        let names = match kind {
            type_url::ENDPOINT => &eds_names,
            type_url::ROUTE => &rds_names,
            _ => &no_names,
        };
        let _ = requests.send(request(kind, names, &response.version_info, &response.nonce, None));
        last_nonce.insert(kind, response.nonce.clone());
        acked.insert(kind, version);
        if kind == type_url::CLUSTER {
            let names = decoded_names(&decoded, (type_url::CLUSTER, &response.version_info, &namespace), || {
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
            if names.list != eds_names.list {
                eds_names = names;
                let nonce = last_nonce.get(type_url::ENDPOINT).cloned().unwrap_or_default();
                let _ = requests.send(request(type_url::ENDPOINT, &eds_names, "", &nonce, None));
            }
        }
        if kind == type_url::LISTENER {
            let names = decoded_names(&decoded, (type_url::LISTENER, &response.version_info, &namespace), || {
                response
                    .resources
                    .iter()
                    .filter_map(|any| Listener::decode(any.value.as_slice()).ok())
                    .filter_map(|listener| listener.name.strip_prefix("0.0.0.0_").map(str::to_string))
                    .filter(|port| port.parse::<u32>().is_ok_and(|p| (8000..9000).contains(&p)))
                    .collect()
            });
            if names.list != rds_names.list {
                rds_names = names;
                let nonce = last_nonce.get(type_url::ROUTE).cloned().unwrap_or_default();
                let _ = requests.send(request(type_url::ROUTE, &rds_names, "", &nonce, None));
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

/// Waits until `expected` clients have ACKed a response of `version` (or later), then a quiet
/// second for any further responses of that version; each client's latency is its last such ACK.
async fn wait_all(
    receiver: &mut mpsc::UnboundedReceiver<(usize, u64)>,
    expected: usize,
    version: u64,
    started: Instant,
) -> Vec<Duration> {
    let mut done: HashMap<usize, Duration> = HashMap::new();
    loop {
        let wait = if done.len() < expected { Duration::from_secs(600) } else { Duration::from_secs(1) };
        match tokio::time::timeout(wait, receiver.recv()).await {
            Ok(Some((index, reached))) if reached >= version => {
                done.insert(index, started.elapsed());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) if done.len() >= expected => break,
            Ok(None) | Err(_) => panic!("only {} of {expected} clients converged on version {version}", done.len()),
        }
    }
    let mut latencies: Vec<Duration> = done.into_values().collect();
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

/// Pilot's user and system CPU time so far, in seconds (`/proc` counts in USER_HZ, 100 a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    rss_mib: f64,
    cpu_seconds: f64,
}

impl Phase {
    /// `cpu_before`: Pilot's and this process's (the simulated proxies') CPU seconds when the
    /// phase began.
    fn measure(name: &'static str, latencies: Vec<Duration>, pid: u32, cpu_before: (f64, f64)) -> Phase {
        let phase = Phase { name, latencies, rss_mib: rss_mib(pid), cpu_seconds: cpu_seconds(pid) - cpu_before.0 };
        let clients_cpu = cpu_seconds(std::process::id()) - cpu_before.1;
        println!(
            "{:<18} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms   pilot RSS {:>7.1} MiB   pilot CPU {:>6.2} s   proxies' CPU {:>6.2} s   ({} proxies)",
            phase.name,
            phase.p(50).as_secs_f64() * 1000.0,
            phase.p(99).as_secs_f64() * 1000.0,
            phase.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            phase.rss_mib,
            phase.cpu_seconds,
            clients_cpu,
            phase.latencies.len(),
        );
        phase
    }

    fn p(&self, percent: usize) -> Duration {
        percentile(&self.latencies, percent)
    }
}

/// `perf record` of Pilot for one phase, when `XDS_SCALE_PERF` names a directory; the
/// recording stops when this is dropped.
struct PhaseProfile(Option<Child>);

impl PhaseProfile {
    async fn start(phase: &str, pid: u32) -> PhaseProfile {
        let Some(dir) = std::env::var_os("XDS_SCALE_PERF") else { return PhaseProfile(None) };
        let output = Path::new(&dir).join(format!("{}.data", phase.replace(' ', "-")));
        let recorder = Command::new("perf")
            .args(["record", "-q", "-F", "999", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("XDS_SCALE_PERF needs perf");
        // perf attaches to the process's threads before it samples.
        tokio::time::sleep(Duration::from_millis(300)).await;
        PhaseProfile(Some(recorder))
    }
}

impl Drop for PhaseProfile {
    fn drop(&mut self) {
        if let Some(mut recorder) = self.0.take() {
            // SIGINT: perf writes its file and exits.
            let _ = Command::new("kill").args(["-INT", &recorder.id().to_string()]).status();
            let _ = recorder.wait();
        }
    }
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

/// Runs every phase on one mesh; returns the phases' figures.
async fn run(mesh: Mesh) -> Vec<Phase> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), mesh, (1, 0, 1), 50);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    // XDS_SCALE_PILOT_LOG=FILE keeps Pilot's info log, to see where a phase's time went.
    let pilot_log = std::env::var_os("XDS_SCALE_PILOT_LOG")
        .map(|path| std::fs::File::create(&path).expect("create the Pilot log file"));
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
            .env("RUST_LOG", if pilot_log.is_some() { "info" } else { "warn" })
            .env("PILOT_ENABLE_EDS_DEBOUNCE", mesh.eds_debounce.to_string())
            .stdout(Stdio::null())
            .stderr(pilot_log.map_or_else(Stdio::inherit, Stdio::from))
            .spawn()
            .expect("start pilot"),
    );
    let pid = pilot.0.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_at_start = rss_mib(pid);
    println!(
        "pilot xDS scale: {} services x {} sidecars, {}{} (pilot RSS at start {:.1} MiB)",
        mesh.services,
        mesh.clients,
        if mesh.namespaces > 1 {
            format!("{} namespaces, a Sidecar in each", mesh.namespaces)
        } else {
            "one namespace, no Sidecar".to_string()
        },
        if mesh.eds_debounce { "" } else { ", PILOT_ENABLE_EDS_DEBOUNCE=false" },
        rss_at_start
    );
    let (converged, mut reports) = mpsc::unbounded_channel();
    let address = Arc::new(format!("http://127.0.0.1:{port}"));
    let decoded: DecodedNames = Arc::default();
    let dialing = Arc::new(tokio::sync::Semaphore::new(100));
    let mut phases = Vec::new();
    let profile = PhaseProfile::start("connect storm", pid).await;
    let cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let started = Instant::now();
    let mut clients = Vec::new();
    for index in 0..mesh.clients {
        clients.push(tokio::spawn(client(
            index,
            mesh.namespace(index),
            address.to_string(),
            converged.clone(),
            decoded.clone(),
            dialing.clone(),
        )));
    }
    let storm = wait_all(&mut reports, mesh.clients, 1, started).await;
    phases.push(Phase::measure("connect storm", storm, pid, cpu));
    drop(profile);
    let per_proxy_kib = (rss_mib(pid) - rss_at_start) * 1024.0 / mesh.clients as f64;
    println!("{:<18} {per_proxy_kib:.0} KiB of Pilot's memory per connected proxy", "");

    let profile = PhaseProfile::start("config change", pid).await;
    let cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let changed = Instant::now();
    write_config(dir.path(), mesh, (1, 0, 1), 20);
    let config = wait_all(&mut reports, mesh.clients_seeing_svc0(), 2, changed).await;
    phases.push(Phase::measure("config change", config, pid, cpu));
    drop(profile);

    let profile = PhaseProfile::start("endpoint change", pid).await;
    let cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let changed = Instant::now();
    write_config(dir.path(), mesh, (1, 0, 2), 20);
    let endpoints = wait_all(&mut reports, mesh.clients_seeing_svc0(), 3, changed).await;
    phases.push(Phase::measure("endpoint change", endpoints, pid, cpu));
    drop(profile);

    let profile = PhaseProfile::start("all endpoints", pid).await;
    let cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let changed = Instant::now();
    write_config(dir.path(), mesh, (3, 0, 3), 20);
    let all_endpoints = wait_all(&mut reports, mesh.clients, 4, changed).await;
    phases.push(Phase::measure("all endpoints", all_endpoints, pid, cpu));
    drop(profile);
    clients.iter().for_each(tokio::task::JoinHandle::abort);
    drop(pilot);
    phases
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("xds_scale: run with `cargo bench -p pilot --bench xds_scale -- --services N --clients M`");
        return;
    }
    let clients = arg(&args, "--clients", 2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if !args.iter().any(|a| a == "--sweep") {
        let mesh = Mesh {
            services: arg(&args, "--services", 1000),
            clients,
            namespaces: arg(&args, "--namespaces", 1),
            eds_debounce: !args.iter().any(|a| a == "--no-eds-debounce"),
        };
        runtime.block_on(run(mesh));
        return;
    }
    // The sweep: how each figure grows with the mesh, unscoped and with namespace isolation.
    let mut rows = Vec::new();
    for namespaces in [1, 10] {
        for services in [10, 250, 500, 1000, 2000] {
            let phases = runtime.block_on(run(Mesh { services, clients, namespaces, eds_debounce: true }));
            rows.push((services, namespaces, phases));
        }
    }
    println!("\nsweep, {clients} sidecars: p99 in ms (pilot CPU s) per phase, pilot RSS after the run");
    println!(
        "{:>8} {:>10} {:>16} {:>16} {:>16} {:>16} {:>9}",
        "services", "namespaces", "storm", "config change", "endpoint change", "all endpoints", "RSS MiB"
    );
    for (services, namespaces, phases) in &rows {
        let cell = |phase: &Phase| format!("{:.0} ({:.1})", phase.p(99).as_secs_f64() * 1000.0, phase.cpu_seconds);
        let cells: Vec<String> = phases.iter().map(cell).collect();
        println!(
            "{services:>8} {namespaces:>10} {:>16} {:>16} {:>16} {:>16} {:>9.0}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            phases.last().map_or(0.0, |phase| phase.rss_mib)
        );
    }
}
