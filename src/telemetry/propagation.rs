//! Incoming trace context: continue the caller's trace from Datadog or W3C headers, or start afresh.
//!
//! Headers come from the network, so nothing here trusts them: a value that is too long, repeated,
//! not text, or not a valid id is ignored, and a request whose headers are all unusable simply starts
//! a new trace. Datadog headers win over W3C ones, as in Datadog's tracers (style `datadog,tracecontext`).
//!
//! Two readers of the headers, one per exporter ([`Extract`]): this module's own, for the
//! opentelemetry-datadog pipeline (that crate reads only the Datadog ids and priority), and Datadog's
//! own propagator for the datadog-opentelemetry pipeline (`exporter::datadog_opentelemetry`). Both
//! see the headers through [`Sanitized`]: an oversized, repeated or non-text value is absent.
//!
//! This module's reader marks a Datadog context that arrives without `x-datadog-sampling-priority`
//! "deferred" (the flag opentelemetry-datadog's propagator uses); [`super::sampling`] then decides
//! locally, as Datadog's tracers do, instead of dropping it.
//!
//! From `x-datadog-tags` (Datadog's propagated `_dd.p.*` tags) two are read, as Datadog's tracers do:
//! `_dd.p.tid`, the high 64 bits of a 128-bit trace id, which makes the context's trace id whole, and
//! `_dd.p.dm`, the caller's decision maker, kept in the trace state for the sampler to tag the span
//! with when it follows the caller's decision.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::ids::trace_id_bits;
use super::sampling::{CALLER_DECISION_MAKER, DEFERRED};

/// Longest header value considered; W3C caps `tracestate` at 512 bytes, the rest are far shorter.
const MAX_HEADER_LEN: usize = 512;
const DATADOG_TRACE_ID: &str = "x-datadog-trace-id";
const DATADOG_PARENT_ID: &str = "x-datadog-parent-id";
const DATADOG_SAMPLING_PRIORITY: &str = "x-datadog-sampling-priority";
const DATADOG_ORIGIN: &str = "x-datadog-origin";
const DATADOG_TAGS: &str = "x-datadog-tags";
const TRACEPARENT: &str = "traceparent";

/// What the request's headers say about its trace.
#[derive(Debug, Default)]
pub struct Incoming {
    /// The caller's span, to parent the server span on; `None` starts a new trace.
    pub parent: Option<Context>,
    /// `x-datadog-origin` (e.g. `synthetics`), which Datadog keeps in the span's `_dd.origin`.
    pub origin: Option<String>,
}

/// How the chosen exporter reads a caller's trace context. Never fails: bad headers mean a fresh
/// trace.
pub trait Extract: std::fmt::Debug + Send + Sync {
    fn extract(&self, headers: &HeaderMap) -> Incoming;
}

/// This module's reader: Datadog headers (with `x-datadog-tags`' `_dd.p.tid` and `_dd.p.dm`), else
/// W3C `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatadogThenW3c;

impl Extract for DatadogThenW3c {
    fn extract(&self, headers: &HeaderMap) -> Incoming {
        extract(headers)
    }
}

/// Reads the trace context from request headers. Never fails: bad headers mean a fresh trace.
pub fn extract(headers: &HeaderMap) -> Incoming {
    let headers = Sanitized(headers);
    if let Some(parent) = datadog_parent(&headers) {
        return Incoming {
            parent: Some(parent),
            origin: headers
                .get(DATADOG_ORIGIN)
                .filter(|o| is_origin(o))
                .map(str::to_owned),
        };
    }
    // Most requests carry no trace context: answer them without the propagator's context plumbing.
    if headers.get(TRACEPARENT).is_none() {
        return Incoming::default();
    }
    let parent = TraceContextPropagator::new().extract(&headers);
    let span_context = parent.span().span_context().clone();
    if !span_context.is_valid() {
        return Incoming::default();
    }
    // A 128-bit id stays whole in the context: the exporter sends its high bits in `_dd.p.tid`.
    Incoming {
        parent: Some(parent),
        origin: None,
    }
}

/// The Datadog context, when both ids are valid; the priority header only when it is a known value.
fn datadog_parent(headers: &Sanitized<'_>) -> Option<Context> {
    let trace_id = headers.get(DATADOG_TRACE_ID).filter(|id| is_valid_id(id))?;
    let parent_id = headers
        .get(DATADOG_PARENT_ID)
        .filter(|id| is_valid_id(id))?;
    let priority = headers
        .get(DATADOG_SAMPLING_PRIORITY)
        .filter(|p| matches!(*p, "-1" | "0" | "1" | "2"));
    // As opentelemetry-datadog's propagator makes it: a kept or dropped trace by the priority, and
    // without one a decision deferred to this service.
    let flags = match priority {
        Some("1" | "2") => TraceFlags::SAMPLED,
        Some(_) => TraceFlags::default(),
        None => DEFERRED,
    };
    let span_context = SpanContext::new(
        TraceId::from(u128::from(trace_id.parse::<u64>().ok()?)),
        SpanId::from(parent_id.parse::<u64>().ok()?),
        flags,
        true,
        TraceState::default(),
    );
    let context = Context::new().with_remote_span_context(span_context.clone());
    let Some(tags) = headers.get(DATADOG_TAGS) else {
        return Some(context);
    };
    let (high, decision_maker) = propagated_tags(tags);
    // The caller's decision maker matters only when its decision is followed.
    let decision_maker = decision_maker.filter(|_| priority.is_some());
    if high.is_none() && decision_maker.is_none() {
        return Some(context);
    }
    let low = trace_id_bits(span_context.trace_id());
    let trace_id = TraceId::from(u128::from(high.unwrap_or(0)) << 64 | low);
    let mut trace_state = span_context.trace_state().clone();
    if let Some(dm) = decision_maker {
        trace_state = trace_state
            .insert(CALLER_DECISION_MAKER, dm)
            .unwrap_or(trace_state);
    }
    Some(context.with_remote_span_context(SpanContext::new(
        trace_id,
        span_context.span_id(),
        span_context.trace_flags(),
        true,
        trace_state,
    )))
}

/// `_dd.p.tid` (16 hex digits, not zero) and `_dd.p.dm` (`-<mechanism>`, optionally after a 10-digit
/// hex service hash) from `x-datadog-tags` (`key=value` pairs separated by commas); anything else is
/// ignored, and so is a malformed value.
fn propagated_tags(tags: &str) -> (Option<u64>, Option<&str>) {
    let (mut high, mut decision_maker) = (None, None);
    for (key, value) in tags
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
    {
        match key {
            "_dd.p.tid" if value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                high = u64::from_str_radix(value, 16).ok().filter(|h| *h != 0);
            }
            "_dd.p.dm" if is_decision_maker(value) => decision_maker = Some(value),
            _ => {}
        }
    }
    (high, decision_maker)
}

fn is_decision_maker(value: &str) -> bool {
    let mechanism = match value.split_once('-') {
        Some((hash, mechanism))
            if hash.is_empty()
                || (hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit())) =>
        {
            mechanism
        }
        _ => return false,
    };
    (1..=3).contains(&mechanism.len()) && mechanism.bytes().all(|b| b.is_ascii_digit())
}

/// A Datadog id: decimal, non-zero, fitting in 64 bits.
fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 20
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<u64>().is_ok_and(|id| id != 0)
}

/// `_dd.origin` values are short names such as `synthetics` or `rum`.
fn is_origin(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Header access that treats oversized, repeated and non-text values as absent: what either reader
/// of trace headers sees of them.
#[derive(Debug, Clone, Copy)]
pub struct Sanitized<'a>(pub &'a HeaderMap);

impl Extractor for Sanitized<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        let value = values.next()?;
        if values.next().is_some() || value.len() > MAX_HEADER_LEN {
            return None;
        }
        value.to_str().ok().map(str::trim)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceId};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ids(incoming: &Incoming) -> Option<(TraceId, SpanId, bool)> {
        let parent = incoming.parent.as_ref()?;
        let span = parent.span();
        let sc = span.span_context();
        Some((sc.trace_id(), sc.span_id(), sc.is_sampled()))
    }

    #[test]
    fn datadog_headers_continue_the_trace() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "12345"),
            (DATADOG_PARENT_ID, "67890"),
            (DATADOG_SAMPLING_PRIORITY, "2"),
            (DATADOG_ORIGIN, "synthetics"),
        ]));
        assert_eq!(
            ids(&got),
            Some((TraceId::from(12345u128), SpanId::from(67890u64), true))
        );
        assert_eq!(got.origin.as_deref(), Some("synthetics"));
    }

    #[test]
    fn datadog_tags_give_the_high_bits_and_the_callers_decision_maker() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "12345"),
            (DATADOG_PARENT_ID, "67890"),
            (DATADOG_SAMPLING_PRIORITY, "2"),
            (
                DATADOG_TAGS,
                "_dd.p.dm=-4,_dd.p.tid=6b0781f000000000,_dd.p.usr.id=x",
            ),
        ]));
        let parent = got.parent.unwrap();
        let span = parent.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id(),
            TraceId::from(0x6b0781f000000000_u128 << 64 | 12345)
        );
        assert_eq!(sc.trace_state().get(CALLER_DECISION_MAKER), Some("-4"));
        assert!(sc.is_sampled());
    }

    #[test]
    fn datadog_tags_give_the_high_bits_alone_or_the_decision_maker_alone() {
        let ids = [(DATADOG_TRACE_ID, "12345"), (DATADOG_PARENT_ID, "67890")];
        let context = |extra: &[(&'static str, &str)]| {
            let pairs: Vec<_> = ids.iter().chain(extra).copied().collect();
            let parent = extract(&headers(&pairs)).parent.unwrap();
            parent.span().span_context().clone()
        };
        // The high bits without a decision maker (no priority, no `_dd.p.dm`).
        let sc = context(&[(DATADOG_TAGS, "_dd.p.tid=6b0781f000000000")]);
        assert_eq!(
            sc.trace_id(),
            TraceId::from(0x6b0781f000000000_u128 << 64 | 12345)
        );
        // The decision maker without high bits.
        let sc = context(&[
            (DATADOG_SAMPLING_PRIORITY, "1"),
            (DATADOG_TAGS, "_dd.p.dm=-3"),
        ]);
        assert_eq!(sc.trace_id(), TraceId::from(12345u128));
        assert_eq!(sc.trace_state().get(CALLER_DECISION_MAKER), Some("-3"));
    }

    #[test]
    fn malformed_datadog_tags_are_ignored() {
        for tags in [
            "_dd.p.tid=6b0781f0",
            "_dd.p.tid=0000000000000000",
            "_dd.p.tid=zz0781f000000000",
            "_dd.p.dm=4",
            "_dd.p.dm=-12345",
            "_dd.p.dm=abc-4",
            "garbage",
            "",
        ] {
            let got = extract(&headers(&[
                (DATADOG_TRACE_ID, "7"),
                (DATADOG_PARENT_ID, "8"),
                (DATADOG_SAMPLING_PRIORITY, "1"),
                (DATADOG_TAGS, tags),
            ]));
            let parent = got.parent.unwrap();
            let span = parent.span();
            let sc = span.span_context();
            assert_eq!(sc.trace_id(), TraceId::from(7u128), "{tags:?}");
            assert_eq!(
                sc.trace_state().get(CALLER_DECISION_MAKER),
                None,
                "{tags:?}"
            );
        }
        assert!(is_decision_maker("934086a686-4"));
    }

    #[test]
    fn without_a_priority_the_callers_decision_maker_is_not_kept() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "7"),
            (DATADOG_PARENT_ID, "8"),
            (DATADOG_TAGS, "_dd.p.dm=-4"),
        ]));
        let parent = got.parent.unwrap();
        assert_eq!(
            parent
                .span()
                .span_context()
                .trace_state()
                .get(CALLER_DECISION_MAKER),
            None
        );
    }

    #[test]
    fn priority_zero_is_an_unsampled_parent() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "1"),
            (DATADOG_PARENT_ID, "2"),
            (DATADOG_SAMPLING_PRIORITY, "0"),
        ]));
        assert_eq!(
            ids(&got),
            Some((TraceId::from(1u128), SpanId::from(2u64), false))
        );
    }

    #[test]
    fn w3c_traceparent_continues_the_trace_and_keeps_the_high_bits() {
        let got = extract(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        let (trace_id, span_id, sampled) = ids(&got).unwrap();
        assert_eq!(
            trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(sampled);
    }

    #[test]
    fn datadog_headers_win_over_w3c() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "7"),
            (DATADOG_PARENT_ID, "8"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ]));
        assert_eq!(ids(&got).unwrap().0, TraceId::from(7u128));
    }

    #[test]
    fn malformed_headers_start_a_fresh_trace() {
        let cases: &[&[(&'static str, &str)]] = &[
            &[(DATADOG_TRACE_ID, "garbage"), (DATADOG_PARENT_ID, "1")],
            &[(DATADOG_TRACE_ID, "1"), (DATADOG_PARENT_ID, "garbage")],
            &[(DATADOG_TRACE_ID, "1")],
            &[(DATADOG_TRACE_ID, "0"), (DATADOG_PARENT_ID, "1")],
            &[
                (DATADOG_TRACE_ID, "18446744073709551616"),
                (DATADOG_PARENT_ID, "1"),
            ],
            &[(DATADOG_TRACE_ID, "-5"), (DATADOG_PARENT_ID, "1")],
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
            &[("traceparent", "garbage")],
            &[(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        ];
        for case in cases {
            assert!(ids(&extract(&headers(case))).is_none(), "{case:?}");
        }
    }

    #[test]
    fn oversized_and_repeated_headers_are_ignored() {
        let huge = "1".repeat(10_000);
        assert!(
            ids(&extract(&headers(&[
                (DATADOG_TRACE_ID, &huge),
                (DATADOG_PARENT_ID, "1")
            ])))
            .is_none()
        );
        let repeated = headers(&[
            (DATADOG_TRACE_ID, "1"),
            (DATADOG_TRACE_ID, "2"),
            (DATADOG_PARENT_ID, "3"),
        ]);
        assert!(ids(&extract(&repeated)).is_none());
    }

    #[test]
    fn unknown_priority_is_treated_as_absent() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "1"),
            (DATADOG_PARENT_ID, "2"),
            (DATADOG_SAMPLING_PRIORITY, "7"),
        ]));
        let parent = got.parent.unwrap();
        assert!(super::super::sampling::is_deferred(
            parent.span().span_context()
        ));
    }

    /// Whether a Datadog trace id (with parent id 1) continues the caller's trace.
    fn continues_datadog_trace_id(trace_id: &str) -> bool {
        ids(&extract(&headers(&[
            (DATADOG_TRACE_ID, trace_id),
            (DATADOG_PARENT_ID, "1"),
        ])))
        .is_some()
    }

    #[test]
    fn datadog_ids_are_decimal_digits_only_and_at_most_20_characters() {
        // Rust's u64 parser accepts a leading `+`; Datadog's id is digits only.
        assert!(!continues_datadog_trace_id("+1"));
        let parent_plus = headers(&[(DATADOG_TRACE_ID, "1"), (DATADOG_PARENT_ID, "+2")]);
        assert!(ids(&extract(&parent_plus)).is_none());
        // Zero-padded: a valid u64, but longer than any 64-bit decimal id.
        assert!(!continues_datadog_trace_id("000000000000000000001"));
        // The longest ones that are valid: 20 characters.
        assert!(continues_datadog_trace_id("00000000000000000001"));
        assert!(continues_datadog_trace_id(&u64::MAX.to_string()));
    }

    /// The origin kept from `x-datadog-origin`, on a valid Datadog context.
    fn kept_origin(origin: &str) -> Option<String> {
        extract(&headers(&[
            (DATADOG_TRACE_ID, "1"),
            (DATADOG_PARENT_ID, "2"),
            (DATADOG_ORIGIN, origin),
        ]))
        .origin
    }

    #[test]
    fn origins_with_dashes_underscores_and_dots_are_kept() {
        // Datadog's browser tests send `synthetics-browser`.
        for origin in [
            "synthetics-browser",
            "ci_app",
            "rum.v2",
            "a",
            &"o".repeat(64),
        ] {
            assert_eq!(kept_origin(origin).as_deref(), Some(origin), "{origin:?}");
        }
    }

    #[test]
    fn empty_overlong_or_odd_origins_are_dropped() {
        for origin in ["", &"o".repeat(65), "syn/thetics", "synthetics!", "rum:1"] {
            assert_eq!(kept_origin(origin), None, "{origin:?}");
        }
    }

    /// A `traceparent` of a future version (W3C: parse the first four fields, ignore the rest),
    /// padded with a fifth field to `len` bytes.
    fn future_traceparent(len: usize) -> String {
        let mut value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-".to_owned();
        let padding = len - value.len();
        value.push_str(&"f".repeat(padding));
        value
    }

    #[test]
    fn header_values_up_to_512_bytes_are_read_longer_ones_ignored() {
        let read = |len: usize| {
            let value = future_traceparent(len);
            assert_eq!(value.len(), len);
            ids(&extract(&headers(&[(TRACEPARENT, &value)]))).is_some()
        };
        assert!(read(100), "a short future-version traceparent is valid");
        assert!(read(MAX_HEADER_LEN), "exactly 512 bytes");
        assert!(!read(MAX_HEADER_LEN + 1));
        assert!(!read(600));
    }

    #[test]
    fn bad_origin_is_dropped() {
        let got = extract(&headers(&[
            (DATADOG_TRACE_ID, "1"),
            (DATADOG_PARENT_ID, "2"),
            (DATADOG_ORIGIN, "syn thetics"),
        ]));
        assert!(got.origin.is_none());
    }
}
