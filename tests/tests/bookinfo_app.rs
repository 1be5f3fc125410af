//! Bookinfo's four services as real processes on loopback: the page shows the book, its
//! details and the reviews with the stars of the reviews version; login sets the session
//! whose user travels on as `end-user`; failures give the original's error texts.

use std::time::{Duration, Instant};

use e2e::backend::Backend;
use e2e::envoy::free_port;
use e2e::{http_get, http_request, Process};

struct Service {
    _process: Process,
    port: u16,
}

fn start(service: &str, env: &[(&str, &str)]) -> Service {
    let port = free_port();
    let port_text = port.to_string();
    let process = Process::start_with_env(
        &e2e::binary("bookinfo"),
        &[service, "--port", &port_text, "--address", "127.0.0.1"],
        env,
    );
    // Listening is enough: an unhealthy variant answers /health with 500.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&format!("127.0.0.1:{port}"), "/health").0 == 0 {
        assert!(Instant::now() < deadline, "bookinfo {service} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Service { _process: process, port }
}

fn productpage(details: u16, reviews: u16, ratings: u16) -> Service {
    let (details, reviews, ratings) = (details.to_string(), reviews.to_string(), ratings.to_string());
    start(
        "productpage",
        &[
            ("DETAILS_HOSTNAME", "127.0.0.1"),
            ("DETAILS_SERVICE_PORT", &details),
            ("REVIEWS_HOSTNAME", "127.0.0.1"),
            ("REVIEWS_SERVICE_PORT", &reviews),
            ("RATINGS_HOSTNAME", "127.0.0.1"),
            ("RATINGS_SERVICE_PORT", &ratings),
        ],
    )
}

fn reviews(color: Option<&str>, ratings_port: u16) -> Service {
    let port = ratings_port.to_string();
    let mut env = vec![("RATINGS_HOSTNAME", "127.0.0.1"), ("RATINGS_SERVICE_PORT", port.as_str())];
    match color {
        Some(color) => env.extend([("ENABLE_RATINGS", "true"), ("STAR_COLOR", color)]),
        None => env.push(("ENABLE_RATINGS", "false")),
    }
    start("reviews", &env)
}

#[test]
fn the_product_page_shows_details_reviews_and_the_versions_stars() {
    let ratings = start("ratings", &[]);
    let details = start("details", &[]);
    let red = reviews(Some("red"), ratings.port);
    let page = productpage(details.port, red.port, ratings.port);
    let address = format!("127.0.0.1:{}", page.port);

    let (status, body) = http_get(&address, "/productpage");
    assert_eq!(status, 200);
    assert!(body.contains("<title>Simple Bookstore App</title>"), "{body}");
    assert!(body.contains("The Comedy of Errors"));
    assert!(body.contains("<h4 class=\"text-center text-primary\">Book Details</h4>"));
    assert!(body.contains("<dt>ISBN-10:</dt>1234567890"));
    assert!(body.contains("Reviewer1") && body.contains("Reviewer2"));
    assert_eq!(body.matches("<font color=\"red\">").count(), 2, "{body}");

    let (status, api) = http_get(&address, "/api/v1/products/0/ratings");
    assert_eq!(status, 200);
    assert!(api.contains("\"Reviewer1\":5"), "{api}");
    let (status, _) = http_get(&format!("127.0.0.1:{}", ratings.port), "/ratings/abc");
    assert_eq!(status, 400);

    // v1 has no stars.
    let plain = reviews(None, ratings.port);
    let page_v1 = productpage(details.port, plain.port, ratings.port);
    let (_, body) = http_get(&format!("127.0.0.1:{}", page_v1.port), "/productpage");
    assert!(body.contains("Reviewer1") && !body.contains("glyphicon-star"), "{body}");
}

/// Istio 1.4.6's Bookinfo page goldens (`tests/apps/bookinfo/output`, kept in
/// `samples/bookinfo/testdata/istio-1.4.6`): the page of each reviews version, for a signed-in
/// user, byte for byte; and with reviews unreachable, the reviews error.
#[test]
fn the_page_is_the_original_byte_for_byte() {
    let golden = |name: &str| {
        let path = format!("{}/../samples/bookinfo/testdata/istio-1.4.6/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    };
    let ratings = start("ratings", &[]);
    let details = start("details", &[]);
    let page_for = |reviews_port: u16, user: &str| {
        let page = productpage(details.port, reviews_port, ratings.port);
        let address = format!("127.0.0.1:{}", page.port);
        let cookie = e2e::bookinfo_login(&address, user);
        let (status, _, body) = http_request(&address, "GET", "/productpage", &[("cookie", &cookie)], "");
        assert_eq!(status, 200);
        body
    };
    let v1 = reviews(None, ratings.port);
    let v2 = reviews(Some("black"), ratings.port);
    let v3 = reviews(Some("red"), ratings.port);
    for (reviews_port, user, name) in [
        (v1.port, "normal-user", "productpage-normal-user-v1.html"),
        (v2.port, "normal-user", "productpage-normal-user-v2.html"),
        (v2.port, "test-user", "productpage-test-user-v2.html"),
        (v3.port, "normal-user", "productpage-normal-user-v3.html"),
        (free_port(), "test-user", "productpage-test-user-v1-review-timeout.html"),
    ] {
        assert_eq!(page_for(reviews_port, user), golden(name), "{name}");
    }
}

/// The page's static files come from the installed Bootstrap 3 and jQuery, as the original
/// served its copies; without them the stylesheet path still answers.
#[test]
fn bootstrap_and_jquery_are_served_from_the_installed_packages() {
    let details = start("details", &[]);
    let page = productpage(details.port, free_port(), free_port());
    let address = format!("127.0.0.1:{}", page.port);
    let installed = std::path::Path::new("/usr/share/javascript/bootstrap/css/bootstrap.min.css");
    let (status, css) = http_get(&address, "/static/bootstrap/css/bootstrap.min.css");
    assert_eq!(status, 200);
    if installed.exists() {
        assert!(css.contains("Bootstrap v3"), "the real Bootstrap 3");
        for asset in [
            "/static/bootstrap/css/bootstrap-theme.min.css",
            "/static/bootstrap/js/bootstrap.min.js",
            "/static/bootstrap/fonts/glyphicons-halflings-regular.woff2",
            "/static/jquery.min.js",
        ] {
            assert_eq!(http_get(&address, asset).0, 200, "{asset}");
        }
    } else {
        assert!(css.contains(".glyphicon-star"), "the built-in stylesheet");
    }
    assert_eq!(http_get(&address, "/static/../../etc/passwd").0, 404);
    assert_eq!(http_get(&address, "/static/bootstrap/fonts/glyphicons-halflings-regular.x/../../../x").0, 404);

    let unstyled = start_productpage_with(details.port, &[("BOOKINFO_STATIC_DIR", "/nonexistent")]);
    let (status, css) = http_get(&format!("127.0.0.1:{}", unstyled.port), "/static/bootstrap/css/bootstrap.min.css");
    assert_eq!(status, 200);
    assert!(css.contains(".glyphicon-star"), "the built-in stylesheet: {css}");
}

fn start_productpage_with(details: u16, extra: &[(&str, &str)]) -> Service {
    let details = details.to_string();
    let mut env = vec![("DETAILS_HOSTNAME", "127.0.0.1"), ("DETAILS_SERVICE_PORT", details.as_str())];
    env.extend_from_slice(extra);
    start("productpage", &env)
}

#[test]
fn login_sends_the_user_on_and_failures_show_the_original_errors() {
    // A recording server stands in for ratings: it answers no ratings, and shows what reviews forwarded.
    let recorder = Backend::start("not-ratings");
    let details = start("details", &[]);
    let black = reviews(Some("black"), recorder.port);
    let page = productpage(details.port, black.port, recorder.port);
    let address = format!("127.0.0.1:{}", page.port);

    let cookie = e2e::bookinfo_login(&address, "jason");
    let (status, _, body) = http_request(
        &address,
        "GET",
        "/productpage",
        &[("cookie", &cookie), ("x-request-id", "req-42"), ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")],
        "",
    );
    assert_eq!(status, 200);
    assert!(body.contains("jason ( <a href=\"logout\">sign out</a> )"), "{body}");
    assert_eq!(body.matches("<p><i>Ratings service is currently unavailable</i></p>").count(), 2, "{body}");
    let seen = recorder.seen();
    let call = seen.iter().find(|seen| seen.path == "/ratings/0").expect("reviews called ratings");
    assert_eq!(call.header("end-user"), Some("jason"));
    assert_eq!(call.header("x-request-id"), Some("req-42"));
    assert_eq!(call.header("x-b3-traceid"), Some("80f198ee56343ba864fe8b2a57d3eff7"));

    // A forged cookie is not a login.
    let (_, _, body) = http_request(&address, "GET", "/productpage", &[("cookie", "session=amFzb24.AAAA")], "");
    assert!(body.contains("Sign in") && !body.contains("sign out"));
    let (status, headers, _) = http_request(&address, "GET", "/logout", &[("cookie", &cookie)], "");
    assert_eq!(status, 302);
    assert!(headers.iter().any(|(name, value)| name == "set-cookie" && value.contains("Max-Age=0")));

    // No reviews and no details: the page still renders, with the original's error texts,
    // after the two tries at reviews.
    let nowhere = free_port();
    let broken = productpage(nowhere, nowhere, nowhere);
    let started = Instant::now();
    let (status, body) = http_get(&format!("127.0.0.1:{}", broken.port), "/productpage");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(body.contains("Error fetching product details!"));
    assert!(body.contains("Sorry, product details are currently unavailable for this book."));
    assert!(body.contains("Error fetching product reviews!"));
    assert!(body.contains("Sorry, product reviews are currently unavailable for this book."));
}

#[test]
fn ratings_variants_fail_as_the_original_did() {
    let unavailable = start("ratings", &[("SERVICE_VERSION", "v-unavailable")]);
    let (status, body) = http_get(&format!("127.0.0.1:{}", unavailable.port), "/ratings/0");
    assert_eq!(status, 503, "{body}");
    assert_eq!(http_get(&format!("127.0.0.1:{}", unavailable.port), "/health").0, 500);
    let faulty = start("ratings", &[("SERVICE_VERSION", "v-faulty")]);
    let statuses: Vec<u16> = (0..40).map(|_| http_get(&format!("127.0.0.1:{}", faulty.port), "/ratings/0").0).collect();
    assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");
}
