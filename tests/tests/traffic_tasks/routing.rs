//! Routing tasks: request routing, fault injection, HTTP and TCP traffic shifting, request
//! timeouts.

use super::*;

/// Request routing: all-v1 gives every user a page without stars; reviews-test-v2 sends jason
/// to v2 (black stars) and everyone else still to v1.
pub(crate) fn request_routing(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-all-v1.yaml"));
    mesh.settle(None, "all-v1", 10, |_, page| stars(page) == (0, 0) && page.contains("Reviewer1"));
    mesh.apply(&networking("virtual-service-reviews-test-v2.yaml"));
    let jason = mesh.login("jason");
    mesh.settle(Some(&jason), "jason on reviews-test-v2", 10, |_, page| stars(page) == (0, 2));
    mesh.settle(None, "others on reviews-test-v2", 10, |_, page| stars(page) == (0, 0));
    // `istioctl proxy-status POD`: the proxy holds what Pilot would send it.
    until("productpage's proxy in sync with Pilot", Duration::from_secs(30), || {
        let (code, out, err) = mesh.istioctl(&["proxy-status", "productpage-v1"]);
        let synced = code == 0
            && out.starts_with("Clusters Match\nListeners Match\nRoutes Match (RDS last loaded at ")
            && out.lines().count() == 3;
        if synced {
            Ok(())
        } else {
            Err(format!("{out}{err}").chars().take(3000).collect())
        }
    });
    // A route to a subset no DestinationRule defines (a common mistake): the page loses its
    // reviews, `x describe svc reviews` warns, and `--why` on productpage names the cause.
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n",
    );
    mesh.settle(None, "reviews routed to a missing subset", 3, |_, page| {
        page.contains("Error fetching product reviews!")
    });
    until("describe svc reviews warns of the missing subset", Duration::from_secs(30), || {
        let (_, out, _) = mesh.istioctl(&["x", "describe", "svc", "reviews"]);
        if out.contains("Warning: Route to UNKNOWN subset v9; check DestinationRule reviews") {
            Ok(())
        } else {
            Err(out)
        }
    });
    mesh.describe_why(
        "productpage-v1",
        &["503 NC (GET reviews:9080/reviews/0): no cluster (NC): the route points at outbound|9080|v9|reviews.default.svc.cluster.local"],
    );
}

/// Fault injection: a 7 s delay on ratings for jason makes productpage give up on reviews
/// after its two 3 s tries (about 6 s); an abort makes reviews show that ratings is
/// unavailable; other users are not affected.
pub(crate) fn fault_injection(mesh: &LocalMesh) {
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
pub(crate) fn traffic_shifting(mesh: &LocalMesh) {
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
pub(crate) fn tcp_traffic_shifting(mesh: &LocalMesh) {
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
pub(crate) fn request_timeouts(mesh: &LocalMesh) {
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

/// Sends a line over TCP and returns the first line of the answer.
pub(crate) fn tcp_echo(address: &str, line: &str) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}
