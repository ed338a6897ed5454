//! The span contract's names (docs/service.md#the-span-contract), and how the rest of the service
//! tells the trace layer about a response: a leaf module that every part may import and that imports
//! nothing of the service.
//!
//! Limits, the database and the faults never touch the request's span themselves: each sets a
//! [`SpanError`] (and the faults a [`FaultsApplied`]) on the response it answers with, and the trace
//! layer, which knows none of them, copies it onto the span and the access log.

use std::borrow::Cow;

/// The request's server span.
pub mod server {
    /// Datadog operation name: the one Datadog's own Rust tracer (dd-trace-rs) gives HTTP server
    /// spans, so trace metrics are `trace.http.server.request.*` whichever exporter is used.
    pub const OPERATION_NAME: &str = "http.server.request";
    /// Datadog span type.
    pub const SPAN_TYPE: &str = "web";
    /// The `component` tag: the framework that served the request.
    pub const COMPONENT: &str = "axum";
    /// `tracing` target of the request spans; the OpenTelemetry layer exports spans of this target.
    pub const SPAN_TARGET: &str = "apm_demo::http";
    /// `tracing` target of the access-log lines.
    pub const ACCESS_LOG_TARGET: &str = "apm_demo::access";
}

/// A database statement's client span.
pub mod query {
    /// Datadog operation name: dd-trace-py's (`mysql.query` in its v1 naming schema) and
    /// dd-trace-rs's (`<db.system>.query`), so the trace metrics are `trace.mysql.query.*`.
    pub const OPERATION_NAME: &str = "mysql.query";
    /// Datadog span type.
    pub const SPAN_TYPE: &str = "sql";
    /// The `component` tag: the client library.
    pub const COMPONENT: &str = "mysql_async";
    /// `tracing` target of the query spans; the OpenTelemetry layer exports spans of this target too.
    pub const SPAN_TARGET: &str = "apm_demo::db";
}

/// Why a response is an error, for the request's span: `error.type` (a value to filter on in
/// Datadog, `@error.type:load_shed`) and `error.message`. Set on the response's extensions by
/// whoever answered for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanError {
    pub kind: &'static str,
    pub message: Cow<'static, str>,
}

impl SpanError {
    pub fn new(kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The fault flags that acted on a request, comma-separated: the span's and the access log's
/// `fault.injected`. Set on the response's extensions by the fault layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultsApplied(pub String);

/// The payload of a panic a fault flag raises (`std::panic::panic_any`): a panic unwinds past the
/// fault layer and reaches the panic handler with its payload alone, so the payload carries the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedPanic {
    pub flags: FaultsApplied,
    pub message: String,
}
