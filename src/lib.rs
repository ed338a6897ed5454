//! apm-demo: the seed exercise's Flask app as an axum service, traced into Datadog.
//!
//! A request travels top to bottom through [`app`]: the router picks a route, the trace layer
//! ([`telemetry::trace_layer`]) opens the request's server span, the handler ([`routes`]) answers
//! (the database routes through [`db`], a client span per statement), and the spans leave through
//! the exporter ([`telemetry`]) without the request waiting for them.
//! `main.rs` and the tests share [`Application`], so tests run the real service on port 0.

pub mod config;
pub mod db;
pub mod faults;
pub mod healthcheck;
pub mod limits;
pub mod routes;
pub mod server;
pub mod telemetry;

pub use server::Application;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::db::Database;
use crate::limits::Limits;
use crate::routes::Health;
use crate::telemetry::trace_layer::TraceLayer;

/// The router: the three Flask routes and the database routes inside the service's layers
/// ([`layered`]), `/health` outside them (an orchestrator's probe must see a busy service as alive
/// rather than be shed; and it is not traced: health checks would flood APM).
pub fn app(config: &Config) -> Router {
    app_with(config, Database::new(config))
}

/// [`app`] on the given database (`main` keeps it to close its pool at shutdown).
pub fn app_with(config: &Config, db: Database) -> Router {
    let seed = Router::new()
        .route("/", get(routes::api_entry))
        .route("/api/apm", get(routes::apm_endpoint))
        .route("/api/trace", get(routes::trace_endpoint));
    let visits = Router::new()
        .route(
            "/api/visits",
            get(routes::visits::list).post(routes::visits::create),
        )
        .route("/api/visits/{id}", get(routes::visits::show))
        // `route_layer`: the routes only. (`layer` would also wrap this router's fallback, which
        // `merge` makes everybody's 404: +1,500 instructions on every unmatched request, callgrind.)
        .route_layer(DefaultBodyLimit::max(routes::visits::BODY_LIMIT))
        .with_state(db);
    with_health(layered(seed.merge(visits), config), config)
}

/// `router` and `/health`, the latter outside every layer of `router`.
pub fn with_health(router: Router, config: &Config) -> Router {
    let health = Health {
        status: "ok",
        service: config.dd_service.clone(),
        version: config.dd_version.clone(),
    };
    router.route("/health", get(routes::health).with_state(health))
}

/// `routes` inside the layers every traced request passes, innermost first: the fault flags
/// ([`faults`]), a panic caught as 500, the request limits ([`limits`]), the trace layer. `layer`
/// also wraps the fallback, so an unmatched path gets its span (`GET 404`) and its limits too.
pub fn layered(routes: Router, config: &Config) -> Router {
    routes
        // A panicking handler answers 500 inside its span instead of dropping the connection; inside
        // it the fault flags (docs/faults.md), within the limits: an injected delay ends at the
        // deadline. One router layer for both: each costs a boxed clone and future per request
        // (a layer of its own for the flags measured 3,600 instructions per request, flags off).
        .layer(
            tower::ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(faults::layer(config)),
        )
        // The span, and inside it the deadline and the in-flight bound: a shed request still has one.
        .layer(axum::middleware::from_fn_with_state(
            Edge {
                trace: TraceLayer {
                    exporting: config.dd_trace_enabled,
                },
                limits: Limits::new(config.max_in_flight as usize, config.request_timeout),
            },
            edge,
        ))
}

/// What the outermost middleware needs: the trace layer's settings and the request limits.
#[derive(Clone)]
struct Edge {
    trace: TraceLayer,
    limits: Limits,
}

/// The trace layer, then the limits inside the span: one middleware rather than two, since each
/// axum middleware layer costs a boxed service per request.
async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    telemetry::trace_layer::traced(edge.trace, request, |request| {
        edge.limits.run(request, next)
    })
    .await
}
