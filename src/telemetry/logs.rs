//! Log line formats: the Flask app's text format, and JSON with Datadog's correlation attributes.
//!
//! With log injection on, a line written inside a request carries the ids of the request's span as
//! the trace agent receives them (`dd.trace_id` is the low 64 bits, in decimal), plus `dd.service`,
//! `dd.env` and `dd.version`, which is what the Datadog Agent needs to link a log to its trace.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// The service's unified tags, for log lines.
#[derive(Debug, Clone)]
pub struct ServiceTags {
    pub service: String,
    pub env: String,
    pub version: String,
}

/// The log layer: writes each event as one line, in `format`, adding Datadog correlation when
/// `tags` is set. It ignores spans (nothing is formatted per request beyond the lines themselves).
pub struct LogLayer<W> {
    format: LogFormat,
    tags: Option<ServiceTags>,
    writer: W,
}

impl<W> LogLayer<W> {
    /// `tags: None` turns log injection off (`DD_LOGS_INJECTION=false`).
    pub fn new(format: LogFormat, tags: Option<ServiceTags>, writer: W) -> Self {
        Self {
            format,
            tags,
            writer,
        }
    }

    fn format(&self, event: &Event<'_>, ids: Option<TraceIds>) -> String {
        let now = OffsetDateTime::now_utc();
        let meta = event.metadata();
        let ids = ids.filter(|_| self.tags.is_some());
        match self.format {
            LogFormat::Text => {
                // `%(asctime)s - %(name)s - %(levelname)s - %(message)s`; asctime as Python writes it.
                let asctime = format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second],[subsecond digits:3]"
                );
                let time = now.format(asctime).unwrap_or_default();
                let mut line = format!("{time} - {} - {} - ", meta.target(), meta.level());
                if let (Some(tags), Some(ids)) = (&self.tags, ids) {
                    let _ = write!(
                        line,
                        "[dd.service={} dd.env={} dd.version={} dd.trace_id={} dd.span_id={}] ",
                        tags.service, tags.env, tags.version, ids.trace_id, ids.span_id
                    );
                }
                let mut fields = TextFields {
                    line,
                    fields: String::new(),
                };
                event.record(&mut fields);
                let mut line = fields.line;
                line.push_str(&fields.fields);
                line.push('\n');
                line
            }
            LogFormat::Json => {
                let mut fields = JsonFields::default();
                event.record(&mut fields);
                let mut line = fields.0;
                let time = now.format(&Rfc3339).unwrap_or_default();
                line.insert("timestamp".into(), time.into());
                line.insert("level".into(), meta.level().as_str().into());
                line.insert("logger.name".into(), meta.target().into());
                if let (Some(tags), Some(ids)) = (&self.tags, ids) {
                    line.insert("dd.trace_id".into(), ids.trace_id.to_string().into());
                    line.insert("dd.span_id".into(), ids.span_id.to_string().into());
                    line.insert("dd.service".into(), tags.service.clone().into());
                    line.insert("dd.env".into(), tags.env.clone().into());
                    line.insert("dd.version".into(), tags.version.clone().into());
                }
                let mut text = serde_json::to_string(&line).unwrap_or_default();
                text.push('\n');
                text
            }
        }
    }
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let ids = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<TraceIds>().copied())
        });
        let line = self.format(event, ids);
        // A log line that cannot be written is not worth failing anything for.
        let _ = self
            .writer
            .make_writer_for(event.metadata())
            .write_all(line.as_bytes());
    }
}

/// The Datadog ids of a span, kept in the span's extensions for the lines written inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: u64,
    pub span_id: u64,
}

/// Remembers the ids of `span`'s exported span for the log lines written inside it. Call it once the
/// span's parent is set: it starts the OpenTelemetry span, which fixes its ids.
pub fn remember_trace_ids(span: &Span) {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if !sc.is_valid() {
        return;
    }
    let ids = TraceIds {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()) as u64,
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
    };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            span.extensions_mut().insert(ids);
        }
    });
}

/// An event's fields as text: the message, then ` name=value` for the others.
struct TextFields {
    line: String,
    fields: String,
}

impl Visit for TextFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// An event's fields as JSON values; `message` keeps its name, as Datadog expects.
#[derive(Default)]
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
