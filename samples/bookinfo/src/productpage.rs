//! productpage: the web front end. `/productpage` asks details (one try, 3 s) and reviews
//! (two tries, 3 s each, as the original did) and renders the page; `/login` and `/logout`
//! manage the session whose user is sent on as the `end-user` header; `/api/v1/products…` is
//! the JSON API; `/` is the index and `/health` the health check.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{forwarded, HttpClient};
use crate::page::{self, ProductView, DETAILS_ERROR, REVIEWS_ERROR};
use crate::session::{Sessions, COOKIE};

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const REVIEWS_TRIES: usize = 2;

/// Where productpage's peers are.
#[derive(Debug, Clone)]
pub struct Peers {
    pub details: String,
    pub reviews: String,
    pub ratings: String,
}

impl Peers {
    pub fn from_env() -> Self {
        Self {
            details: crate::peer_address("details"),
            reviews: crate::peer_address("reviews"),
            ratings: crate::peer_address("ratings"),
        }
    }
}

#[derive(Clone)]
struct ProductPage {
    peers: Peers,
    client: HttpClient,
    sessions: Sessions,
}

pub fn router(peers: Peers, sessions: Sessions) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/health", get(|| async { "Product page is healthy" }))
        .route("/login", post(login))
        .route("/logout", get(logout))
        .route("/productpage", get(product_page))
        .route("/api/v1/products", get(|| async { Json(page::products()) }))
        .route("/api/v1/products/{id}", get(api_details))
        .route("/api/v1/products/{id}/reviews", get(api_reviews))
        .route("/api/v1/products/{id}/ratings", get(api_ratings))
        .route("/static/{*path}", get(static_asset))
        .with_state(ProductPage { peers, client: HttpClient::default(), sessions })
}

/// Where Bootstrap 3 and jQuery are installed (Debian's `libjs-bootstrap` and `libjs-jquery`);
/// `BOOKINFO_STATIC_DIR` points elsewhere.
fn static_root() -> std::path::PathBuf {
    std::env::var_os("BOOKINFO_STATIC_DIR").map_or_else(|| "/usr/share/javascript".into(), Into::into)
}

/// The page's static files, as the original served them under `/static`: Bootstrap's CSS,
/// script and glyph fonts, and jQuery, read from the installed packages. Without Bootstrap,
/// its stylesheet path gets a small built-in one and the theme an empty one.
async fn static_asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let installed = match path.as_str() {
        "jquery.min.js" => Some("jquery/jquery.min.js".to_string()),
        "bootstrap/css/bootstrap.min.css"
        | "bootstrap/css/bootstrap-theme.min.css"
        | "bootstrap/js/bootstrap.min.js" => Some(path.clone()),
        font if font.starts_with("bootstrap/fonts/glyphicons-halflings-regular.") && !font.contains("..") => {
            Some(path.clone())
        }
        _ => None,
    };
    let Some(relative) = installed else { return StatusCode::NOT_FOUND.into_response() };
    let content_type = match relative.rsplit('.').next() {
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("svg") => "image/svg+xml",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(static_root().join(&relative)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) if path == "bootstrap/css/bootstrap.min.css" => {
            ([(header::CONTENT_TYPE, "text/css")], page::STYLESHEET).into_response()
        }
        Err(_) if path == "bootstrap/css/bootstrap-theme.min.css" => {
            ([(header::CONTENT_TYPE, "text/css")], "").into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn index(State(state): State<ProductPage>) -> Html<String> {
    let services = [
        ("productpage", "productpage".to_string()),
        ("details", format!("http://{}/details", state.peers.details)),
        ("reviews", format!("http://{}/reviews", state.peers.reviews)),
        ("ratings", format!("http://{}/ratings", state.peers.ratings)),
    ];
    Html(page::index(&services))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    #[serde(default)]
    #[allow(dead_code)]
    passwd: String,
}

async fn login(State(state): State<ProductPage>, Form(form): Form<LoginForm>) -> Response {
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly", state.sessions.encode(&form.username));
    redirect_with_cookie(&cookie)
}

async fn logout() -> Response {
    redirect_with_cookie(&format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly"))
}

fn redirect_with_cookie(cookie: &str) -> Response {
    let mut response = (StatusCode::FOUND, [(header::LOCATION, "productpage")]).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The headers sent to details and reviews: the forwarded ones, plus `end-user`.
fn outgoing_headers(state: &ProductPage, incoming: &HeaderMap) -> (HeaderMap, Option<String>) {
    let mut headers = forwarded(incoming);
    headers.remove("end-user");
    let user = state.sessions.user(incoming);
    if let Some(value) = user.as_deref().and_then(|user| HeaderValue::from_str(user).ok()) {
        headers.insert("end-user", value);
    }
    (headers, user)
}

async fn fetch_details(state: &ProductPage, id: i64, headers: &HeaderMap) -> (u16, Value) {
    match state.client.get(&state.peers.details, &format!("/details/{id}"), headers, CALL_TIMEOUT).await {
        Ok(reply) if reply.status == 200 => match reply.json() {
            Some(details) => (200, details),
            None => (500, json!({"error": DETAILS_ERROR})),
        },
        Ok(reply) => (reply.status, json!({"error": DETAILS_ERROR})),
        Err(error) => {
            tracing::info!(%error, "details call failed");
            (500, json!({"error": DETAILS_ERROR}))
        }
    }
}

async fn fetch_reviews(state: &ProductPage, id: i64, headers: &HeaderMap) -> (u16, Value) {
    let mut status = 500;
    for _ in 0..REVIEWS_TRIES {
        match state.client.get(&state.peers.reviews, &format!("/reviews/{id}"), headers, CALL_TIMEOUT).await {
            Ok(reply) if reply.status == 200 => {
                if let Some(reviews) = reply.json() {
                    return (200, reviews);
                }
            }
            Ok(reply) => status = reply.status,
            Err(error) => {
                tracing::info!(%error, "reviews call failed");
                status = 500;
            }
        }
    }
    (status, json!({"error": REVIEWS_ERROR}))
}

async fn product_page(State(state): State<ProductPage>, headers: HeaderMap) -> Html<String> {
    let (outgoing, user) = outgoing_headers(&state, &headers);
    let ((details_status, details), (reviews_status, reviews)) =
        tokio::join!(fetch_details(&state, 0, &outgoing), fetch_reviews(&state, 0, &outgoing));
    let view = ProductView {
        user: user.as_deref(),
        details: if details_status == 200 { Ok(&details) } else { Err(DETAILS_ERROR) },
        reviews: if reviews_status == 200 { Ok(&reviews) } else { Err(REVIEWS_ERROR) },
    };
    Html(page::product_page(&view))
}

fn status_json(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}

async fn api_details(State(state): State<ProductPage>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let (outgoing, _) = outgoing_headers(&state, &headers);
    let (status, body) = fetch_details(&state, id, &outgoing).await;
    status_json(status, body)
}

async fn api_reviews(State(state): State<ProductPage>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let (outgoing, _) = outgoing_headers(&state, &headers);
    let (status, body) = fetch_reviews(&state, id, &outgoing).await;
    status_json(status, body)
}

async fn api_ratings(State(state): State<ProductPage>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let (outgoing, _) = outgoing_headers(&state, &headers);
    match state.client.get(&state.peers.ratings, &format!("/ratings/{id}"), &outgoing, CALL_TIMEOUT).await {
        Ok(reply) => status_json(reply.status, reply.json().unwrap_or(Value::Null)),
        Err(_) => status_json(500, json!({"error": "Sorry, product ratings are currently unavailable for this book."})),
    }
}
