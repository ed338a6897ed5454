//! The Flask app's three endpoints, answered exactly as Flask answers them. They never touch the
//! database: a database that is down costs them nothing.
//!
//! Flask sends a returned `str` as `text/html; charset=utf-8`; `Html` does the same. axum answers
//! HEAD for every GET route and 405 with an `Allow` header for a wrong method, as Flask does.

use axum::response::Html;

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
