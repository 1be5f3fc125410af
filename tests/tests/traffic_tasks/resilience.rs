//! Resilience tasks: circuit breaking, mirroring, outlier detection with retries.

use super::*;

/// Circuit breaking: httpbin with one connection, one pending request and one request per
/// connection; `hey` with three concurrent clients in the sleep pod gets some 503s, and the
/// sleep sidecar's `upstream_rq_pending_overflow` for httpbin is above zero.
pub(crate) fn circuit_breaking(mesh: &LocalMesh) {
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
    until("sleep reaching httpbin", Duration::from_secs(60), || {
        let curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://httpbin:8000/get"];
        expect(mesh.exec("sleep", "sleep", &curl).as_str(), "200")
    });
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
    // `istioctl x describe pod sleep --why` reads the sidecar's log and stats and says so.
    mesh.describe_why(
        "sleep",
        &[
            "503 UO (GET httpbin:8000/get): circuit breaker open (UO): outbound|8000||httpbin.default.svc.cluster.local had too many pending requests or connections",
            "upstream_rq_pending_overflow: ",
        ],
    );
}

/// Mirroring: httpbin v1 and v2, everything to v1, then mirrored to v2: the answers still come
/// from v1, and v2's log shows the mirrored requests.
pub(crate) fn mirroring(mesh: &LocalMesh) {
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
    until("the sample's httpbin pod going", Duration::from_secs(120), || {
        expect(mesh.pods().iter().filter(|pod| pod["metadata"]["labels"]["app"] == "httpbin").count(), 2)
    });
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
    until("sleep reaching httpbin", Duration::from_secs(60), || expect(curl().as_str(), "200"));
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
pub(crate) fn outlier_detection_and_retries(mesh: &LocalMesh) {
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
        until("the 503 endpoint without retries", Duration::from_secs(60), || expect(call().as_str(), "503"));
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
