//! The reviews service: `GET /reviews/<id>` answers the two reviews. With `ENABLE_RATINGS`
//! (v2, v3) it asks ratings for the stars and colours them `STAR_COLOR` (v2 black, v3 red);
//! the ratings call times out after 10 s for black and 2.5 s for other colours, as the
//! original did, and a failed call shows `Ratings service is currently unavailable`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::client::{forwarded, HttpClient};

/// How this instance behaves (the original image's environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub enable_ratings: bool,
    pub star_color: String,
    /// `host:port` of the ratings service.
    pub ratings_address: String,
}

impl Settings {
    /// The original's variables: `ENABLE_RATINGS`, `STAR_COLOR`, plus where ratings is.
    pub fn from_env() -> Self {
        Self {
            enable_ratings: std::env::var("ENABLE_RATINGS").is_ok_and(|value| value == "true"),
            star_color: std::env::var("STAR_COLOR").ok().filter(|color| !color.is_empty()).unwrap_or("black".into()),
            ratings_address: crate::peer_address("ratings"),
        }
    }

    fn ratings_timeout(&self) -> Duration {
        if self.star_color == "black" {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(2500)
        }
    }
}

#[derive(Clone)]
struct Reviews {
    settings: Settings,
    client: HttpClient,
}

pub fn router(settings: Settings) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "Reviews is healthy"})) }))
        .route("/reviews/{id}", get(reviews))
        .with_state(Reviews { settings, client: HttpClient::default() })
}

const REVIEWS: [(&str, &str); 2] = [
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
];

async fn reviews(
    State(state): State<Reviews>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if id.parse::<i64>().is_err() {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "please provide numeric product id"})));
    }
    let ratings = if state.settings.enable_ratings {
        let reply = state
            .client
            .get(
                &state.settings.ratings_address,
                &format!("/ratings/{id}"),
                &forwarded(&headers),
                state.settings.ratings_timeout(),
            )
            .await;
        match reply {
            Ok(reply) if reply.status == 200 => reply.json().map(|body| body["ratings"].clone()),
            Ok(reply) => {
                tracing::info!(status = reply.status, "ratings answered with an error");
                None
            }
            Err(error) => {
                tracing::info!(%error, "ratings call failed");
                None
            }
        }
    } else {
        None
    };
    let reviews: Vec<Value> = REVIEWS
        .iter()
        .map(|(reviewer, text)| {
            let mut review = json!({"reviewer": reviewer, "text": text});
            if state.settings.enable_ratings {
                review["rating"] =
                    match ratings.as_ref().and_then(|ratings| ratings.get(*reviewer)).and_then(Value::as_i64) {
                        Some(stars) => json!({"stars": stars, "color": state.settings.star_color}),
                        None => json!({"error": "Ratings service is currently unavailable"}),
                    };
            }
            review
        })
        .collect();
    (StatusCode::OK, Json(json!({"id": id, "reviews": reviews})))
}
