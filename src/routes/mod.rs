//! The routes: the seed's three ([`seed`]), the database routes beyond the seed ([`visits`]), and
//! `/health`.

pub mod seed;
pub mod visits;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

pub use seed::{api_entry, apm_endpoint, trace_endpoint};

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
