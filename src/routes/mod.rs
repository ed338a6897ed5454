//! The routes: the seed's three ([`seed`]), the database routes beyond the seed ([`visits`]), and
//! `/health`.

pub mod seed;
pub mod visits;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub use seed::{api_entry, apm_endpoint, trace_endpoint};

use crate::db::Database;

/// The service's routes: the three Flask routes and the database routes (`apm_demo::app` puts them
/// inside the service's layers).
pub fn service(db: Database) -> Router {
    let seed = Router::new()
        .route("/", get(api_entry))
        .route("/api/apm", get(apm_endpoint))
        .route("/api/trace", get(trace_endpoint));
    let visits = Router::new()
        .route("/api/visits", get(visits::list).post(visits::create))
        .route("/api/visits/{id}", get(visits::show))
        // `route_layer`: the routes only. (`layer` would also wrap this router's fallback, which
        // `merge` makes everybody's 404: +1,500 instructions on every unmatched request, callgrind.)
        .route_layer(DefaultBodyLimit::max(visits::BODY_LIMIT))
        .with_state(db);
    seed.merge(visits)
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
