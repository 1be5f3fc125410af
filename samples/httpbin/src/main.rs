//! `httpbin`: an HTTP request and response service in the manner of httpbin.org, with the
//! endpoints Istio's tasks use: `/status/CODE`, `/headers`, `/delay/N`, `/ip`, `/get`,
//! `/anything`, `/user-agent`, `/response-headers`, `/bytes/N`. It takes gunicorn's flags
//! (`-b 0.0.0.0:80 --access-logfile - httpbin:app`) so the samples' command lines run as they are,
//! and logs requests with gunicorn's access-log fields. Given `helloworld:app` as the
//! application, it serves Istio's helloworld sample instead (`helloworld`).

mod helloworld;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Map, Value};

#[derive(Debug, Parser)]
#[command(name = "httpbin", version, about = "HTTP request and response service (httpbin)")]
struct Cli {
    /// Address to serve on (gunicorn's `-b`).
    #[arg(short = 'b', long = "bind", default_value = "0.0.0.0:80")]
    bind: String,
    /// Log each request here in gunicorn's format; `-` is stdout.
    #[arg(long = "access-logfile")]
    access_logfile: Option<String>,
    /// gunicorn's worker class; accepted and ignored.
    #[arg(short = 'k', long = "worker-class")]
    worker_class: Option<String>,
    /// The WSGI application: `httpbin:app` (the default) or `helloworld:app`.
    app: Option<String>,
}

#[derive(Clone)]
struct AccessLog {
    sink: Option<Arc<std::sync::Mutex<Box<dyn Write + Send>>>>,
}

const TEAPOT: &str = r#"
    -=[ teapot ]=-

       _...._
     .'  _ _ `.
    | ."` ^ `". _,
    \_;`"---"`|//
      |       ;/
      \_     _/
        `"""`
"#;

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let key = title_case(name.as_str());
        let value = value.to_str().unwrap_or_default().to_string();
        match map.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                map.insert(key, Value::String(value));
            }
        }
    }
    Value::Object(map)
}

fn origin(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| peer.ip().to_string())
}

fn args_json(uri: &Uri) -> Value {
    let mut args = Map::new();
    for pair in uri.query().unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(key.to_string(), Value::String(value.to_string()));
    }
    Value::Object(args)
}

fn url(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers.get("host").and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}{uri}")
}

fn request_json(method: &Method, uri: &Uri, headers: &HeaderMap, peer: SocketAddr, body: &Bytes, full: bool) -> Value {
    let mut value = json!({
        "args": args_json(uri),
        "headers": headers_json(headers),
        "origin": origin(headers, peer),
        "url": url(headers, uri),
    });
    if full {
        value["method"] = json!(method.as_str());
        value["data"] = json!(String::from_utf8_lossy(body));
        value["json"] = serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    value
}

async fn status(Path(codes): Path<String>) -> Response {
    let choices: Vec<&str> = codes.split(',').map(str::trim).filter(|code| !code.is_empty()).collect();
    let chosen = choices.get(rand::random_range(0..choices.len().max(1))).copied().unwrap_or_default();
    let Some(code) = chosen
        .split(':')
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        return (StatusCode::BAD_REQUEST, "Invalid status code").into_response();
    };
    match code.as_u16() {
        418 => (code, [("x-more-info", "http://tools.ietf.org/html/rfc2324")], TEAPOT).into_response(),
        301 | 302 | 303 | 305 | 307 => (code, [("location", "/redirect/1")]).into_response(),
        _ => code.into_response(),
    }
}

async fn delay(
    Path(seconds): Path<f64>,
    connection: ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 10.0))).await;
    anything(connection, method, uri, headers, body).await
}

async fn anything(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    Json(request_json(&method, &uri, &headers, peer, &body, true))
}

async fn get_request(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Json<Value> {
    Json(request_json(&method, &uri, &headers, peer, &Bytes::new(), false))
}

async fn response_headers(uri: Uri) -> Response {
    let args = args_json(&uri);
    let mut response = Json(args.clone()).into_response();
    for (key, value) in args.as_object().into_iter().flatten() {
        if let (Ok(name), Ok(value)) =
            (HeaderName::try_from(key.as_str()), HeaderValue::from_str(value.as_str().unwrap_or_default()))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn bytes(Path(count): Path<usize>) -> Response {
    let data: Vec<u8> = (0..count.min(100 * 1024)).map(|_| rand::random::<u8>()).collect();
    ([("content-type", "application/octet-stream")], data).into_response()
}

async fn index() -> Html<&'static str> {
    Html(
        "<!DOCTYPE html>\n<html><head><title>httpbin</title></head><body>\n<h1>httpbin</h1>\n<p>A simple HTTP request and response service.</p>\n<ul>\n<li><a href=\"/ip\">/ip</a> the requester's address</li>\n<li><a href=\"/user-agent\">/user-agent</a></li>\n<li><a href=\"/headers\">/headers</a> the request's headers</li>\n<li><a href=\"/get\">/get</a> the request's arguments and headers</li>\n<li>/anything echoes any request</li>\n<li><a href=\"/status/418\">/status/:code</a> answers with that status</li>\n<li><a href=\"/delay/1\">/delay/:n</a> answers after n seconds</li>\n<li>/response-headers?key=value sets response headers</li>\n<li><a href=\"/bytes/64\">/bytes/:n</a> n random bytes</li>\n</ul>\n</body></html>\n",
    )
}

/// Writes an access log line with gunicorn's default fields (`%(h)s %(l)s %(u)s %(t)s "%(r)s"
/// %(s)s %(b)s "%(f)s" "%(a)s"`), the time in RFC 3339.
async fn log_access(State(log): State<AccessLog>, request: Request<Body>, next: Next) -> Response {
    let Some(sink) = log.sink.clone() else { return next.run(request).await };
    let peer =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string()).unwrap_or("-".into());
    let line = format!("{} {} {:?}", request.method(), request.uri(), request.version());
    let (referer, agent) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
        (header("referer"), header("user-agent"))
    };
    let response = next.run(request).await;
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let entry =
        format!("{peer} - - [{time}] \"{line}\" {} {length} \"{referer}\" \"{agent}\"\n", response.status().as_u16());
    if let Ok(mut sink) = sink.lock() {
        let _ = sink.write_all(entry.as_bytes());
        let _ = sink.flush();
    }
    response
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // gunicorn's worker class does not apply here.
    let _ = &cli.worker_class;
    let helloworld = cli.app.as_deref().is_some_and(|app| app.starts_with("helloworld"));
    let address: SocketAddr = match cli.bind.parse() {
        Ok(address) => address,
        Err(_) => {
            eprintln!("Error: -b {:?} is not HOST:PORT", cli.bind);
            std::process::exit(2);
        }
    };
    let sink: Option<Box<dyn Write + Send>> = match cli.access_logfile.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Some(Box::new(file)),
            Err(error) => {
                eprintln!("Error: opening {path}: {error}");
                std::process::exit(1);
            }
        },
    };
    let log = AccessLog { sink: sink.map(|sink| Arc::new(std::sync::Mutex::new(sink))) };
    let routes = if helloworld { helloworld::router() } else { httpbin_routes() };
    let router = routes.layer(axum::middleware::from_fn_with_state(log, log_access));
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("Error: binding {address}: {error}");
            std::process::exit(1);
        }
    };
    println!("{} listening on {address}", if helloworld { "helloworld" } else { "httpbin" });
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(istio_runtime::shutdown_signal())
        .await;
    istio_runtime::exit_on_error(served);
}

fn httpbin_routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/status/{codes}", any(status))
        .route("/delay/{seconds}", any(delay))
        .route("/anything", any(anything))
        .route("/anything/{*rest}", any(anything))
        .route("/post", any(anything))
        .route("/put", any(anything))
        .route("/patch", any(anything))
        .route("/delete", any(anything))
        .route("/get", get(get_request))
        .route("/headers", get(|headers: HeaderMap| async move { Json(json!({"headers": headers_json(&headers)})) }))
        .route(
            "/ip",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| async move {
                Json(json!({"origin": origin(&headers, peer)}))
            }),
        )
        .route(
            "/user-agent",
            get(|headers: HeaderMap| async move {
                Json(json!({"user-agent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default()}))
            }),
        )
        .route("/response-headers", any(response_headers))
        .route("/bytes/{count}", get(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_title_cased_as_httpbin_does() {
        assert_eq!(title_case("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(title_case("user-agent"), "User-Agent");
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("a"));
        assert_eq!(headers_json(&headers), json!({"X-Request-Id": "a"}));
    }
}
