//! `GET /api/apm` with the service's request span (same name, fields and status record), exported by
//! dd-trace-rs (`datadog-opentelemetry`) when `TRACED=1`, on `127.0.0.1:$PORT`. It writes no log
//! lines, so its instructions per request compare with the service's span path, not its logs.
//! The tracer reads its own configuration (`DD_TRACE_AGENT_URL`, `DD_SERVICE`) from the environment.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

async fn trace_request(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let resource = [request.method().as_str(), " ", route.unwrap_or("404")].concat();
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    let url = ["http://", host.unwrap_or(""), request.uri().path()].concat();
    let span = tracing::info_span!(
        "http.server.request",
        otel.name = resource.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.method = request.method().as_str(),
        http.route = route,
        http.url = url.as_str(),
        http.useragent = headers.get("user-agent").and_then(|v| v.to_str().ok()),
        http.status_code = Empty,
    );
    let mut handler = std::pin::pin!(next.run(request));
    let response = std::future::poll_fn(|cx| {
        let _inside = span.enter();
        handler.as_mut().poll(cx)
    })
    .await;
    span.record("http.status_code", i64::from(response.status().as_u16()));
    response
}

#[tokio::main]
async fn main() {
    let traced = std::env::var("TRACED").as_deref() == Ok("1");
    let provider = traced.then(|| datadog_opentelemetry::tracing().init());
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("dd-trace-rs-fixture"))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
    });
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel)).unwrap();
    let app = axum::Router::new()
        .route("/api/apm", get(|| async { "Getting APM Started" }))
        .layer(axum::middleware::from_fn(trace_request));
    let port = std::env::var("PORT").expect("PORT");
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut terminate = signal(SignalKind::terminate()).unwrap();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminate.recv().await;
        })
        .await
        .unwrap();
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
}
