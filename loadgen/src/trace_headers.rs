//! The trace context each request carries: its ids, made as Datadog's tracers make them, and the
//! headers that hand them to the service in the format it is asked to continue.
//!
//! With `--trace-agent` the ids are those of loadgen's own client span (reported to the agent), so
//! the service's span is its child. Without it they are made up for one request, as before loadgen
//! reported spans: the service's span then has a parent no agent ever receives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Which trace context each request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceHeaders {
    /// `x-datadog-trace-id`, `x-datadog-parent-id`, `x-datadog-sampling-priority: 1` (and, for a
    /// 128-bit id, `x-datadog-tags` with its high 64 bits).
    Datadog,
    /// W3C `traceparent`, sampled.
    W3c,
    /// Both, as Datadog's tracers inject by default (style `datadog,tracecontext`).
    Both,
    /// No trace headers.
    None,
}

impl std::fmt::Display for TraceHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().expect("no variant is skipped");
        f.write_str(value.get_name())
    }
}

impl TraceHeaders {
    fn datadog(self) -> bool {
        matches!(self, Self::Datadog | Self::Both)
    }

    fn w3c(self) -> bool {
        matches!(self, Self::W3c | Self::Both)
    }
}

/// One request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 128 bits; a Datadog header carries the low 64.
    pub trace_id: u128,
    /// The id the service's span takes as its parent: loadgen's client span's, when reported.
    pub span_id: u64,
}

impl TraceContext {
    /// A new trace as Datadog's tracers start one (dd-trace-py `_rand128bits`, the service's
    /// `DatadogIdGenerator`): the high 64 bits are the start time in seconds then 32 zero bits, the
    /// low 64 random (and not 0), so that the low half alone identifies the trace; span id random.
    pub fn new(start: SystemTime) -> Self {
        let seconds = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as u32;
        Self {
            trace_id: u128::from(seconds) << 96 | u128::from(fastrand::u64(1..)),
            span_id: fastrand::u64(1..),
        }
    }

    /// A context made up for one request that no span reports, as loadgen made them before it could
    /// report its own: a Datadog id below 2^63 (every Datadog tracer accepts it), or a random W3C one.
    pub fn unreported(format: TraceHeaders) -> Self {
        let trace_id = if format.datadog() {
            u128::from(fastrand::u64(1..1 << 63))
        } else {
            fastrand::u128(1..)
        };
        Self {
            trace_id,
            span_id: fastrand::u64(1..),
        }
    }

    /// The high 64 bits, which Datadog carries apart (`_dd.p.tid`); 0 for a 64-bit id.
    pub fn high(&self) -> u64 {
        (self.trace_id >> 64) as u64
    }

    /// The low 64 bits: the span's `trace_id` in Datadog, and `x-datadog-trace-id`.
    pub fn low(&self) -> u64 {
        self.trace_id as u64
    }
}

const DATADOG_TRACE_ID: HeaderName = HeaderName::from_static("x-datadog-trace-id");
const DATADOG_PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
const DATADOG_SAMPLING_PRIORITY: HeaderName =
    HeaderName::from_static("x-datadog-sampling-priority");
const DATADOG_TAGS: HeaderName = HeaderName::from_static("x-datadog-tags");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Writes trace headers; one per connection, so that what changes once a second (the high bits of
/// new trace ids) is formatted once a second, not once a request.
#[derive(Debug)]
pub struct Injector {
    format: TraceHeaders,
    /// The last `x-datadog-tags` made, and the high bits it carries.
    tags: (u64, HeaderValue),
}

impl Injector {
    pub fn new(format: TraceHeaders) -> Self {
        Self {
            format,
            tags: (0, HeaderValue::from_static("")),
        }
    }

    /// Adds the headers of `context` to `headers`: a sampled trace (priority 1, W3C flag 01) whose
    /// parent is `context.span_id`. A 128-bit id's high bits go in `x-datadog-tags` as `_dd.p.tid`,
    /// with `_dd.p.dm=-0` (the decision was made here, by the default mechanism), as Datadog's
    /// tracers propagate them.
    pub fn inject(&mut self, context: &TraceContext, headers: &mut HeaderMap) {
        if self.format.datadog() {
            headers.insert(DATADOG_TRACE_ID, HeaderValue::from(context.low()));
            headers.insert(DATADOG_PARENT_ID, HeaderValue::from(context.span_id));
            headers.insert(DATADOG_SAMPLING_PRIORITY, HeaderValue::from_static("1"));
            let high = context.high();
            if high != 0 {
                if self.tags.0 != high {
                    let value = format!("_dd.p.dm=-0,_dd.p.tid={high:016x}");
                    self.tags = (high, HeaderValue::from_str(&value).expect("hex and ASCII"));
                }
                headers.insert(DATADOG_TAGS, self.tags.1.clone());
            }
        }
        if self.format.w3c() {
            headers.insert(TRACEPARENT, traceparent(context));
        }
    }

    /// How many headers [`Injector::inject`] adds at most.
    pub fn header_count(&self) -> usize {
        4 * usize::from(self.format.datadog()) + usize::from(self.format.w3c())
    }
}

/// `00-<trace id>-<parent id>-01`, written digit by digit (`format!` of a u128 costs several times
/// as much, on every request).
fn traceparent(context: &TraceContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-01";
    for (i, digit) in value[3..35].iter_mut().enumerate() {
        *digit = HEX[(context.trace_id >> (124 - 4 * i)) as usize & 0xf];
    }
    for (i, digit) in value[36..52].iter_mut().enumerate() {
        *digit = HEX[(context.span_id >> (60 - 4 * i)) as usize & 0xf];
    }
    HeaderValue::from_bytes(&value).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(format: TraceHeaders, context: &TraceContext) -> HeaderMap {
        let mut headers = HeaderMap::new();
        Injector::new(format).inject(context, &mut headers);
        headers
    }

    #[test]
    fn unreported_datadog_ids_are_decimal_below_2_63_and_fresh() {
        let (a, b) = (
            TraceContext::unreported(TraceHeaders::Datadog),
            TraceContext::unreported(TraceHeaders::Datadog),
        );
        let (ha, hb) = (
            headers(TraceHeaders::Datadog, &a),
            headers(TraceHeaders::Datadog, &b),
        );
        let id: u64 = ha["x-datadog-trace-id"].to_str().unwrap().parse().unwrap();
        assert!(id > 0 && id < 1 << 63);
        assert_eq!(u128::from(id), a.trace_id);
        assert_ne!(ha["x-datadog-trace-id"], hb["x-datadog-trace-id"]);
        assert_eq!(ha["x-datadog-sampling-priority"], "1");
        assert!(
            !ha.contains_key("x-datadog-tags"),
            "a 64-bit id has no high bits"
        );
        assert!(!ha.contains_key("traceparent"));
    }

    #[test]
    fn traceparent_is_w3c_version_00_sampled() {
        let value = headers(
            TraceHeaders::W3c,
            &TraceContext::unreported(TraceHeaders::W3c),
        )["traceparent"]
            .to_str()
            .unwrap()
            .to_owned();
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }

    #[test]
    fn new_trace_ids_carry_the_start_second_then_32_zero_bits() {
        let start = UNIX_EPOCH + Duration::from_secs(1_795_654_194);
        let context = TraceContext::new(start);
        assert_eq!(context.high(), 1_795_654_194 << 32);
        assert_eq!(context.high() & 0xffff_ffff, 0);
        assert_ne!(context.low(), 0);
        assert_ne!(context.span_id, 0);
        assert_ne!(
            TraceContext::new(start).low(),
            context.low(),
            "the low bits are random"
        );
    }

    #[test]
    fn both_formats_carry_the_same_128_bit_trace_and_parent() {
        let context = TraceContext {
            trace_id: 0x6b07_8232_0000_0000_0123_4567_89ab_cdef,
            span_id: 0x1122_3344_5566_7788,
        };
        let headers = headers(TraceHeaders::Both, &context);
        assert_eq!(headers["x-datadog-trace-id"], "81985529216486895");
        assert_eq!(headers["x-datadog-parent-id"], "1234605616436508552");
        assert_eq!(headers["x-datadog-sampling-priority"], "1");
        assert_eq!(
            headers["x-datadog-tags"],
            "_dd.p.dm=-0,_dd.p.tid=6b07823200000000"
        );
        assert_eq!(
            headers["traceparent"],
            "00-6b078232000000000123456789abcdef-1122334455667788-01"
        );
    }

    #[test]
    fn header_count_is_what_a_128_bit_context_adds() {
        let context = TraceContext::new(SystemTime::now());
        for format in [
            TraceHeaders::Datadog,
            TraceHeaders::W3c,
            TraceHeaders::Both,
            TraceHeaders::None,
        ] {
            let injector = Injector::new(format);
            assert_eq!(
                headers(format, &context).len(),
                injector.header_count(),
                "{format}"
            );
        }
    }

    #[test]
    fn the_tags_follow_the_high_bits_as_they_change() {
        let mut injector = Injector::new(TraceHeaders::Datadog);
        let mut tags = |high: u128| {
            let mut headers = HeaderMap::new();
            let context = TraceContext {
                trace_id: high << 64 | 1,
                span_id: 1,
            };
            injector.inject(&context, &mut headers);
            headers["x-datadog-tags"].to_str().unwrap().to_owned()
        };
        assert!(tags(0x1_0000_0000).ends_with("tid=0000000100000000"));
        assert!(tags(0x1_0000_0000).ends_with("tid=0000000100000000"));
        assert!(tags(0x2_0000_0000).ends_with("tid=0000000200000000"));
    }
}
