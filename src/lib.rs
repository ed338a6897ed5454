//! apm-demo: the seed exercise's Flask app as an axum service, traced into Datadog.
//!
//! A request travels top to bottom through [`app`]: the router picks a route, the trace layer
//! ([`telemetry::trace_layer`]) opens the request's server span, the handler ([`routes`]) answers
//! (the database routes through [`db`], a client span per statement), and the spans leave through
//! the exporter ([`telemetry`]) without the request waiting for them.
//! `main.rs` and the tests build the service the same way: [`app`] on [`routes::service`] (or routes
//! of their own), bound and served by [`Application`], so tests run the real service on port 0.

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
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::limits::Limits;
use crate::routes::Health;
use crate::telemetry::trace_layer::{self, TraceLayer};

/// The service: `routes` inside the layers every traced request passes, and `/health` outside them
/// (an orchestrator's probe must see a busy service as alive rather than be shed; and it is not
/// traced: health checks would flood APM).
///
/// The layers, outermost first: the trace layer (the request's span, from [`TraceLayer`], which the
/// telemetry hands out: `Telemetry::trace_layer`), the request limits ([`limits`]: a shed request
/// still has its span), the panic handler (a panicking handler answers 500 inside its span), the
/// fault flags ([`faults`]: inside the limits, so an injected delay ends at the deadline). `layer`
/// also wraps the fallback, so an unmatched path gets its span (`GET 404`) and its limits too.
pub fn app(config: &Config, trace: TraceLayer, routes: Router) -> Router {
    let health = Health {
        status: "ok",
        service: config.datadog.dd_service.clone(),
        version: config.datadog.dd_version.clone(),
    };
    routes
        // One router layer for both: each costs a boxed clone and future per request (a layer of its
        // own for the flags measured 3,600 instructions per request, flags off).
        .layer(
            tower::ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(trace_layer::panic_response))
                .layer(faults::layer(&config.faults)),
        )
        .layer(axum::middleware::from_fn_with_state(
            Edge {
                trace,
                limits: Limits::new(
                    config.server.max_in_flight as usize,
                    config.server.request_timeout,
                ),
            },
            edge,
        ))
        .route("/health", get(routes::health).with_state(health))
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
    trace_layer::traced(&edge.trace, request, |request| {
        edge.limits.run(request, next)
    })
    .await
}
