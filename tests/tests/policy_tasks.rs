//! The Istio 1.4 policy tasks, step by step as the docs give them, on the local platform's demo
//! (which runs `istio-policy` with `disablePolicyChecks: false`), once with the built-in proxy
//! as every sidecar (Istio 1.4's `mixer` filter) and once with a stock Envoy (`ext_authz`
//! answered by Mixer). The samples are applied unchanged.
//!
//! - Rate limits: `mixer-rule-productpage-ratelimit.yaml` (memquota; its rule has no match,
//!   so every client of productpage is limited): two pages per five seconds, then 429 with
//!   `RESOURCE_EXHAUSTED:Quota is exhausted for: requestcountquota`, and pages again once the
//!   window has passed. With the docs' edit of the rule (`match(request.headers["cookie"],
//!   "session=*") == false`), a logged-in user is not limited and anonymous users are.
//! - The same with Redis (`redisquota`), as the docs offer for production: a Redis deployed as
//!   the stable/redis chart named it (`redis-release-master` in `istio-system`), which Mixer, a
//!   host process here, finds through cluster DNS and reaches by its ClusterIP.
//!   `mixer-rule-productpage-redis-quota-rolling-window.yaml` limits productpage to two pages a
//!   second per client; `…-fixed-window.yaml` to one page per 30 s, but 50 when the caller is
//!   the ingress gateway (its override by `source: istio-ingressgateway`), so a burst through
//!   the gateway gets at most 50 pages before 429s.
//! - Denials: `mixer-rule-deny-label.yaml` with `virtual-service-all-v1` +
//!   `reviews-jason-v2-v3`: reviews v3 may not call ratings, so anonymous users (v3) see
//!   "Ratings service is currently unavailable" and jason (v2) keeps his black stars; the
//!   attribute whitelist (`mixer-rule-deny-whitelist.yaml`) does the same by version; the IP
//!   whitelist (`mixer-rule-deny-ip.yaml`) refuses the ingress gateway's address with
//!   `PERMISSION_DENIED:whitelistip.default:<ip> is not whitelisted`.
//! - The gateway checks too (1.4's routers made outbound checks): `mixer-rule-ingress-denial.yaml`
//!   refuses john at the ingress gateway, and the same rule narrowed to
//!   `context.reporter.kind == "outbound"`, which only a gateway's check reports, still refuses.
//! - Fail close and fail open: with Mixer's endpoints gone, a request Mixer has not answered
//!   before is refused (503); with `policyCheckFailOpen: true` it goes through.
//!
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::time::{Duration, Instant};

use e2e::local::{sample, stars, LocalMesh, Plane, Task};

/// In an order that lets each start clean: a proxy keeps Mixer's answers as long as Mixer
/// says (a minute by default, five for a list checker's), as 1.4's did, so the tasks whose
/// refusals are cached longest come last.
const TASKS: [(&str, Task); 9] = [
    ("rate limits (memquota)", rate_limits),
    ("conditional rate limits", conditional_rate_limits),
    ("rate limits (redisquota, rolling window)", redis_rolling_window),
    ("rate limits (redisquota, fixed window)", redis_fixed_window),
    ("fail close and fail open", fail_close_and_open),
    ("ingress denial, checked by the gateway", ingress_denial),
    ("denials", denials),
    ("attribute-based whitelist", attribute_whitelist),
    ("IP-based whitelist", ip_whitelist),
];

/// How long a change of policy may take to show: Mixer's answers are cached by the proxies for
/// their validity (a minute by default).
const PATIENCE: Duration = Duration::from_secs(120);

const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// The samples' objects, by namespace, kind and name, so each task starts from none of them.
const SAMPLE_OBJECTS: [(&str, &str, &str); 20] = [
    ("istio-system", "handlers", "handler"),
    ("istio-system", "rules", "denyingress"),
    ("istio-system", "handlers", "quotahandler"),
    ("istio-system", "handlers", "redishandler"),
    ("istio-system", "instances", "requestcountquota"),
    ("istio-system", "rules", "quota"),
    ("istio-system", "quotaspecs", "request-count"),
    ("istio-system", "quotaspecbindings", "request-count"),
    ("istio-system", "handlers", "denierhandler"),
    ("istio-system", "instances", "denyrequest"),
    ("istio-system", "rules", "denyreviewsv3"),
    ("default", "handlers", "denyreviewsv3handler"),
    ("default", "instances", "denyreviewsv3request"),
    ("default", "rules", "denyreviewsv3"),
    ("default", "handlers", "whitelist"),
    ("default", "instances", "appversion"),
    ("default", "rules", "checkversion"),
    ("default", "handlers", "whitelistip"),
    ("default", "instances", "sourceip"),
    ("default", "rules", "checkip"),
];

fn set_up(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/networking/destination-rule-all.yaml"));
    mesh.apply(&sample("bookinfo/networking/virtual-service-all-v1.yaml"));
}

fn reset(mesh: &LocalMesh) {
    for (namespace, kind, name) in SAMPLE_OBJECTS {
        mesh.delete_in(namespace, kind, name);
    }
    mesh.apply(&sample("bookinfo/networking/virtual-service-all-v1.yaml"));
    set_mesh_config(mesh, "policyCheckFailOpen", serde_json::json!(false));
    restore_mixer_endpoints(mesh);
    // Policy off again: the page comes back for anyone.
    until_page(mesh, &[], "the page without policy", |status, _| status == 200);
}

/// `/productpage` through the gateway with `headers`: status and body.
fn productpage(mesh: &LocalMesh, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = e2e::http_request(&mesh.gateway, "GET", "/productpage", headers, "");
    (status, body)
}

/// Waits until one page satisfies `check` (status, body).
fn until_page(mesh: &LocalMesh, headers: &[(&str, &str)], what: &str, check: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = productpage(mesh, headers);
        if check(status, &body) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} ({:?}): last answer {status}:\n{body}", mesh.plane);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Statuses of `count` pages, a fifth of a second apart (a proxy's quota prefetch answers
/// within that).
fn burst(mesh: &LocalMesh, headers: &[(&str, &str)], count: usize) -> Vec<(u16, String)> {
    (0..count)
        .map(|_| {
            let answer = productpage(mesh, headers);
            std::thread::sleep(Duration::from_millis(200));
            answer
        })
        .collect()
}

const EXHAUSTED: &str = "RESOURCE_EXHAUSTED:Quota is exhausted for: requestcountquota";

/// Waits until `check` holds for `streak` pages in a row (as `cookie`'s user).
fn settle(mesh: &LocalMesh, cookie: Option<&str>, what: &str, streak: usize, check: impl Fn(&str) -> bool) {
    let headers: Vec<(&str, &str)> = cookie.map(|cookie| vec![("cookie", cookie)]).unwrap_or_default();
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen < streak {
        let (status, body) = productpage(mesh, &headers);
        if status == 200 && check(&body) {
            seen += 1;
            continue;
        }
        seen = 0;
        assert!(
            Instant::now() < deadline,
            "{what} ({:?}): the page never settled ({status}):\n{body}\n{}",
            mesh.plane,
            mixer_diagnostics(mesh)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What Mixer and the ratings sidecar were doing, for a failure's message: the end of
/// istio-policy's log and the sidecar's Mixer-related stats.
fn mixer_diagnostics(mesh: &LocalMesh) -> String {
    let log = std::fs::read_to_string(mesh.root().join("logs/control/istio-policy.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect();
    let stats: Vec<String> = mesh
        .proxy_admin("ratings-v1", "default", "stats")
        .lines()
        .filter(|line| line.contains("mixer") || line.contains("ext_authz"))
        .map(str::to_string)
        .collect();
    format!("istio-policy's log ends:\n{}\nratings' sidecar:\n{}", tail.join("\n"), stats.join("\n"))
}

/// On a stock Envoy, a filter chain that a config change replaced keeps serving the connections
/// it had until it has drained (`--drain-time-s`, the proxies' 45 s drainDuration), and a
/// request on such a connection (the gateway keeps one per worker) is checked against the old
/// config, without the quota. Windows are measured once productpage's proxy has nothing left
/// draining, so that every request is checked against the quota. The built-in proxy applies
/// new config to the connections it has.
fn until_drained(mesh: &LocalMesh) {
    if mesh.plane != Plane::Envoy {
        return;
    }
    let pods = mesh.names_in("pods", "default");
    let pod = pods.iter().find(|name| name.starts_with("productpage-")).expect("a productpage pod");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let draining = mesh.proxy_stat(pod, "listener_manager.total_filter_chains_draining")
            + mesh.proxy_stat(pod, "listener_manager.total_listeners_draining");
        if draining == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "productpage's proxy still drains {draining} listener(s) or filter chain(s)"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits until the quota applies: a burst ends refused, and no connection predates the quota.
fn until_limited(mesh: &LocalMesh, headers: &[(&str, &str)]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answers = burst(mesh, headers, 4);
        if let Some((_, body)) = answers.iter().find(|(status, _)| *status == 429) {
            assert_eq!(body, EXHAUSTED, "{:?}", mesh.plane);
            until_drained(mesh);
            return;
        }
        assert!(Instant::now() < deadline, "the rate limit never applied ({:?}): {answers:?}", mesh.plane);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// How many listener updates productpage's proxy has taken.
fn listener_updates(mesh: &LocalMesh) -> u64 {
    let pod = mesh.pod_name("app", "productpage").expect("a productpage pod");
    mesh.proxy_stat(&pod, "listener_manager.lds.update_attempt")
}

/// Measures a quota window (`measure` says what it saw when the limit did not show) up to
/// three times. The built-in proxy starts its Mixer client's caches afresh when a push
/// changes the filter chain that holds the filter, and a fresh quota counter admits on an
/// optimistic allotment until Mixer's first answer, as 1.4's prefetch did; so a push landing
/// in a window can let a page or two more through. A window without one must show the limit.
/// Fails with every window's outcome and the listener updates around it.
fn in_some_window(mesh: &LocalMesh, what: &str, measure: impl Fn() -> Result<(), String>) {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let before = listener_updates(mesh);
        match measure() {
            Ok(()) => return,
            Err(outcome) => seen.push(format!("{outcome} (listener updates {before} -> {})", listener_updates(mesh))),
        }
    }
    panic!("{what} ({:?}), in none of three windows: {}", mesh.plane, seen.join("; "));
}

fn rate_limits(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/policy/mixer-rule-productpage-ratelimit.yaml"));
    until_limited(mesh, &[]);
    // A fresh window: at most two pages, then the quota is exhausted. (A proxy that prefetches
    // quota, as 1.4's did, may refuse the first page of a window while it asks for more.)
    in_some_window(mesh, "two pages per five seconds", || {
        std::thread::sleep(Duration::from_millis(5500));
        let statuses: Vec<u16> = burst(mesh, &[], 4).into_iter().map(|(status, _)| status).collect();
        let passed = statuses.iter().filter(|status| **status == 200).count();
        if passed <= 2 && statuses[3] == 429 {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    });
    // Once the window has passed, pages come back.
    std::thread::sleep(Duration::from_millis(5500));
    until_page(mesh, &[], "a page after the window", |status, _| status == 200);
}

fn conditional_rate_limits(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/policy/mixer-rule-productpage-ratelimit.yaml"));
    // The docs' edit: the rule applies only to requests without a session cookie.
    mesh.apply_yaml(
        "apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: quota
  namespace: istio-system
spec:
  match: match(request.headers[\"cookie\"], \"session=*\") == false
  actions:
  - handler: quotahandler
    instances:
    - requestcountquota
",
    );
    let cookie = mesh.login("jason");
    let logged_in = [("cookie", cookie.as_str())];
    // Anonymous users are limited.
    until_limited(mesh, &[]);
    // A logged-in user is not, however many pages.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answers = burst(mesh, &logged_in, 5);
        if answers.iter().all(|(status, _)| *status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: a logged-in user stayed limited: {answers:?}", mesh.plane);
        std::thread::sleep(Duration::from_secs(1));
    }
    until_limited(mesh, &[]);
}

/// Redis as the stable/redis chart deployed it for the docs' redisquota samples.
const REDIS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis-release-master
  namespace: istio-system
spec:
  replicas: 1
  selector:
    matchLabels: {app: redis, role: master}
  template:
    metadata:
      labels: {app: redis, role: master}
    spec:
      containers:
      - name: redis-release
        image: docker.io/bitnami/redis:5.0.7
        ports:
        - {name: redis, containerPort: 6379}
        readinessProbe:
          tcpSocket: {port: redis}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: redis-release-master
  namespace: istio-system
  labels: {app: redis}
spec:
  selector: {app: redis, role: master}
  ports:
  - {name: redis, port: 6379, targetPort: redis}
";

fn with_redis(mesh: &LocalMesh) {
    mesh.apply_yaml(REDIS);
    mesh.wait_ready("redis", "istio-system", 1);
}

fn redis_rolling_window(mesh: &LocalMesh) {
    with_redis(mesh);
    mesh.apply(&sample("bookinfo/policy/mixer-rule-productpage-redis-quota-rolling-window.yaml"));
    until_limited(mesh, &[]);
    // Two pages a second: a quick burst is cut short, and a page a second later goes through.
    in_some_window(mesh, "two pages a second", || {
        std::thread::sleep(Duration::from_millis(1500));
        let statuses: Vec<u16> = (0..5).map(|_| productpage(mesh, &[]).0).collect();
        if statuses.iter().filter(|status| **status == 200).count() <= 2 && statuses.contains(&429) {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    until_page(mesh, &[], "a page after the window rolled on", |status, _| status == 200);
}

fn redis_fixed_window(mesh: &LocalMesh) {
    with_redis(mesh);
    mesh.apply(&sample("bookinfo/policy/mixer-rule-productpage-redis-quota-fixed-window.yaml"));
    let burst = |count: usize| -> Vec<(u16, String)> { (0..count).map(|_| productpage(mesh, &[])).collect() };
    // Through the gateway, 50 pages per 30 s window: bursts end refused once the rule applies.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answers = burst(60);
        if let Some((_, body)) = answers.iter().find(|(status, _)| *status == 429) {
            assert_eq!(body, EXHAUSTED, "{:?}", mesh.plane);
            until_drained(mesh);
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: the fixed window never applied", mesh.plane);
        std::thread::sleep(Duration::from_secs(1));
    }
    // The next window: at most 50 pages (one was the page that showed the window had ended),
    // and more than the quota's default of one, as the gateway's override says.
    in_some_window(mesh, "50 pages per 30 s through the gateway", || {
        until_page(mesh, &[], "a page in the next window", |status, _| status == 200);
        let answers = burst(60);
        let first_refused = answers.iter().position(|(status, _)| *status == 429);
        let passed = answers.iter().filter(|(status, _)| *status == 200).count();
        if first_refused.is_some_and(|at| at > 1) && passed < 50 {
            Ok(())
        } else {
            Err(format!("{passed} pages, refused from {first_refused:?}"))
        }
    });
}

fn ingress_denial(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/policy/mixer-rule-ingress-denial.yaml"));
    let refused = "PERMISSION_DENIED:handler.istio-system:Not allowed";
    until_page(mesh, &[("x-user", "john")], "john refused", |status, body| status == 403 && body == refused);
    // Only the gateway's own check (an outbound one, as 1.4's gateways made) can match now:
    // server sidecars report `inbound`, and client sidecars do not check.
    mesh.apply_yaml(
        "apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: denyingress
  namespace: istio-system
spec:
  match: context.reporter.kind == \"outbound\" && (request.headers[\"x-user\"] | \"\") == \"mallory\"
  actions:
  - handler: handler
    instances: [ denyrequest ]
",
    );
    // Once Mixer has the edit (a proxy would otherwise cache its earlier answer for mallory).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, out, _) = mesh.istioctl(&[
            "x",
            "mixer",
            "check",
            "-m",
            "10.44.0.14:9091",
            "-s",
            "context.reporter.kind=outbound,source.uid=kubernetes://x.istio-system",
            "--stringmap_attributes",
            "source.labels=istio:ingressgateway,request.headers=x-user:mallory",
        ]);
        if out.contains("PERMISSION_DENIED") {
            break;
        }
        assert!(Instant::now() < deadline, "Mixer never took the edited rule: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    until_page(mesh, &[("x-user", "mallory")], "mallory refused by the gateway", |status, body| {
        status == 403 && body == refused
    });
    until_page(mesh, &[("x-user", "alice")], "alice let through", |status, _| status == 200);
}

fn denials(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/networking/virtual-service-reviews-jason-v2-v3.yaml"));
    mesh.apply(&sample("bookinfo/policy/mixer-rule-deny-label.yaml"));
    // Anonymous users reach reviews v3, which may not call ratings.
    // (A proxy may answer from its cache for up to a minute, as 1.4's did.)
    settle(mesh, None, "reviews v3 denied ratings", 3, |page| page.contains(RATINGS_UNAVAILABLE));
    // `istioctl x describe pod ratings-v1 --why` names Mixer's denial at ratings' sidecar.
    mesh.describe_why("ratings-v1", &["x 403 ", "denied by Mixer policy"]);
    // jason's reviews v2 still shows black stars.
    let cookie = mesh.login("jason");
    settle(mesh, Some(&cookie), "jason's black stars", 3, |page| {
        stars(page).1 > 0 && !page.contains(RATINGS_UNAVAILABLE)
    });
}

fn attribute_whitelist(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/networking/virtual-service-reviews-jason-v2-v3.yaml"));
    mesh.apply(&sample("bookinfo/policy/mixer-rule-deny-whitelist.yaml"));
    settle(mesh, None, "v3 is not whitelisted", 3, |page| page.contains(RATINGS_UNAVAILABLE));
    let cookie = mesh.login("jason");
    settle(mesh, Some(&cookie), "v2 is whitelisted", 3, |page| stars(page).1 > 0);
}

fn ip_whitelist(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/policy/mixer-rule-deny-ip.yaml"));
    let gateway_ip = mesh.gateway_ip();
    let expected = format!("PERMISSION_DENIED:whitelistip.default:{gateway_ip} is not whitelisted");
    until_page(mesh, &[], "the gateway's address refused", |status, body| status == 403 && body == expected);
}

/// Sets one field of the mesh config (the `istio` ConfigMap's `mesh`).
fn set_mesh_config(mesh: &LocalMesh, field: &str, value: serde_json::Value) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "json"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let mut config_map: serde_json::Value = serde_json::from_str(&config_map).expect("ConfigMap JSON");
    let current = config_map["data"]["mesh"].as_str().unwrap_or_default().to_string();
    let mut mesh_config: serde_json::Value = serde_yaml::from_str(&current).expect("mesh config YAML");
    if mesh_config[field] == value {
        return;
    }
    mesh_config[field] = value;
    config_map["data"]["mesh"] =
        serde_json::Value::String(serde_yaml::to_string(&mesh_config).expect("mesh config YAML"));
    mesh.apply_yaml(&config_map.to_string());
}

/// The installation's Endpoints of `istio-policy`, as the platform wrote them.
fn mixer_endpoints() -> String {
    "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: istio-policy\n  namespace: istio-system\nsubsets:\n- addresses: [{ip: 10.44.0.14}]\n  ports:\n  - {name: grpc-mixer, port: 9091, protocol: TCP}\n  - {name: http-monitoring, port: 15014, protocol: TCP}\n".to_string()
}

fn restore_mixer_endpoints(mesh: &LocalMesh) {
    mesh.apply_yaml(&mixer_endpoints());
}

fn fail_close_and_open(mesh: &LocalMesh) {
    // A rule that reads a header, so every new value is a request Mixer has not answered
    // (a proxy's cache would otherwise answer for a while without Mixer, as 1.4's did).
    mesh.apply(&sample("bookinfo/policy/mixer-rule-ratings-denial.yaml"));
    until_page(mesh, &[("x-user", "john")], "john refused", |status, body| {
        status == 403 && body == "PERMISSION_DENIED:denierhandler.istio-system:Not allowed"
    });
    let mut user = 0;
    let mut next_user = || {
        user += 1;
        format!("user-{user}")
    };
    // Mixer gone: no endpoints for istio-policy. Refused (1.4's default is to fail closed).
    mesh.delete_in("istio-system", "endpoints", "istio-policy");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let name = next_user();
        let (status, body) = productpage(mesh, &[("x-user", name.as_str())]);
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: never refused without Mixer: {status} {body}", mesh.plane);
        std::thread::sleep(Duration::from_millis(500));
    }
    // policyCheckFailOpen: the same requests go through without Mixer.
    set_mesh_config(mesh, "policyCheckFailOpen", serde_json::json!(true));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let name = next_user();
        let (status, body) = productpage(mesh, &[("x-user", name.as_str())]);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: failing open never let through: {status} {body}", mesh.plane);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run_tasks(plane: Plane) {
    e2e::local::run_tasks(plane, &TASKS, set_up, reset);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn policy_tasks_with_the_builtin_proxy() {
    run_tasks(Plane::Builtin);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn policy_tasks_with_envoy() {
    run_tasks(Plane::Envoy);
}
