//! The trace layer: the one place that decides every field of a request's Datadog span.
//!
//! Each request gets one server span, continued from the caller's trace headers when they are valid,
//! with the fields of the span contract (DESIGN.md): operation `http.server.request`, resource
//! `<METHOD> <route template>` (`<METHOD> 404` when no route matched, so raw paths never become
//! resources), type `web`, the `http.*` tags, and the error flag for 5xx. It also writes the access-log
//! line, inside the span, so that the line carries the trace ids.
//!
//! What is the same on every request (operation name, type, `span.kind`, `component`) is defined here
//! but stamped by the exporter on every server span (see `datadog`), off the request path: carried by
//! the tracing span, each would cost an owned string per request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{HOST, USER_AGENT};
use http::{Method, StatusCode};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::logs;
use super::propagation::{self, Incoming};
use crate::db::query::QueryError;
use crate::faults::{self, Injected};
use crate::limits::Limited;

/// Datadog operation name of the server span: the one Datadog's own Rust tracer (dd-trace-rs) gives
/// HTTP server spans, so trace metrics are `trace.http.server.request.*` whichever exporter is used.
pub const OPERATION_NAME: &str = "http.server.request";

/// Datadog span type of the server span.
pub const SPAN_TYPE: &str = "web";

/// The `component` tag: the framework that served the request.
pub const COMPONENT: &str = "axum";

/// Target of the request spans; the OpenTelemetry layer exports spans of this target only.
pub const SPAN_TARGET: &str = "apm_demo::http";

/// Target of the access-log lines.
pub const ACCESS_LOG_TARGET: &str = "apm_demo::access";

/// What the trace layer needs to know of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    /// Whether spans are exported (`DD_TRACE_ENABLED`): only then are the caller's trace headers read
    /// and the span's ids put on its log lines.
    pub exporting: bool,
}

/// The middleware: opens the span, runs the request inside it, records the response.
pub async fn trace_request(
    State(layer): State<TraceLayer>,
    request: Request,
    next: Next,
) -> Response {
    traced(layer, request, |request| next.run(request)).await
}

/// Runs `inner` on the request inside the request's span, and records its response: the trace
/// layer as a function, for a middleware that puts more around `inner` (`apm_demo::layered`).
pub async fn traced<F, Fut>(layer: TraceLayer, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let span = request_span(&request, layer);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();

    // The handler runs inside the span, so that its log lines carry the ids. (tracing's `Instrument`
    // would also enter the span once more to drop the finished future, which costs an enter/exit.)
    let mut handler = std::pin::pin!(inner(request));
    let response = std::future::poll_fn(|cx| {
        let _inside = span.enter();
        handler.as_mut().poll(cx)
    })
    .await;

    let status = response.status();
    record_status(&span, status);
    if let Some(limited) = response.extensions().get::<Limited>() {
        span.record("error.type", limited.error_type());
        span.record("error.message", limited.message());
    }
    // A database route that could not reach its database: the query's error on the request too.
    if let Some(failed) = response.extensions().get::<QueryError>() {
        span.record("error.type", failed.kind);
        span.record("error.message", failed.message.as_str());
    }
    // A request a fault flag touched: the flags on the span, and an injected 500 says which one.
    let fault = response.extensions().get::<Injected>();
    if let Some(fault) = fault {
        span.record("fault.injected", fault.flags.as_str());
        if let Some(message) = &fault.error {
            span.record("error.type", faults::ERROR_TYPE);
            span.record("error.message", message.as_str());
        }
    }
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros();
    // A child of the span, which gives the line its ids, without entering the span again.
    tracing::event!(
        target: ACCESS_LOG_TARGET,
        parent: &span,
        tracing::Level::INFO,
        http.method = method.as_str(),
        http.url_details.path = path.as_str(),
        http.status_code = status.as_u16(),
        duration = elapsed.as_nanos() as u64,
        fault.injected = fault.map(|f| f.flags.as_str()),
        // Milliseconds with 3 decimals, from whole microseconds (cheaper than formatting a float).
        "{method} {path} {} {}.{:03}ms",
        status.as_u16(),
        micros / 1000,
        micros % 1000,
    );
    response
}

/// The span for a request, with every field known before the handler runs.
fn request_span(request: &Request, layer: TraceLayer) -> Span {
    let method = request.method();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // Built with `concat` rather than `format!`: a request's strings, without the formatting machinery.
    let resource = [resource_method(method), " ", route.unwrap_or("404")].concat();
    let headers = request.headers();
    let host =
        header_str(headers.get(HOST)).or_else(|| request.uri().authority().map(|a| a.as_str()));
    let path = request.uri().path();
    let url = match host {
        Some(host) => ["http://", host, path].concat(),
        None => path.to_owned(),
    };

    // The caller's trace context matters only to exported spans.
    let incoming = if layer.exporting {
        propagation::extract(headers)
    } else {
        Incoming::default()
    };

    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "http.server.request",
        otel.name = resource.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.method = method.as_str(),
        http.route = route,
        http.url = url.as_str(),
        http.useragent = header_str(headers.get(USER_AGENT)),
        http.status_code = Empty,
        error.message = Empty,
        error.type = Empty,
        fault.injected = Empty,
        _dd.origin = Empty,
    );

    if let Some(parent) = incoming.parent {
        // Fails only if the span had already started, which it cannot have here.
        let _ = span.set_parent(parent);
    }
    if let Some(origin) = incoming.origin {
        span.record("_dd.origin", origin.as_str());
    }
    if layer.exporting {
        logs::remember_trace_ids(&span);
    }
    span
}

/// Records the status; a 5xx marks the span as an error (a 4xx is the client's, not the server's).
fn record_status(span: &Span, status: StatusCode) {
    // An integer, which the exporter writes as the string Datadog expects, without a string per span.
    span.record("http.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record(
            "error.message",
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end(),
        );
    }
}

/// The method as it goes into the resource: a standard method as is, anything else as `_OTHER`, so
/// that a client inventing methods cannot invent resources.
fn resource_method(method: &Method) -> &str {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::PATCH
        | Method::TRACE
        | Method::CONNECT => method.as_str(),
        _ => "_OTHER",
    }
}

fn header_str(value: Option<&http::HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_do_not_become_resources() {
        assert_eq!(resource_method(&Method::GET), "GET");
        assert_eq!(
            resource_method(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
