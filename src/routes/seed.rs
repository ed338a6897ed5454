//! The Flask app's three endpoints, answered exactly as Flask answers them, plus `/health`.
//!
//! Flask sends a returned `str` as `text/html; charset=utf-8`; `Html` does the same. axum answers
//! HEAD for every GET route and 405 with an `Allow` header for a wrong method, as Flask does.

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde::Serialize;

/// `GET /`
pub async fn api_entry() -> Html<&'static str> {
    tracing::debug!("entrypoint requested");
    Html("Entrypoint to the Application")
}

/// `GET /api/apm`
pub async fn apm_endpoint() -> Html<&'static str> {
    tracing::debug!("apm endpoint requested");
    Html("Getting APM Started")
}

/// `GET /api/trace`
pub async fn trace_endpoint() -> Html<&'static str> {
    tracing::debug!("trace endpoint requested");
    Html("Posting Traces")
}

/// Who is answering, for container health checks.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub service: String,
    pub version: String,
}

/// `GET /health`: outside the trace layer, so health checks do not flood APM.
pub async fn health(State(health): State<Health>) -> Json<Health> {
    Json(health)
}
