//! The trace layer: the one place that decides every field of a request's Datadog span.
//!
//! Each request gets one server span, continued from the caller's trace headers when they are valid,
//! with the fields of the span contract (docs/service.md#the-span-contract): operation
//! `http.server.request`, resource `<METHOD> <route template>` (`<METHOD> 404` when no route matched,
//! so raw paths never become resources), type `web`, the `http.*` tags, and the error flag for 5xx.
//! It also writes the access-log line, inside the span, so that the line carries the trace ids.
//!
//! What the rest of the service has to say about a response arrives as the contract's extensions
//! ([`SpanError`], [`FaultsApplied`]); a handler's panic becomes a 500 with the panic's message
//! ([`panic_response`]).
//!
//! What is the same on every request (operation name, type, `span.kind`, `component`) is stamped by
//! the opentelemetry-datadog exporter on its own thread: carried by the tracing span, each would
//! cost an owned string per request. Datadog's own exporter derives the name, type and kind itself but
//! maps only what the span carries, so with it the span carries a little more ([`SpanFields`]).

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{HOST, USER_AGENT};
use http::{Method, StatusCode};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::contract::server::{ACCESS_LOG_TARGET, COMPONENT, SPAN_TARGET};
use super::contract::{FaultsApplied, InjectedPanic, SpanError};
use super::logs;
use super::propagation::{Extract, Incoming};

/// Longest client-sent value (URL, user agent) copied into a span or a log line, in bytes; a longer one
/// is cut at a character boundary and ends in `...`, as the Datadog Agent marks the values it
/// truncates. So that whatever a client sends, a queued span stays about this small (the queue's
/// memory bound counts spans, not bytes).
pub const MAX_CLIENT_VALUE: usize = 1024;

/// The `error.type` of a request whose handler panicked.
pub const PANIC_ERROR_TYPE: &str = "panic";

/// What the trace layer needs to know of the telemetry it reports to ([`super::Telemetry::trace_layer`]).
#[derive(Debug, Clone, Default)]
pub struct TraceLayer {
    /// How the exporter reads a caller's trace headers; `None` when spans are not exported (then the
    /// headers are not read, and log lines carry no ids).
    pub(super) extract: Option<Arc<dyn Extract>>,
    /// What the span carries for its exporter.
    pub(super) fields: SpanFields,
}

/// How much of the span contract the span itself carries, for the exporter that reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpanFields {
    /// The exporter stamps what is the same on every span (`component`, type, kind, operation name)
    /// on its own thread, and writes the integer status as Datadog's string: opentelemetry-datadog,
    /// with the project's additions.
    #[default]
    Lean,
    /// The exporter maps what the span carries, with rules of its own: the span carries `component`,
    /// the resource where the exporter's rule would make another (an unmatched path, an invented
    /// method), and the status as a string (an integer would also become a metric):
    /// datadog-opentelemetry.
    Complete,
}

impl TraceLayer {
    /// A layer whose spans go nowhere: no header is read, no id is logged.
    pub fn not_exporting() -> Self {
        Self::default()
    }

    fn exporting(&self) -> bool {
        self.extract.is_some()
    }

    /// What the request's headers say about its trace, read as the exporter reads them.
    pub fn incoming(&self, headers: &http::HeaderMap) -> Incoming {
        match &self.extract {
            Some(extract) => extract.extract(headers),
            None => Incoming::default(),
        }
    }
}

/// The middleware: opens the span, runs the request inside it, records the response.
pub async fn trace_request(
    State(layer): State<TraceLayer>,
    request: Request,
    next: Next,
) -> Response {
    traced(&layer, request, |request| next.run(request)).await
}

/// Runs `inner` on the request inside the request's span, and records its response: the trace
/// layer as a function, for a middleware that puts more around `inner` (`apm_demo::layered`).
pub async fn traced<F, Fut>(layer: &TraceLayer, request: Request, inner: F) -> Response
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
    record_status(
        &span,
        status,
        layer.fields,
        response.extensions().get::<SpanError>(),
    );
    let fault = response.extensions().get::<FaultsApplied>();
    if let Some(FaultsApplied(flags)) = fault {
        span.record("fault.injected", flags.as_str());
    }
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros();
    let path = capped(&path);
    // A child of the span, which gives the line its ids, without entering the span again.
    tracing::event!(
        target: ACCESS_LOG_TARGET,
        parent: &span,
        tracing::Level::INFO,
        http.method = method.as_str(),
        http.url_details.path = path.as_ref(),
        http.status_code = status.as_u16(),
        duration = elapsed.as_nanos() as u64,
        fault.injected = fault.map(|FaultsApplied(flags)| flags.as_str()),
        // Milliseconds with 3 decimals, from whole microseconds (cheaper than formatting a float).
        "{method} {path} {} {}.{:03}ms",
        status.as_u16(),
        micros / 1000,
        micros % 1000,
    );
    response
}

/// The span for a request, with every field known before the handler runs.
fn request_span(request: &Request, layer: &TraceLayer) -> Span {
    let method = request.method();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let method_name = resource_method(method);
    // Built with `concat` rather than `format!`: a request's strings, without the formatting machinery.
    let resource = [method_name, " ", route.unwrap_or("404")].concat();
    let headers = request.headers();
    let host =
        header_str(headers.get(HOST)).or_else(|| request.uri().authority().map(|a| a.as_str()));
    let path = request.uri().path();
    let url = match host {
        Some(host) => ["http://", host, path].concat(),
        None => path.to_owned(),
    };

    // The caller's trace context matters only to exported spans.
    let incoming = layer.incoming(headers);

    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "http.server.request",
        otel.name = resource.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        resource.name = Empty,
        component = Empty,
        http.method = method.as_str(),
        http.route = route,
        http.url = capped(&url).as_ref(),
        http.useragent = header_str(headers.get(USER_AGENT)).map(capped).as_deref(),
        http.status_code = Empty,
        error.message = Empty,
        error.type = Empty,
        fault.injected = Empty,
        _dd.origin = Empty,
    );

    if layer.fields == SpanFields::Complete {
        span.record("component", COMPONENT);
        // Datadog's exporter makes the resource from `http.method` and `http.route`: without a route,
        // or for an invented method (`HTTP` there), it would not be the contract's.
        if route.is_none() || method_name != method.as_str() {
            span.record("resource.name", resource.as_str());
        }
    }
    if let Some(parent) = incoming.parent {
        // Fails only if the span had already started, which it cannot have here.
        let _ = span.set_parent(parent);
    }
    if let Some(origin) = incoming.origin {
        span.record("_dd.origin", origin.as_str());
    }
    if layer.exporting() {
        logs::remember_trace_ids(&span);
    }
    span
}

/// Records the status; a 5xx marks the span as an error (a 4xx is the client's, not the server's),
/// with the `error` the service described, else the status as the message. Each field is recorded
/// once: an exporter may keep the first of two values (datadog-opentelemetry does), or the last.
fn record_status(span: &Span, status: StatusCode, fields: SpanFields, error: Option<&SpanError>) {
    match fields {
        // An integer, which the exporter writes as the string Datadog expects, without a string per
        // span.
        SpanFields::Lean => span.record("http.status_code", i64::from(status.as_u16())),
        SpanFields::Complete => span.record("http.status_code", status.as_str()),
    };
    if let Some(error) = error {
        span.record("error.type", error.kind);
        span.record("error.message", capped(&error.message).as_ref());
    }
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        if error.is_none() {
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
}

/// The answer for a handler that panicked (tower-http's `CatchPanicLayer::custom`): 500, with the
/// panic's message for the span (`error.type: panic`) and an error log line inside the request's
/// span, so the line carries the trace ids. The client learns nothing of the message.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = capped(&panic_message(payload.as_ref())).into_owned();
    tracing::event!(
        tracing::Level::ERROR,
        error.type = PANIC_ERROR_TYPE,
        "the handler panicked: {message}"
    );
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    let extensions = response.extensions_mut();
    if let Ok(injected) = payload.downcast::<InjectedPanic>() {
        extensions.insert(injected.flags);
    }
    extensions.insert(SpanError::new(PANIC_ERROR_TYPE, message));
    response
}

/// A panic's message: its text, or a fault's ([`InjectedPanic`]).
pub fn panic_message(payload: &(dyn Any + Send)) -> Cow<'_, str> {
    if let Some(message) = payload.downcast_ref::<String>() {
        Cow::Borrowed(message)
    } else if let Some(message) = payload.downcast_ref::<&'static str>() {
        Cow::Borrowed(message)
    } else if let Some(injected) = payload.downcast_ref::<InjectedPanic>() {
        Cow::Borrowed(&injected.message)
    } else {
        Cow::Borrowed("a panic with a payload that is not text")
    }
}

/// `value`, or its first [`MAX_CLIENT_VALUE`] bytes (at a character boundary) and `...`.
pub fn capped(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_CLIENT_VALUE {
        return Cow::Borrowed(value);
    }
    let mut end = MAX_CLIENT_VALUE;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned([&value[..end], "..."].concat())
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

    #[test]
    fn client_values_are_capped_at_a_character_boundary_and_marked() {
        let short = "a".repeat(MAX_CLIENT_VALUE);
        assert!(matches!(capped(&short), Cow::Borrowed(s) if s == short));
        let long = "a".repeat(MAX_CLIENT_VALUE + 1);
        assert_eq!(
            capped(&long),
            ["a".repeat(MAX_CLIENT_VALUE), "...".into()].concat()
        );
        // A two-byte character across the limit is left out whole.
        let straddling = ["a".repeat(MAX_CLIENT_VALUE - 1), "é".into()].concat();
        assert_eq!(
            capped(&straddling),
            ["a".repeat(MAX_CLIENT_VALUE - 1), "...".into()].concat()
        );
    }

    #[test]
    fn a_panic_is_a_500_whose_span_error_is_the_message() {
        let response = panic_response(Box::new(String::from("index out of bounds")));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get(),
            Some(&SpanError::new(PANIC_ERROR_TYPE, "index out of bounds"))
        );
        let response = panic_response(Box::new("static text"));
        assert_eq!(
            response.extensions().get::<SpanError>().unwrap().message,
            "static text"
        );
        let response = panic_response(Box::new(42_u8));
        assert_eq!(
            response.extensions().get::<SpanError>().unwrap().message,
            "a panic with a payload that is not text"
        );
        assert!(response.extensions().get::<FaultsApplied>().is_none());
        let response = panic_response(Box::new(InjectedPanic {
            flags: FaultsApplied("routePanic".to_owned()),
            message: "fault injected by flag routePanic".to_owned(),
        }));
        assert_eq!(
            response.extensions().get(),
            Some(&FaultsApplied("routePanic".to_owned()))
        );
        assert_eq!(
            response.extensions().get::<SpanError>().unwrap().message,
            "fault injected by flag routePanic"
        );
    }
}
