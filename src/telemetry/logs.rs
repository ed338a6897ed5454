//! Log line formats: the Flask app's text format, and JSON with Datadog's correlation attributes.
//!
//! With log injection on, a line written inside a request carries the ids of the request's span as
//! the trace agent receives them (`dd.trace_id` is the low 64 bits, in decimal), plus `dd.service`,
//! `dd.env` and `dd.version`, which is what the Datadog Agent needs to link a log to its trace.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::ids::{span_id_bits, trace_id_bits};
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
    /// `tags` as JSON members (`,"dd.service":...`), written once here rather than on every line.
    json_tags: String,
    writer: W,
}

impl<W> LogLayer<W> {
    /// `tags: None` turns log injection off (`DD_LOGS_INJECTION=false`).
    pub fn new(format: LogFormat, tags: Option<ServiceTags>, writer: W) -> Self {
        let mut json_tags = String::new();
        for (key, value) in tags.iter().flat_map(|tags| {
            [
                ("dd.service", &tags.service),
                ("dd.env", &tags.env),
                ("dd.version", &tags.version),
            ]
        }) {
            let _ = write!(json_tags, ",\"{key}\":");
            push_json_str(&mut json_tags, value);
        }
        Self {
            format,
            tags,
            json_tags,
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
                let asctime = format_description!("[year]-[month]-[day] [hour]:[minute]:[second],");
                let mut line = String::with_capacity(256);
                TEXT_SECOND.with_borrow_mut(|second| second.push(&mut line, now, asctime));
                let _ = write!(
                    line,
                    "{:03} - {} - {} - ",
                    now.millisecond(),
                    meta.target(),
                    meta.level()
                );
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
                // Written field by field: no map, no per-key allocation (a line per request). An
                // access line with trace ids is about 360 bytes: room for it without growing.
                let mut line = String::with_capacity(512);
                line.push_str("{\"timestamp\":\"");
                push_rfc3339(&mut line, now);
                line.push('"');
                line.push_str(",\"level\":");
                push_json_str(&mut line, meta.level().as_str());
                line.push_str(",\"logger.name\":");
                push_json_str(&mut line, meta.target());
                event.record(&mut JsonFields(&mut line));
                if let Some(ids) = ids {
                    let mut digits = itoa::Buffer::new();
                    line.push_str(",\"dd.trace_id\":\"");
                    line.push_str(digits.format(ids.trace_id));
                    line.push_str("\",\"dd.span_id\":\"");
                    line.push_str(digits.format(ids.span_id));
                    line.push('"');
                    line.push_str(&self.json_tags);
                }
                line.push_str("}\n");
                line
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

thread_local! {
    static JSON_SECOND: RefCell<Second> = const { RefCell::new(Second::new()) };
    static TEXT_SECOND: RefCell<Second> = const { RefCell::new(Second::new()) };
}

/// A timestamp down to the second, formatted once per second (per thread and format) rather than
/// on every line: formatting a date is most of the cost of a timestamp.
struct Second {
    unix: i64,
    text: String,
}

impl Second {
    const fn new() -> Self {
        Self {
            unix: i64::MIN,
            text: String::new(),
        }
    }

    /// Appends `now` down to the second, in `format` (which must not show anything finer).
    fn push(&mut self, line: &mut String, now: OffsetDateTime, format: &[BorrowedFormatItem<'_>]) {
        let unix = now.unix_timestamp();
        if unix != self.unix {
            self.text = now.format(format).unwrap_or_default();
            self.unix = unix;
        }
        line.push_str(&self.text);
    }
}

/// Appends `now` (UTC) in RFC 3339 with nanoseconds: `2026-11-25T15:53:18.023258426Z`.
fn push_rfc3339(line: &mut String, now: OffsetDateTime) {
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].");
    JSON_SECOND.with_borrow_mut(|second| second.push(line, now, seconds));
    let mut digits = itoa::Buffer::new();
    let nanos = digits.format(now.nanosecond());
    line.extend(std::iter::repeat_n('0', 9 - nanos.len()));
    line.push_str(nanos);
    line.push('Z');
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
        trace_id: trace_id_bits(sc.trace_id()) as u64,
        span_id: span_id_bits(sc.span_id()),
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

/// An event's fields as text: the message, then ` name=value` for the others, each escaped
/// ([`TextEscaped`]): a value is often the client's (a path, a user agent).
struct TextFields {
    line: String,
    fields: String,
}

impl Visit for TextFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(TextEscaped(&mut self.line), "{value:?}");
        } else {
            let _ = write!(self.fields, " {}=", field.name());
            let _ = write!(TextEscaped(&mut self.fields), "{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = TextEscaped(&mut self.line).write_str(value);
        } else {
            let _ = write!(self.fields, " {}=", field.name());
            let _ = TextEscaped(&mut self.fields).write_str(value);
        }
    }
}

/// Escapes what it is given for a text line, so that one line stays one line and shows what it
/// holds: a control character (C0, DEL and C1, U+0085 NEL and U+009B CSI among them), a line or
/// paragraph separator (U+2028, U+2029) or a bidirectional control (U+202E and its kin, which
/// reorder what a terminal shows) is written as `\u{...}`, and a backslash as `\\`, so the escaping
/// can be undone exactly. The JSON format escapes with JSON's own rules.
struct TextEscaped<'a>(&'a mut String);

/// Whether a character is written escaped in a text line.
fn escaped_in_text(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061C}' | '\u{200E}' | '\u{200F}' // bidirectional marks
                | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' // bidirectional embeddings, isolates
        )
}

impl fmt::Write for TextEscaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Most lines have nothing to escape: printable ASCII is copied whole.
        if text
            .bytes()
            .all(|b| (b' '..b'\x7f').contains(&b) && b != b'\\')
        {
            self.0.push_str(text);
            return Ok(());
        }
        for c in text.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                c if escaped_in_text(c) => {
                    let _ = write!(self.0, "\\u{{{:x}}}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// An event's fields appended to a JSON object as `,"name":value`; `message` keeps its name, as
/// Datadog expects.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_json_str(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.0, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.0.push('"');
        let _ = write!(JsonEscaped(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// Appends `text` as a JSON string.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let _ = JsonEscaped(out).write_str(text);
    out.push('"');
}

/// Escapes what it is given for the inside of a JSON string.
struct JsonEscaped<'a>(&'a mut String);

/// For each byte, whether it must be escaped in a JSON string: quote, backslash, control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl fmt::Write for JsonEscaped<'_> {
    /// Copies runs of plain text whole; only quotes, backslashes and control characters are rewritten
    /// (all ASCII, so the runs split on character boundaries).
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let mut plain_from = 0;
        while let Some(offset) = bytes[plain_from..]
            .iter()
            .position(|&byte| NEEDS_ESCAPE[usize::from(byte)])
        {
            let at = plain_from + offset;
            self.0.push_str(&text[plain_from..at]);
            match bytes[at] {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                byte => {
                    let _ = write!(self.0, "\\u{byte:04x}");
                }
            }
            plain_from = at + 1;
        }
        self.0.push_str(&text[plain_from..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds_across_seconds() {
        let at = |unix: i64, nanos: u32| {
            OffsetDateTime::from_unix_timestamp(unix).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos))
        };
        for (time, expected) in [
            (
                at(1_795_613_776, 23_258_426),
                "2026-11-25T13:36:16.023258426Z",
            ),
            (
                at(1_795_613_776, 999_999_999),
                "2026-11-25T13:36:16.999999999Z",
            ),
            (at(1_795_613_777, 7), "2026-11-25T13:36:17.000000007Z"),
            (at(1_795_613_777, 0), "2026-11-25T13:36:17.000000000Z"),
        ] {
            let mut line = String::new();
            push_rfc3339(&mut line, time);
            assert_eq!(line, expected);
            let parsed =
                OffsetDateTime::parse(&line, &time::format_description::well_known::Rfc3339);
            assert_eq!(parsed.unwrap(), time);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_through_a_json_string(text in proptest::prelude::any::<String>()) {
            let mut out = String::new();
            push_json_str(&mut out, &text);
            proptest::prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
        }
    }

    /// Undoes [`TextEscaped`].
    fn text_unescaped(line: &str) -> String {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('u') => {
                    assert_eq!(chars.next(), Some('{'));
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                other => panic!("not an escape: \\{other:?}"),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn a_text_line_holds_no_line_break_separator_or_control_and_unescapes_exactly(
            text in proptest::prelude::any::<String>()
        ) {
            let mut line = String::new();
            TextEscaped(&mut line).write_str(&text).unwrap();
            proptest::prop_assert!(
                !line.chars().any(|c| c.is_control() || escaped_in_text(c) && c != '\\'),
                "{line:?}"
            );
            proptest::prop_assert_eq!(text_unescaped(&line), text);
        }
    }

    #[test]
    fn forged_lines_and_hidden_text_are_escaped_in_text_lines() {
        let mut line = String::new();
        TextEscaped(&mut line)
            .write_str("/a\u{85}b\u{2028}c\u{9b}31md\u{202e}e\\f\ng")
            .unwrap();
        assert_eq!(line, r"/a\u{85}b\u{2028}c\u{9b}31md\u{202e}e\\f\u{a}g");
        let mut plain = String::new();
        TextEscaped(&mut plain)
            .write_str("GET /api/apm 200")
            .unwrap();
        assert_eq!(plain, "GET /api/apm 200");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
