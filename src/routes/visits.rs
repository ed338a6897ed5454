//! The database routes, beyond the seed: record a visit, read one by id, list the latest.
//!
//! Small on purpose: what matters is their telemetry. Each statement is a `mysql.query` span under
//! the request's span; `GET /api/visits/{id}` is one resource in APM whatever the id (the route
//! template, not the path). When the database is down, slow or not configured, they answer 503 with
//! `Retry-After` at once, and the request's span carries the query's error.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::header::{RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::db::query::QueryError;
use crate::db::{Database, TEXT_LIMIT};
use crate::telemetry::contract::SpanError;

/// Largest request body the routes read: a visit is a few dozen bytes.
pub const BODY_LIMIT: usize = 4 * 1024;

/// `POST /api/visits`'s body; empty is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVisit {
    page: Option<String>,
}

/// `POST /api/visits`: records a visit (the page named in the body, and the caller's user agent);
/// answers 201 with it.
pub async fn create(State(db): State<Database>, headers: HeaderMap, body: Bytes) -> Response {
    let visit: NewVisit = if body.iter().all(u8::is_ascii_whitespace) {
        NewVisit::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(visit) => visit,
            Err(error) => return client_error(StatusCode::BAD_REQUEST, &format!("body: {error}")),
        }
    };
    if let Some(page) = &visit.page
        && page.chars().count() > TEXT_LIMIT
    {
        return client_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("page: at most {TEXT_LIMIT} characters"),
        );
    }
    let user_agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncate(ua, TEXT_LIMIT));
    let page = visit.page.as_deref();
    let id = match db.insert_visit(page, user_agent).await {
        Ok(id) => id,
        Err(error) => return unavailable(error),
    };
    match db.visit(id).await {
        Ok(Some(visit)) => (StatusCode::CREATED, Json(visit)).into_response(),
        Ok(None) => unavailable(QueryError {
            kind: "database_error",
            message: "the visit just recorded was not found".to_owned(),
        }),
        Err(error) => unavailable(error),
    }
}

/// `GET /api/visits/{id}`: 200 with the visit, or 404.
pub async fn show(State(db): State<Database>, Path(id): Path<u64>) -> Response {
    match db.visit(id).await {
        Ok(Some(visit)) => Json(visit).into_response(),
        Ok(None) => client_error(StatusCode::NOT_FOUND, "no such visit"),
        Err(error) => unavailable(error),
    }
}

/// `GET /api/visits`: the latest ten, newest first.
pub async fn list(State(db): State<Database>) -> Response {
    match db.latest_visits().await {
        Ok(visits) => Json(visits).into_response(),
        Err(error) => unavailable(error),
    }
}

/// The answer when the database failed: 503 with `Retry-After`, the error for the request's span in
/// the response's extensions (read by the trace layer), and for the client what failed.
fn unavailable(error: QueryError) -> Response {
    let body = serde_json::json!({ "error": error.message, "error_type": error.kind });
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(SpanError::new(error.kind, error.message));
    response
}

fn client_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// At most `limit` characters of `text`.
fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("", 0), "");
    }
}
