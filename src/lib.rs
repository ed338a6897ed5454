//! apm-demo: the seed exercise's Flask app as an axum service, traced into Datadog.
//!
//! A request travels top to bottom through [`app`]: the router picks a route, the trace layer
//! ([`telemetry::trace_layer`]) opens the request's server span, the handler ([`routes`]) answers,
//! and the span leaves through the exporter ([`telemetry`]) without the request waiting for it.
//! `main.rs` and the tests share [`Application`], so tests run the real service on port 0.

pub mod config;
pub mod healthcheck;
pub mod routes;
pub mod telemetry;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::routes::Health;
use crate::telemetry::trace_layer::TraceLayer;

/// The router: the three Flask routes inside the trace layer, `/health` outside it.
pub fn app(config: &Config) -> Router {
    let health = Health {
        status: "ok",
        service: config.dd_service.clone(),
        version: config.dd_version.clone(),
    };
    Router::new()
        .route("/", get(routes::api_entry))
        .route("/api/apm", get(routes::apm_endpoint))
        .route("/api/trace", get(routes::trace_endpoint))
        // A panicking handler answers 500 inside its span instead of dropping the connection.
        .layer(CatchPanicLayer::new())
        // `layer` also wraps the fallback, so an unmatched path gets its span (`GET 404`).
        .layer(axum::middleware::from_fn_with_state(
            TraceLayer {
                exporting: config.dd_trace_enabled,
            },
            telemetry::trace_layer::trace_request,
        ))
        .route("/health", get(routes::health).with_state(health))
}

/// The service bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds the configured address (port 0 picks a free port, which [`Self::local_addr`] tells).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen_addr()).await?;
        Ok(Self {
            listener,
            router: app(config),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish,
    /// for at most `grace`. Returns whether every connection finished in time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<bool> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
        let mut serve = std::pin::pin!(serve.into_future());
        tokio::select! {
            result = &mut serve => result.map(|()| true),
            _ = stopping_rx => {
                match tokio::time::timeout(grace, serve).await {
                    Ok(result) => result.map(|()| true),
                    Err(_) => Ok(false),
                }
            }
        }
    }
}
