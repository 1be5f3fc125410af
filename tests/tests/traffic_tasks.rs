//! The Istio 1.4 traffic-management tasks, step by step as the docs give them, with the
//! samples' YAML, on the local platform — once with the built-in proxy as every sidecar and
//! gateway, once with a stock Envoy. One demo installation serves all of a plane's tasks; the
//! routing config is reset between tasks. Each task checks what the docs say one should see.
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use e2e::local::{sample, stars, LocalMesh, Plane};
use e2e::pod_prerequisites_missing;

/// One installation on the host at a time.
static HOST: Mutex<()> = Mutex::new(());

type Task = fn(&LocalMesh);

const TASKS: [(&str, Task); 11] = [
    ("request routing", request_routing),
    ("fault injection", fault_injection),
    ("traffic shifting", traffic_shifting),
    ("TCP traffic shifting", tcp_traffic_shifting),
    ("request timeouts", request_timeouts),
    ("circuit breaking", circuit_breaking),
    ("ingress gateway", ingress_gateway),
    ("secure gateway", secure_gateway),
    ("mirroring", mirroring),
    ("outlier detection and retries", outlier_detection_and_retries),
    ("egress", egress),
];

fn networking(file: &str) -> std::path::PathBuf {
    sample(&format!("bookinfo/networking/{file}"))
}

/// Back to the demo's starting point: the Bookinfo gateway and destination rules only.
fn reset(mesh: &LocalMesh) {
    for name in mesh.names("virtualservices") {
        if name != "bookinfo" {
            mesh.delete("virtualservices", &name);
        }
    }
    for name in mesh.names("gateways") {
        if name != "bookinfo-gateway" {
            mesh.delete("gateways", &name);
        }
    }
    for name in ["tcp-echo-destination", "httpbin"] {
        mesh.delete("destinationrules", name);
    }
    mesh.delete("deployments", "ratings-v1-unavailable");
    mesh.apply(&networking("destination-rule-all.yaml"));
    for name in mesh.names("serviceentries") {
        mesh.delete("serviceentries", &name);
    }
    mesh.delete("destinationrules", "egressgateway-for-cnn");
    set_outbound_traffic_policy(mesh, "ALLOW_ANY");
}

/// The egress task's step: the `istio` ConfigMap's mesh config with another
/// `outboundTrafficPolicy` mode, replaced as `kubectl get … | sed … | kubectl replace` does.
fn set_outbound_traffic_policy(mesh: &LocalMesh, mode: &str) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "yaml"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let other = if mode == "ALLOW_ANY" { "REGISTRY_ONLY" } else { "ALLOW_ANY" };
    assert!(config_map.contains("mode: "), "no outboundTrafficPolicy mode in the mesh config:\n{config_map}");
    if config_map.contains(&format!("mode: {other}")) {
        mesh.apply_yaml(&config_map.replace(&format!("mode: {other}"), &format!("mode: {mode}")));
    }
}

fn run_tasks(plane: Plane) {
    let _host = HOST.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(reason) = pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = LocalMesh::demo(plane);
    let mut failures = Vec::new();
    let only = std::env::var("ISTIO_TASKS").unwrap_or_default();
    let selected = |name: &str| only.is_empty() || only.split(',').any(|part| name.contains(part));
    for (name, task) in TASKS.into_iter().filter(|(name, _)| selected(name)) {
        reset(&mesh);
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| task(&mesh)));
        eprintln!(
            "{plane:?}: {name}: {} in {:.1?}",
            if outcome.is_ok() { "passed" } else { "FAILED" },
            started.elapsed()
        );
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{plane:?}: {} task(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn traffic_tasks_with_the_builtin_proxy() {
    run_tasks(Plane::Builtin);
}

#[test]
#[ignore = "needs root, iproute2, iptables and Envoy; run by ./test.sh"]
fn traffic_tasks_with_envoy() {
    run_tasks(Plane::Envoy);
}

/// Request routing: all-v1 gives every user a page without stars; reviews-test-v2 sends jason
/// to v2 (black stars) and everyone else still to v1.
fn request_routing(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-all-v1.yaml"));
    mesh.settle(None, "all-v1", 10, |_, page| stars(page) == (0, 0) && page.contains("Reviewer1"));
    mesh.apply(&networking("virtual-service-reviews-test-v2.yaml"));
    let jason = mesh.login("jason");
    mesh.settle(Some(&jason), "jason on reviews-test-v2", 10, |_, page| stars(page) == (0, 2));
    mesh.settle(None, "others on reviews-test-v2", 10, |_, page| stars(page) == (0, 0));
}

/// Fault injection: a 7 s delay on ratings for jason makes productpage give up on reviews
/// after its two 3 s tries (about 6 s); an abort makes reviews show that ratings is
/// unavailable; other users are not affected.
fn fault_injection(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-all-v1.yaml"));
    mesh.apply(&networking("virtual-service-reviews-test-v2.yaml"));
    mesh.apply(&networking("virtual-service-ratings-test-delay.yaml"));
    let jason = mesh.login("jason");
    mesh.settle(Some(&jason), "jason with the 7 s delay", 1, |elapsed, page| {
        page.contains("Error fetching product reviews!")
            && (Duration::from_millis(5500)..Duration::from_secs(9)).contains(&elapsed)
    });
    mesh.settle(None, "others with the delay", 3, |elapsed, page| {
        stars(page) == (0, 0) && page.contains("Reviewer1") && elapsed < Duration::from_secs(2)
    });
    mesh.apply(&networking("virtual-service-ratings-test-abort.yaml"));
    mesh.settle(Some(&jason), "jason with the abort", 5, |_, page| {
        page.matches("Ratings service is currently unavailable").count() == 2
    });
    mesh.settle(None, "others with the abort", 5, |_, page| stars(page) == (0, 0) && page.contains("Reviewer1"));
}

/// Traffic shifting: 50/50 between v1 and v3 gives about half red pages (between 30 and 70
/// of 100), then v3 alone gives red stars every time.
fn traffic_shifting(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-all-v1.yaml"));
    mesh.settle(None, "all-v1", 5, |_, page| stars(page) == (0, 0));
    mesh.apply(&networking("virtual-service-reviews-50-v3.yaml"));
    mesh.settle(None, "the first red page", 1, |_, page| stars(page) == (2, 0));
    let red = (0..100).filter(|_| stars(&mesh.page(None).1) == (2, 0)).count();
    assert!((30..=70).contains(&red), "{red} of 100 pages were red with reviews-50-v3");
    mesh.apply(&networking("virtual-service-reviews-v3.yaml"));
    mesh.settle(None, "reviews-v3", 20, |_, page| stars(page) == (2, 0));
}

/// TCP traffic shifting: tcp-echo behind the gateway's port 31400, all to v1 (`one …`), then
/// 20 % to v2 (`two …`, between 8 and 35 of 100 connections).
fn tcp_traffic_shifting(mesh: &LocalMesh) {
    mesh.apply(&sample("tcp-echo/tcp-echo-services.yaml"));
    mesh.wait_ready("tcp-echo", "default", 2);
    mesh.apply(&sample("tcp-echo/tcp-echo-all-v1.yaml"));
    let address = format!("{}:31400", mesh.gateway_ip());
    let echo = |line: &str| tcp_echo(&address, line);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        if echo("hello").as_deref() == Some("one hello") {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            assert!(std::time::Instant::now() < deadline, "tcp-echo-all-v1 never settled on v1");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    mesh.apply(&sample("tcp-echo/tcp-echo-20-v2.yaml"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while echo("hello").as_deref() != Some("two hello") {
        assert!(std::time::Instant::now() < deadline, "no connection reached v2 after tcp-echo-20-v2");
        std::thread::sleep(Duration::from_millis(100));
    }
    let replies: Vec<Option<String>> = (0..100).map(|i| echo(&format!("message {i}"))).collect();
    let two = replies.iter().filter(|reply| reply.as_deref().is_some_and(|r| r.starts_with("two "))).count();
    let one = replies.iter().filter(|reply| reply.as_deref().is_some_and(|r| r.starts_with("one "))).count();
    assert_eq!(one + two, 100, "every connection was answered: {replies:?}");
    assert!((8..=35).contains(&two), "{two} of 100 connections went to v2 with tcp-echo-20-v2");
}

/// Request timeouts: reviews to v2 with ratings delayed 2 s makes the page slow but complete
/// (black stars); a 0.5 s timeout on reviews makes it come back in about a second without
/// reviews (two 0.5 s tries).
fn request_timeouts(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-all-v1.yaml"));
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
",
    );
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - fault:
      delay:
        percent: 100
        fixedDelay: 2s
    route:
    - destination:
        host: ratings
        subset: v1
",
    );
    mesh.settle(None, "ratings delayed 2 s", 2, |elapsed, page| {
        stars(page) == (0, 2) && (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&elapsed)
    });
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
",
    );
    mesh.settle(None, "reviews timeout 0.5 s", 3, |elapsed, page| {
        page.contains("Sorry, product reviews are currently unavailable for this book.")
            && (Duration::from_millis(900)..Duration::from_millis(1900)).contains(&elapsed)
    });
}

/// Circuit breaking: httpbin with one connection, one pending request and one request per
/// connection; `hey` with three concurrent clients in the sleep pod gets some 503s, and the
/// sleep sidecar's `upstream_rq_pending_overflow` for httpbin is above zero.
fn circuit_breaking(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    mesh.wait_ready("sleep", "default", 1);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
",
    );
    // Settle: a single request gets through once the rule is everywhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mesh.exec(
        "sleep",
        "sleep",
        &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://httpbin:8000/get"],
    ) != "200"
    {
        assert!(std::time::Instant::now() < deadline, "sleep never reached httpbin");
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (ok, tripped) = loop {
        let report = mesh.exec("sleep", "sleep", &["hey", "-c", "3", "-n", "30", "http://httpbin:8000/get"]);
        let count = |code: &str| -> usize {
            report
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("[{code}]")))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let (ok, tripped) = (count("200"), count("503"));
        if tripped > 0 || std::time::Instant::now() > deadline {
            break (ok, tripped);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ok > 0 && tripped > 0, "{ok} answered and {tripped} were refused with 503");
    let overflow = mesh
        .proxy_stat("sleep", "cluster.outbound|8000||httpbin.default.svc.cluster.local.upstream_rq_pending_overflow");
    assert!(overflow > 0, "upstream_rq_pending_overflow is {overflow}");
}

/// Ingress gateways: httpbin behind a Gateway for `httpbin.example.com` with a VirtualService
/// for `/status` and `/delay`: `/status/200` answers 200 through the gateway, `/headers` 404.
fn ingress_gateway(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway # use Istio default gateway implementation
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"httpbin.example.com\"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - \"httpbin.example.com\"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
",
    );
    let get = |path: &str| e2e::http_request(&mesh.gateway, "GET", path, &[("host", "httpbin.example.com")], "").0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get("/status/200") != 200 {
        assert!(std::time::Instant::now() < deadline, "/status/200 through the gateway never answered 200");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get("/status/418"), 418);
    assert_eq!(get("/headers"), 404, "only /status and /delay are routed");
}

/// The httpbin Gateway of the secure-gateway task: HTTPS on 443 with the certificate files the
/// `istio-ingressgateway-certs` Secret mounts; MUTUAL adds the client CA from
/// `istio-ingressgateway-ca-certs`.
fn secure_httpbin_gateway(mode: &str) -> String {
    let ca = if mode == "MUTUAL" {
        "      caCertificates: /etc/istio/ingressgateway-ca-certs/ca-chain.cert.pem\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: {mode}
      serverCertificate: /etc/istio/ingressgateway-certs/tls.crt
      privateKey: /etc/istio/ingressgateway-certs/tls.key
{ca}    hosts:
    - \"httpbin.example.com\"
"
    )
}

/// Secure gateways (file mount): the server certificate as the `istio-ingressgateway-certs`
/// Secret, which appears in the running gateway; SIMPLE TLS answers `/status/418` over HTTP/2
/// for a client that trusts the CA; MUTUAL refuses a client without a certificate and
/// answers one with a certificate from the CA in `istio-ingressgateway-ca-certs`.
fn secure_gateway(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    let ca_chain = ca.write_root(dir.path(), "ca-chain.cert.pem");
    let server = ca.issue_files(dir.path(), "httpbin.example.com", &["httpbin.example.com"]);
    let client = ca.issue_files(dir.path(), "httpbin-client.example.com", &["httpbin-client.example.com"]);
    let path = |path: &std::path::Path| path.display().to_string();
    let create_secret = |args: &[&str]| {
        let mut command = vec!["x", "local", "create", "-n", "istio-system", "secret"];
        command.extend(args);
        let (code, out, err) = mesh.istioctl(&command);
        // The Secrets outlive a task; a second run finds them there.
        assert!(code == 0 || err.contains("AlreadyExists"), "{args:?}: {out}{err}");
    };
    // Each run brings its own CA, so an earlier run's Secrets go first.
    for name in ["istio-ingressgateway-certs", "istio-ingressgateway-ca-certs"] {
        mesh.delete_in("istio-system", "secrets", name);
    }
    create_secret(&["tls", "istio-ingressgateway-certs", "--key", &path(&server.key), "--cert", &path(&server.cert)]);
    let mounted = |dir: &str, file: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, out, _) = mesh.istioctl(&[
                "x",
                "local",
                "exec",
                "-n",
                "istio-system",
                "istio-ingressgateway",
                "-c",
                "istio-proxy",
                "--",
                "ls",
                dir,
            ]);
            if out.lines().any(|line| line == file) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{file} never appeared in the gateway's {dir}: {out}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    mounted("/etc/istio/ingressgateway-certs", "tls.key");
    mesh.apply_yaml(&secure_httpbin_gateway("SIMPLE"));
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - \"httpbin.example.com\"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
",
    );
    let gateway_ip = mesh.gateway_ip();
    let curl = |client_cert: bool| {
        let resolve = format!("httpbin.example.com:443:{gateway_ip}");
        let ca_chain = path(&ca_chain);
        let (cert, key) = (path(&client.cert), path(&client.key));
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} HTTP/%{http_version}",
            "--max-time",
            "5",
            "--resolve",
            &resolve,
            "--cacert",
            &ca_chain,
        ];
        if client_cert {
            args.extend(["--cert", &cert, "--key", &key]);
        }
        args.push("https://httpbin.example.com/status/418");
        let output = std::process::Command::new("curl").args(&args).output().expect("run curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let settle = |client_cert: bool, expected: &str, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = curl(client_cert);
            if answer == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: curl gave {answer:?}, not {expected:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    settle(false, "418 HTTP/2", "SIMPLE TLS");

    create_secret(&["generic", "istio-ingressgateway-ca-certs", &format!("--from-file={}", path(&ca_chain))]);
    mounted("/etc/istio/ingressgateway-ca-certs", "ca-chain.cert.pem");
    mesh.apply_yaml(&secure_httpbin_gateway("MUTUAL"));
    settle(false, "000 HTTP/0", "MUTUAL without a client certificate");
    settle(true, "418 HTTP/2", "MUTUAL with a client certificate");
    assert_eq!(curl(false), "000 HTTP/0", "without a client certificate the handshake still fails");
}

/// Mirroring: httpbin v1 and v2, everything to v1, then mirrored to v2: the answers still come
/// from v1, and v2's log shows the mirrored requests.
fn mirroring(mesh: &LocalMesh) {
    let deployment = |version: &str| {
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin-{version}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: httpbin
      version: {version}
  template:
    metadata:
      labels:
        app: httpbin
        version: {version}
    spec:
      containers:
      - image: docker.io/kennethreitz/httpbin
        imagePullPolicy: IfNotPresent
        name: httpbin
        command: [\"gunicorn\", \"--access-logfile\", \"-\", \"-b\", \"0.0.0.0:80\", \"httpbin:app\"]
        ports:
        - containerPort: 80
"
        )
    };
    // The task's own httpbin: two versions behind the Service (not the sample's Deployment).
    mesh.delete("deployments", "httpbin");
    mesh.apply_yaml(&deployment("v1"));
    mesh.apply_yaml(&deployment("v2"));
    mesh.apply_yaml(
        "apiVersion: v1
kind: Service
metadata:
  name: httpbin
  labels:
    app: httpbin
spec:
  ports:
  - name: http
    port: 8000
    targetPort: 80
  selector:
    app: httpbin
",
    );
    mesh.apply(&sample("sleep/sleep.yaml"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while mesh.pods().iter().filter(|pod| pod["metadata"]["labels"]["app"] == "httpbin").count() != 2 {
        assert!(std::time::Instant::now() < deadline, "the sample's httpbin pod did not go");
        std::thread::sleep(Duration::from_millis(300));
    }
    mesh.wait_ready("httpbin", "default", 2);
    mesh.wait_ready("sleep", "default", 1);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
",
    );
    let curl = || {
        mesh.exec(
            "sleep",
            "sleep",
            &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://httpbin:8000/headers"],
        )
    };
    let logs = |version: &str| {
        let (_, out, _) = mesh.istioctl(&["x", "local", "logs", &format!("httpbin-{version}"), "-c", "httpbin"]);
        out.matches("GET /headers").count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while curl() != "200" {
        assert!(std::time::Instant::now() < deadline, "sleep never reached httpbin");
        std::thread::sleep(Duration::from_millis(300));
    }
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let before_v2 = logs("v2");
    loop {
        assert_eq!(curl(), "200");
        std::thread::sleep(Duration::from_millis(300));
        if logs("v2") > before_v2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "v2 never saw a mirrored request");
    }
    // Every request now reaches v1 and, mirrored, v2.
    let (v1, v2) = (logs("v1"), logs("v2"));
    for _ in 0..5 {
        assert_eq!(curl(), "200");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(logs("v1") - v1, 5, "the answers come from v1");
    assert!(logs("v2") - v2 >= 4, "v2 sees the mirrored requests");
}

/// Outlier detection and retries: a second ratings v1 endpoint that always answers 503
/// (`SERVICE_VERSION=v-unavailable`). Without retries about half the calls fail; with retries
/// (on gateway errors, never the same host twice) none do; with outlier detection and no
/// retries, the failing endpoint is ejected after its first 503 and every call succeeds.
fn outlier_detection_and_retries(mesh: &LocalMesh) {
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.apply_yaml(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: ratings-v1-unavailable
  labels:
    app: ratings
    version: v1
spec:
  replicas: 1
  selector:
    matchLabels:
      app: ratings
      version: v1
      variant: unavailable
  template:
    metadata:
      labels:
        app: ratings
        version: v1
        variant: unavailable
    spec:
      serviceAccountName: bookinfo-ratings
      containers:
      - name: ratings
        image: docker.io/istio/examples-bookinfo-ratings-v1:1.15.0
        imagePullPolicy: IfNotPresent
        env:
        - name: SERVICE_VERSION
          value: v-unavailable
        ports:
        - containerPort: 9080
",
    );
    mesh.wait_ready("sleep", "default", 1);
    mesh.wait_ready("ratings", "default", 2);
    let ratings_vs = |retries: &str| {
        format!(
            "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
    retries:
{retries}"
        )
    };
    let call = || {
        mesh.exec(
            "sleep",
            "sleep",
            &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://ratings:9080/ratings/0"],
        )
    };
    // Waits (up to a minute) until `streak` calls in a row answer 200.
    let settle_ok = |what: &str, streak: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < streak {
            let status = call();
            if status == "200" {
                seen += 1;
            } else {
                seen = 0;
                assert!(std::time::Instant::now() < deadline, "{what}: calls kept failing ({status})");
            }
        }
    };
    let cluster = "cluster.outbound|9080|v1|ratings.default.svc.cluster.local";

    // No retries: the failing endpoint shows.
    let without_retries = || {
        mesh.apply_yaml(&ratings_vs("      attempts: 0\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while call() != "503" {
            assert!(std::time::Instant::now() < deadline, "the 503 endpoint never answered without retries");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    without_retries();
    let failed = (0..20).filter(|_| call() == "503").count();
    assert!((3..=17).contains(&failed), "{failed} of 20 calls failed without retries; about half should");

    // Retries on gateway errors, never to the same host twice: every call succeeds.
    let retries_before = mesh.proxy_stat("sleep", &format!("{cluster}.upstream_rq_retry"));
    mesh.apply_yaml(&ratings_vs("      attempts: 3\n      perTryTimeout: 2s\n"));
    settle_ok("with retries", 20);
    let retries = mesh.proxy_stat("sleep", &format!("{cluster}.upstream_rq_retry")) - retries_before;
    assert!(retries > 0, "every call succeeded, yet upstream_rq_retry did not move");

    // No retries, outlier detection: one 503 ejects the endpoint; then every call succeeds.
    without_retries();
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  trafficPolicy:
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
",
    );
    settle_ok("with outlier detection", 30);
    let ejected = mesh.proxy_stat("sleep", &format!("{cluster}.outlier_detection.ejections_active"));
    assert_eq!(ejected, 1, "the 503 endpoint is ejected");
}

/// Egress: a server outside the mesh (its own network namespace, named `httpbin.org` and
/// `edition.cnn.com` by cluster DNS). ALLOW_ANY reaches it; REGISTRY_ONLY answers 502; a
/// ServiceEntry opens it again; a 3 s VirtualService timeout makes `/delay/5` a 504 after
/// about 3 s; and traffic for `edition.cnn.com` routed through the egress gateway shows in the
/// gateway's access log.
fn egress(mesh: &LocalMesh) {
    let outside = e2e::outside::OutsideHost::start();
    mesh.set_external_hosts(&format!("{} httpbin.org edition.cnn.com\n", e2e::outside::ADDRESS));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);
    let curl = |url: &str| {
        let (_, out, _) = mesh.try_exec(
            "sleep",
            "sleep",
            &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url],
        );
        out
    };
    let settle = |url: &str, expected: &str, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = curl(url);
            if status == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {url} gave {status:?}, not {expected}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    settle("http://httpbin.org/headers", "200", "ALLOW_ANY");
    assert!(outside.logged().iter().any(|line| line.contains("GET /headers")), "the outside server saw the request");

    set_outbound_traffic_policy(mesh, "REGISTRY_ONLY");
    settle("http://httpbin.org/headers", "502", "REGISTRY_ONLY");

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
",
    );
    settle("http://httpbin.org/headers", "200", "the httpbin.org ServiceEntry");

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin-ext
spec:
  hosts:
    - httpbin.org
  http:
  - timeout: 3s
    route:
      - destination:
          host: httpbin.org
        weight: 100
",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let started = std::time::Instant::now();
        let status = curl("http://httpbin.org/delay/5");
        let elapsed = started.elapsed();
        if status == "504" && (Duration::from_millis(2800)..Duration::from_millis(4500)).contains(&elapsed) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the 3 s timeout: {status} after {elapsed:?}");
    }

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
",
    );
    let gateway_log = || {
        let (_, out, _) =
            mesh.istioctl(&["x", "local", "logs", "-n", "istio-system", "istio-egressgateway", "-c", "istio-proxy"]);
        out.lines()
            .filter(|line| line.contains("GET /politics") && line.contains("outbound|80||edition.cnn.com"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The outside httpbin has no /politics: its 404 is the answer that came back.
        let status = curl("http://edition.cnn.com/politics");
        if status == "404" && gateway_log() > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edition.cnn.com through the egress gateway: {status}, {} gateway log lines",
            gateway_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    mesh.set_external_hosts("");
}

/// Sends a line over TCP and returns the first line of the answer.
fn tcp_echo(address: &str, line: &str) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}
