//! The ratings service: `GET /ratings/<id>` answers each reviewer's stars, `POST` replaces
//! them. `SERVICE_VERSION` picks the original's variants: `v-faulty` fails half the requests
//! with 503, `v-delayed` delays half of them by 7 s, `v-unavailable` always fails, and
//! `v-unhealthy` turns unhealthy (and unavailable) after its first 15 minutes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Which of the original's behaviours this instance has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Normal,
    Faulty,
    Delayed,
    Unavailable,
    Unhealthy,
}

impl Variant {
    pub fn from_service_version(version: &str) -> Self {
        match version {
            "v-faulty" => Self::Faulty,
            "v-delayed" => Self::Delayed,
            "v-unavailable" => Self::Unavailable,
            "v-unhealthy" => Self::Unhealthy,
            _ => Self::Normal,
        }
    }
}

#[derive(Clone)]
struct Ratings {
    variant: Variant,
    started: Instant,
    ratings: Arc<Mutex<BTreeMap<i64, BTreeMap<String, i64>>>>,
}

impl Ratings {
    fn unhealthy(&self) -> bool {
        match self.variant {
            Variant::Unavailable => true,
            Variant::Unhealthy => self.started.elapsed() > Duration::from_secs(15 * 60),
            _ => false,
        }
    }
}

pub fn router(variant: Variant) -> Router {
    let state = Ratings { variant, started: Instant::now(), ratings: Arc::default() };
    Router::new()
        .route("/health", get(health))
        .route("/ratings/{id}", get(get_ratings).post(set_ratings))
        .with_state(state)
}

fn default_ratings() -> BTreeMap<String, i64> {
    BTreeMap::from([("Reviewer1".to_string(), 5), ("Reviewer2".to_string(), 4)])
}

async fn health(State(state): State<Ratings>) -> (StatusCode, Json<Value>) {
    if state.unhealthy() {
        (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"status": "Ratings is not healthy"})))
    } else {
        (StatusCode::OK, Json(json!({"status": "Ratings is healthy"})))
    }
}

async fn get_ratings(State(state): State<Ratings>, Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "please provide numeric product ID"})));
    };
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "Service unavailable"})));
    match state.variant {
        Variant::Faulty if rand::random::<bool>() => return unavailable(),
        Variant::Delayed if rand::random::<bool>() => tokio::time::sleep(Duration::from_secs(7)).await,
        _ if state.unhealthy() => return unavailable(),
        _ => {}
    }
    let ratings = istio_runtime::sync::lock(&state.ratings).get(&id).cloned();
    (StatusCode::OK, Json(json!({"id": id, "ratings": ratings.unwrap_or_else(default_ratings)})))
}

async fn set_ratings(
    State(state): State<Ratings>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "please provide numeric product ID"})));
    };
    let Some(given) = body.as_object() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "please provide the ratings as a JSON object"})));
    };
    let mut ratings = BTreeMap::new();
    for (reviewer, stars) in given {
        match stars.as_i64() {
            Some(stars) => ratings.insert(reviewer.clone(), stars),
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": format!("rating of {reviewer} is not a number")})),
                )
            }
        };
    }
    istio_runtime::sync::lock(&state.ratings).insert(id, ratings.clone());
    (StatusCode::OK, Json(json!({"id": id, "ratings": ratings})))
}
