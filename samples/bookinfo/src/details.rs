//! The details service: `GET /details/<id>` answers the book's details as JSON, `/health`
//! reports health. (The original's v2 looked books up on an external API; this one serves
//! the same built-in record.)

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "Details is healthy"})) }))
        .route("/details/{id}", get(details))
}

async fn details(Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    match id.parse::<i64>() {
        Ok(id) => (StatusCode::OK, Json(book_details(id))),
        Err(_) => (StatusCode::BAD_REQUEST, Json(json!({"error": "please provide numeric product id"}))),
    }
}

/// The details of The Comedy of Errors, under the requested id.
pub fn book_details(id: i64) -> Value {
    json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    })
}
