//! The README's main command end to end, as root: `istioctl demo` brings the demo profile and
//! Bookinfo up on the local platform; the page comes through the ingress gateway with the
//! book, its details and reviews; jason can log in; every Bookinfo pod has a sidecar and the
//! sidecars' stats count the traffic between pods; Citadel's certificates are mounted in the
//! sidecars; the 1.4 networking samples change the
//! page as the Istio docs describe; proxy-status and proxy-config see the proxies; and
//! `istioctl demo --down` leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{http_get, http_request, pod_prerequisites_missing, run};
use serde_json::Value;

/// Tears the installation down if the test ends early.
struct Installation {
    root: tempfile::TempDir,
}

impl Installation {
    fn env(&self) -> [(&'static str, PathBuf); 1] {
        [("ISTIO_LOCAL_ROOT", self.root.path().join("local"))]
    }

    fn istioctl(&self, args: &[&str]) -> (i32, String, String) {
        let output = std::process::Command::new(e2e::binary("istioctl"))
            .args(args)
            .envs(self.env())
            .output()
            .unwrap_or_else(|error| panic!("cannot run istioctl: {error}"));
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A file in a pod's container: `x local exec POD -c CONTAINER -- cat PATH`.
    fn cat(&self, pod: &str, container: &str, path: &str) -> (i32, String, String) {
        self.istioctl(&["x", "local", "exec", pod, "-c", container, "--", "cat", path])
    }

    fn pods(&self) -> Vec<Value> {
        let (code, out, err) = self.istioctl(&["x", "local", "get", "pods", "-A", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(&out).expect("pod list JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        let _ = self.istioctl(&["uninstall"]);
    }
}

fn page(gateway: &str, cookie: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = cookie.map(|cookie| vec![("cookie", cookie)]).unwrap_or_default();
    let (status, _, body) = http_request(gateway, "GET", "/productpage", &headers, "");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `check` holds for five pages in a row (config takes a moment to reach every proxy;
/// a connection the config change drains may answer 503 meanwhile).
fn eventually_every_page(gateway: &str, cookie: Option<&str>, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let headers: Vec<(&str, &str)> = cookie.map(|cookie| vec![("cookie", cookie)]).unwrap_or_default();
    let mut streak = 0;
    while streak < 5 {
        let (status, _, body) = http_request(gateway, "GET", "/productpage", &headers, "");
        if status == 200 && check(&body) {
            streak += 1;
        } else {
            streak = 0;
            assert!(Instant::now() < deadline, "{what}: the page never settled ({status}):\n{body}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn stat(address: &str, line_prefix: &str) -> u64 {
    let (_, body) = http_get(address, "/stats/prometheus");
    body.lines()
        .filter(|line| line.starts_with(line_prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/networking").join(name).display().to_string()
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn demo_runs_bookinfo_through_sidecars_and_tears_down_cleanly() {
    if let Some(reason) = pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let installation = Installation { root: tempfile::tempdir().expect("tempdir") };
    // The README's command, in the foreground: it prints the URL and waits for Ctrl-C.
    let root = installation.env()[0].1.display().to_string();
    let demo = e2e::Process::start_with_env(
        &e2e::binary("istioctl"),
        &["demo", "--timeout", "4m"],
        &[("ISTIO_LOCAL_ROOT", root.as_str())],
    );
    let mut out = String::new();
    while !out.contains("Press Ctrl-C") {
        match demo.next_line(Duration::from_secs(240)) {
            Some(line) => {
                out.push_str(&line);
                out.push('\n');
            }
            None => panic!("istioctl demo did not come up:\n{out}\n{}", demo.stderr()),
        }
    }
    let url = out.lines().find_map(|line| line.trim().strip_prefix("http://")).expect("the demo prints its URL");
    let host = url.trim_end_matches("/productpage");
    let gateway = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    assert!(out.contains("istioctl proxy-status"), "next steps are printed:\n{out}");
    // They work as printed, from another shell in the same directory.
    let proxy_status = out.lines().find(|line| line.trim_end().ends_with("proxy-status")).expect("proxy-status step");
    let printed = std::process::Command::new("sh").args(["-c", proxy_status.trim()]).output().expect("sh runs");
    let table = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.status.success() && table.starts_with("NAME"),
        "{proxy_status}: {table}{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let sample_step = out.lines().find(|line| line.contains("virtual-service-all-v1.yaml")).expect("a sample step");
    let printed_sample =
        sample_step.split_whitespace().find(|word| word.ends_with("virtual-service-all-v1.yaml")).expect("a path");
    assert!(Path::new(printed_sample).is_file(), "{printed_sample} is not there from here");

    // The page, through the ingress gateway, styled by the installed Bootstrap 3.
    let body = page(&gateway, None);
    assert!(body.contains("<title>Simple Bookstore App</title>"));
    let (status, _, css) = http_request(&gateway, "GET", "/static/bootstrap/css/bootstrap.min.css", &[], "");
    assert_eq!(status, 200, "the page's stylesheet through the gateway");
    if Path::new("/usr/share/javascript/bootstrap/css/bootstrap.min.css").exists() {
        assert!(css.contains("Bootstrap v3"), "the installed Bootstrap, seen from the productpage pod");
    }
    assert!(body.contains("Book Details") && body.contains("<dt>Publisher:</dt>PublisherA"), "{body}");
    assert!(body.contains("Book Reviews") && body.contains("Reviewer1") && body.contains("Reviewer2"), "{body}");

    // Every Bookinfo pod has a sidecar and is ready; the gateways run without one.
    let pods = installation.pods();
    let bookinfo: Vec<&Value> = pods.iter().filter(|pod| pod["metadata"]["namespace"] == "default").collect();
    assert_eq!(bookinfo.len(), 6, "details, ratings, reviews v1-v3, productpage");
    for pod in &bookinfo {
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(names.contains(&"istio-proxy"), "{}: {names:?}", pod["metadata"]["name"]);
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "istio-init");
        assert!(pod["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    }
    // The analyzers find nothing wrong with the demo; a file merged over it is analysed with it.
    let (code, _, err) = installation.istioctl(&["x", "analyze", "-k", "-A"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("No validation issues found."), "{err}");
    let bogus_subset = installation.root.path().join("reviews-v9.yaml");
    std::fs::write(
        &bogus_subset,
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n",
    )
    .expect("write");
    let (code, out, err) = installation.istioctl(&["x", "analyze", "-k", &bogus_subset.display().to_string()]);
    assert_eq!(code, 79, "{out}{err}");
    assert_eq!(
        out.trim(),
        "Error [IST0101] (VirtualService reviews.default) Referenced host+subset in destinationrule not found: \"reviews+v9\""
    );

    // `istioctl x describe`: the pod's service, subsets, mutual TLS and how the gateway exposes it.
    let (code, out, err) = installation.istioctl(&["x", "describe", "pod", "productpage-v1"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "   Pod Ports: 9080 (productpage), 15090 (istio-proxy)\n--------------------\nService: productpage\n",
        "   Port: http 9080/HTTP targets pod port 9080\nDestinationRule: productpage for \"productpage\"\n   Matching subsets: v1\n",
        "\n\nExposed on Ingress Gateway http://",
        "VirtualService: bookinfo\n   /productpage, /static*, /login, /logout, /api/v1/products*\n",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // A pod that does not exist is named in the error, and nothing else is printed.
    let (code, out, err) = installation.istioctl(&["x", "describe", "pod", "nosuchpod"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.is_empty() && err.contains("pods \"nosuchpod\" not found in namespace default"), "{out}{err}");
    // A route to a subset nobody defines: describe warns, and --why says why the calls fail.
    let (code, _, err) = installation.istioctl(&["x", "local", "apply", "-f", &bogus_subset.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    // (Once productpage's proxy has the new route: describe follows what the proxy holds.)
    let warning = "VirtualService: reviews\n   WARNING: No destinations match pod subsets (checked 1 HTTP routes)\n      Warning: Route to UNKNOWN subset v9; check DestinationRule reviews\n";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = installation.istioctl(&["x", "describe", "svc", "reviews"]);
        if out.contains(warning) {
            break;
        }
        assert!(Instant::now() < deadline, "describe svc reviews never warned of the missing subset:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        page(&gateway, None);
        let (_, out, _) = installation.istioctl(&["x", "describe", "pod", "productpage-v1", "--why"]);
        if out.contains("503 NC (GET reviews:9080/reviews/0): no cluster (NC): the route points at outbound|9080|v9|reviews.default.svc.cluster.local") {
            break;
        }
        assert!(Instant::now() < deadline, "--why never explained the missing subset:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, _, err) = installation.istioctl(&["x", "local", "delete", "-f", &bogus_subset.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    eventually_every_page(&gateway, None, "reviews answer again", |body| body.contains("Reviewer1"));

    // `istioctl version`: the client, the control plane and every proxy, as 1.4 summed them up.
    let (code, out, err) = installation.istioctl(&["version"]);
    assert_eq!(code, 0, "{err}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        out,
        format!(
            "client version: {version}\ncontrol plane version: {version}\ndata plane version: {version} (8 proxies)\n"
        )
    );
    let (_, out, _) = installation.istioctl(&["version", "--short=false"]);
    for component in ["citadel", "galley", "pilot", "sidecar-injector", "policy", "telemetry"] {
        assert!(out.contains(&format!("\n{component} version: version.BuildInfo{{Version:")), "{component}: {out}");
    }

    let ip_of = |app: &str| -> String {
        bookinfo
            .iter()
            .find(|pod| pod["metadata"]["labels"]["app"] == app)
            .and_then(|pod| pod["status"]["podIP"].as_str())
            .unwrap_or_else(|| panic!("no {app} pod"))
            .to_string()
    };

    // Citadel keeps a certificate for each account, and the sidecar has it at /etc/certs.
    let productpage_pod = bookinfo
        .iter()
        .find(|pod| pod["metadata"]["labels"]["app"] == "productpage")
        .and_then(|pod| pod["metadata"]["name"].as_str())
        .expect("productpage pod")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let names = loop {
        let (code, chain, err) = installation.cat(&productpage_pod, "istio-proxy", "/etc/certs/cert-chain.pem");
        let leaf = istio_pki::pem::certificates(chain.as_bytes()).ok().map(|chain| chain[0].clone());
        if let (0, Some(leaf)) = (code, leaf) {
            break istio_pki::certificate::inspect(&leaf).expect("workload certificate").subject_alt_names;
        }
        assert!(Instant::now() < deadline, "no workload certificate in productpage's sidecar: {code} {chain} {err}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(names, ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]);
    let (_, root_pem, _) = installation.cat(&productpage_pod, "istio-proxy", "/etc/certs/root-cert.pem");
    citadel_signs_for_a_pods_token(&installation, &root_pem);

    // Log in as jason.
    let cookie = e2e::bookinfo_login(&gateway, "jason");
    assert!(page(&gateway, Some(&cookie)).contains("jason ( <a href=\"logout\">sign out</a> )"));

    // The traffic passed the sidecars: productpage's counts its calls to reviews and details,
    // and reviews' inbound side counts them arriving.
    for _ in 0..5 {
        page(&gateway, None);
    }
    let productpage_stats = format!("{}:15090", ip_of("productpage"));
    let to_reviews = stat(
        &productpage_stats,
        "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9080||reviews.default.svc.cluster.local\"}",
    );
    let to_details = stat(
        &productpage_stats,
        "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9080||details.default.svc.cluster.local\"}",
    );
    assert!(
        to_reviews >= 5 && to_details >= 5,
        "productpage's sidecar saw {to_reviews} to reviews, {to_details} to details"
    );
    let inbound: u64 = bookinfo
        .iter()
        .filter(|pod| pod["metadata"]["labels"]["app"] == "reviews")
        .map(|pod| {
            stat(
                &format!("{}:15090", pod["status"]["podIP"].as_str().unwrap_or_default()),
                "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"inbound|9080|http|reviews.default.svc.cluster.local\"}",
            )
        })
        .sum();
    assert!(inbound >= 5, "the reviews sidecars saw {inbound} inbound requests");

    // The 1.4 samples, applied unchanged, change the page as the docs say.
    let (code, out, err) =
        installation.istioctl(&["x", "local", "apply", "-f", &sample("virtual-service-all-v1.yaml")]);
    assert_eq!(code, 0, "{out}{err}");
    eventually_every_page(&gateway, None, "all-v1", |body| {
        !body.contains("glyphicon-star") && body.contains("Reviewer1")
    });
    let (code, _, err) =
        installation.istioctl(&["x", "local", "apply", "-f", &sample("virtual-service-reviews-test-v2.yaml")]);
    assert_eq!(code, 0, "{err}");
    eventually_every_page(&gateway, Some(&cookie), "jason on reviews-test-v2", |body| {
        body.matches("<font color=\"black\">").count() == 2
    });
    eventually_every_page(&gateway, None, "others on reviews-test-v2", |body| !body.contains("glyphicon-star"));
    let (code, _, err) =
        installation.istioctl(&["x", "local", "apply", "-f", &sample("virtual-service-reviews-v3.yaml")]);
    assert_eq!(code, 0, "{err}");
    eventually_every_page(&gateway, None, "reviews-v3", |body| body.matches("<font color=\"red\">").count() == 2);

    // Invalid Istio config is refused by Galley's webhook and changes nothing.
    let bad = installation.root.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 150\n",
    )
    .expect("write");
    let (code, _, err) = installation.istioctl(&["x", "local", "apply", "-f", &bad.display().to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains("denied") && err.contains("weight"), "{err}");
    assert_eq!(page(&gateway, None).matches("<font color=\"red\">").count(), 2);

    // The task samples: sleep calls httpbin through both sidecars; a pod in a namespace without
    // injection reaches a ClusterIP on its own; tcp-echo answers behind the gateway's TCP port.
    let samples =
        |path: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples").join(path).display().to_string();
    for (file, namespace) in [
        ("sleep/sleep.yaml", "default"),
        ("httpbin/httpbin.yaml", "default"),
        ("tcp-echo/tcp-echo-services.yaml", "default"),
        ("tcp-echo/tcp-echo-all-v1.yaml", "default"),
        ("sleep/sleep.yaml", "plain"),
    ] {
        let (code, out, err) = installation.istioctl(&["x", "local", "apply", "-n", namespace, "-f", &samples(file)]);
        assert_eq!(code, 0, "{file}: {out}{err}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods = installation.pods();
        let ready = |app: &str, namespace: &str| {
            pods.iter()
                .filter(|pod| pod["metadata"]["labels"]["app"] == app && pod["metadata"]["namespace"] == namespace)
                .filter(|pod| {
                    pod["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .count()
        };
        if ready("sleep", "default") == 1
            && ready("httpbin", "default") == 1
            && ready("tcp-echo", "default") == 2
            && ready("sleep", "plain") == 1
        {
            let plain = pods.iter().find(|pod| pod["metadata"]["namespace"] == "plain").expect("plain sleep");
            assert_eq!(plain["spec"]["containers"].as_array().map(Vec::len), Some(1), "no injection without the label");
            break;
        }
        assert!(Instant::now() < deadline, "the samples did not become ready: {pods:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // New services reach the proxies within moments; ask until they have.
    let exec_until = |args: &[&str], done: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, out, err) = installation.istioctl(args);
            if code == 0 && done(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "istioctl {args:?}: {code} {out} {err}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    exec_until(
        &[
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
        ],
        &|out| out == "200",
    );
    // A pod without a sidecar reaches the ClusterIP through the platform's rules.
    exec_until(
        &["x", "local", "exec", "sleep", "-n", "plain", "--", "curl", "-s", "http://httpbin.default:8000/user-agent"],
        &|out| out.contains("\"user-agent\""),
    );
    let gateway_ip = gateway.split(':').next().expect("ip");
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = tcp_echo(&format!("{gateway_ip}:31400"), "hello");
        if reply.as_deref() == Some("one hello") || Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(reply.as_deref(), Some("one hello"), "tcp-echo v1 behind the gateway's port 31400");

    // The proxies, as istioctl sees them.
    let (code, status_table, err) = installation.istioctl(&["proxy-status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        status_table.lines().any(|line| line.starts_with("productpage-v1-") && line.contains("SYNCED")),
        "{status_table}"
    );
    let (code, clusters, err) = installation.istioctl(&[
        "proxy-config",
        "cluster",
        "productpage-v1",
        "--fqdn",
        "reviews.default.svc.cluster.local",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(clusters.starts_with("SERVICE FQDN"), "{clusters}");
    for subset in ["v1", "v2", "v3"] {
        assert!(
            clusters.lines().any(|line| line.contains("9080") && line.contains(subset) && line.contains("outbound")),
            "{clusters}"
        );
    }
    let (code, logs, _) = installation.istioctl(&["x", "local", "logs", "productpage-v1", "-c", "istio-proxy"]);
    assert_eq!(code, 0);
    assert!(logs.contains("GET /productpage"), "the demo logs access to stdout:\n{logs}");

    // Tear down: nothing of the mesh is left.
    let pid_dir = installation.root.path().join("local/pids");
    let pids: Vec<i32> = std::fs::read_dir(&pid_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.split_whitespace().next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(pids.len() >= 10, "expected control plane and pod processes, found {pids:?}");
    // Ctrl-C tears it all down.
    let mut demo = demo;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.pid() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    let status = demo.wait_exit(Duration::from_secs(120)).expect("the demo exits after Ctrl-C");
    assert!(status.success(), "{status}: {}", demo.stderr());
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is still running");
    }
    let (_, netns, _) = run_program("ip", &["netns", "list"]);
    assert!(!netns.contains("istio-rs-"), "{netns}");
    let (_, links, _) = run_program("ip", &["-o", "link", "show"]);
    assert!(!links.contains("istio-rs0") && !links.contains(": irs"), "{links}");
    assert!(!installation.root.path().join("local").exists());
    let (code, _, err) = installation.istioctl(&["x", "local", "get", "pods"]);
    assert_ne!(code, 0, "no installation is left to list: {err}");
}

/// Sends a line over TCP and returns the first line of the answer.
/// A pod with a projected service-account token (audience `istio-ca`, as 1.4's SDS pods have)
/// gets a token the platform signed; Citadel's CA API, run by the platform on its bridge
/// address, signs a CSR for the pod's identity with it, and refuses one for another account.
fn citadel_signs_for_a_pods_token(installation: &Installation, root_pem: &str) {
    const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: token-check
  annotations:
    sidecar.istio.io/inject: \"false\"
spec:
  serviceAccountName: bookinfo-productpage
  containers:
  - name: sleep
    image: governmentpaas/curl-ssl
    command: [\"/bin/sleep\", \"3650d\"]
    volumeMounts:
    - name: istio-token
      mountPath: /var/run/secrets/tokens
  volumes:
  - name: istio-token
    projected:
      sources:
      - serviceAccountToken:
          path: istio-token
          audience: istio-ca
          expirationSeconds: 43200
";
    let file = installation.root.path().join("token-check.yaml");
    std::fs::write(&file, POD).expect("write pod");
    let (code, _, err) = installation.istioctl(&["x", "local", "apply", "-f", &file.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let (code, token, err) = installation.istioctl(&[
            "x",
            "local",
            "exec",
            "token-check",
            "-c",
            "sleep",
            "--",
            "cat",
            "/var/run/secrets/tokens/istio-token",
        ]);
        if code == 0 && token.split('.').count() == 3 {
            break token.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no projected token in the pod: {code} {token} {err}");
        std::thread::sleep(Duration::from_millis(300));
    };

    use istio_api::pb::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;
    use istio_api::pb::istio::v1::auth::IstioCertificateRequest;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(root_pem))
            .domain_name("istio-citadel.istio-system.svc.cluster.local");
        // Citadel's bridge address on the local platform.
        let channel = tonic::transport::Channel::from_static("https://10.44.0.13:8060")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("Citadel's CA API answers over TLS with a certificate from the mesh's root");
        let mut client = IstioCertificateServiceClient::new(channel);
        let ask = |identity: &str| {
            let (csr, _) = istio_pki::csr::generate(&[identity.to_string()]).expect("csr");
            let mut request = tonic::Request::new(IstioCertificateRequest {
                csr,
                subject_id: String::new(),
                validity_duration: 3600,
            });
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
            request
        };
        let answer = client
            .create_certificate(ask("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"))
            .await
            .expect("signed for the pod's own identity")
            .into_inner();
        assert_eq!(answer.cert_chain.last().map(String::as_str), Some(root_pem));
        let leaf = &istio_pki::pem::certificates(answer.cert_chain[0].as_bytes()).expect("leaf")[0];
        assert_eq!(
            istio_pki::certificate::inspect(leaf).expect("leaf").subject_alt_names,
            ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]
        );
        let refused = client
            .create_certificate(ask("spiffe://cluster.local/ns/default/sa/bookinfo-ratings"))
            .await
            .expect_err("another account's identity");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    });
    let (code, _, err) = installation.istioctl(&["x", "local", "delete", "-f", &file.display().to_string()]);
    assert_eq!(code, 0, "{err}");
}

fn tcp_echo(address: &str, line: &str) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}

fn run_program(program: &str, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(program).args(args).output().expect("run");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn without_root_the_local_platform_says_what_is_missing() {
    if !nix_is_root() {
        let (code, _, err) = run("istioctl", &["install", "--set", "profile=demo"], None);
        assert_ne!(code, 0);
        assert!(err.contains("needs root"), "{err}");
        return;
    }
    // As root, drop to nobody to see the message.
    let istioctl = e2e::binary("istioctl");
    let output = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&istioctl)
        .args(["install", "--set", "profile=demo"])
        .env("ISTIO_LOCAL_ROOT", "/tmp/istio-rs-not-root")
        .output()
        .expect("setpriv");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("needs root"), "{err}");
    assert!(!Path::new("/tmp/istio-rs-not-root").exists(), "nothing was created");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
