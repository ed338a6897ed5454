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

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{HOST, USER_AGENT};
use http::{Method, StatusCode};
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{logs, propagation};

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

/// The middleware: opens the span, runs the request inside it, records the response.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let span = request_span(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();

    let response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    record_status(&span, status);
    let _inside = span.enter();
    let elapsed = started.elapsed();
    tracing::event!(
        target: ACCESS_LOG_TARGET,
        tracing::Level::INFO,
        http.method = method.as_str(),
        http.url_details.path = path.as_str(),
        http.status_code = status.as_u16(),
        duration = elapsed.as_nanos() as u64,
        "{method} {path} {} {:.3}ms",
        status.as_u16(),
        elapsed.as_secs_f64() * 1e3,
    );
    response
}

/// The span for a request, with every field known before the handler runs.
fn request_span(request: &Request) -> Span {
    let method = request.method();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let resource = match route {
        Some(route) => format!("{} {route}", resource_method(method)),
        None => format!("{} 404", resource_method(method)),
    };
    let headers = request.headers();
    let host =
        header_str(headers.get(HOST)).or_else(|| request.uri().authority().map(|a| a.as_str()));
    let url = match host {
        Some(host) => format!("http://{host}{}", request.uri().path()),
        None => request.uri().path().to_owned(),
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
        _dd.origin = Empty,
        _dd.p.tid = Empty,
    );

    let incoming = propagation::extract(headers);
    if let Some(parent) = incoming.parent {
        if let Some(high_bits) = incoming.trace_id_high {
            span.record("_dd.p.tid", high_bits.as_str());
        }
        // Fails only if the span had already started, which it cannot have here.
        let _ = span.set_parent(parent);
    }
    if let Some(origin) = incoming.origin {
        span.record("_dd.origin", origin.as_str());
    }
    logs::remember_trace_ids(&span);
    span
}

/// Records the status; a 5xx marks the span as an error (a 4xx is the client's, not the server's).
fn record_status(span: &Span, status: StatusCode) {
    span.record("http.status_code", status.as_str());
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
