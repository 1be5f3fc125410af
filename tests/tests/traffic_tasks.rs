//! The Istio 1.4 traffic-management tasks, step by step as the docs give them, with the
//! samples' YAML, on the local platform — once with the built-in proxy as every sidecar and
//! gateway, once with a stock Envoy. One demo installation serves all of a plane's tasks; the
//! routing config is reset between tasks. Each task checks what the docs say one should see.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use e2e::local::{sample, stars, LocalMesh, Plane};
use e2e::pod_prerequisites_missing;

/// One installation on the host at a time.
static HOST: Mutex<()> = Mutex::new(());

type Task = fn(&LocalMesh);

const TASKS: [(&str, Task); 8] = [
    ("request routing", request_routing),
    ("fault injection", fault_injection),
    ("traffic shifting", traffic_shifting),
    ("TCP traffic shifting", tcp_traffic_shifting),
    ("request timeouts", request_timeouts),
    ("circuit breaking", circuit_breaking),
    ("ingress gateway", ingress_gateway),
    ("mirroring", mirroring),
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
}

fn run_tasks(plane: Plane) {
    let _host = HOST.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(reason) = pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = LocalMesh::demo(plane);
    let mut failures = Vec::new();
    for (name, task) in TASKS {
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
    let exec = |command: &[&str]| {
        let mut args = vec!["x", "local", "exec", "sleep", "-c", command[0], "--"];
        args.extend(&command[1..]);
        let (code, out, err) = mesh.istioctl(&args);
        assert_eq!(code, 0, "{command:?}: {out}{err}");
        out
    };
    // Settle: a single request gets through once the rule is everywhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while exec(&["sleep", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://httpbin:8000/get"]) != "200" {
        assert!(std::time::Instant::now() < deadline, "sleep never reached httpbin");
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (ok, tripped) = loop {
        let report = exec(&["sleep", "hey", "-c", "3", "-n", "30", "http://httpbin:8000/get"]);
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
    let stats = exec(&["istio-proxy", "pilot-agent", "request", "GET", "stats"]);
    let overflow: u64 = stats
        .lines()
        .filter(|line| {
            line.starts_with("cluster.outbound|8000||httpbin.default.svc.cluster.local.upstream_rq_pending_overflow:")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
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
        let (code, out, err) = mesh.istioctl(&[
            "x",
            "local",
            "exec",
            "sleep",
            "-c",
            "sleep",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://httpbin:8000/headers",
        ]);
        assert_eq!(code, 0, "{err}");
        out
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
