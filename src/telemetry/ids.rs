//! The Datadog ids of a request's span, chosen by the trace layer when the request arrives.
//!
//! The log lines of a request carry its span's ids, so the ids must be known before the span ends.
//! Asking `tracing-opentelemetry` for them would start the OpenTelemetry span at once instead of when
//! the tracing span closes, which costs about 5,000 instructions per request (callgrind, see
//! bench/README.md). Instead the trace layer chooses them ([`TraceIds::choose`]) and records them on the
//! tracing span as two integer fields: the log layer reads them from there, and [`IdTracer`] takes them
//! back out of the span's attributes and has the SDK build the span with exactly these ids.
//!
//! Trace ids are 64 bits (the high half zero): the exporter sends the low 64 bits only, so larger ids
//! would be cut; a caller's 128-bit id is carried in `_dd.p.tid` instead (see `trace_layer`).

use std::cell::Cell;

use opentelemetry::trace::{SpanBuilder, SpanId, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, Span as SdkSpan};

/// The span field (and, through `tracing-opentelemetry`, the attribute) carrying the trace id.
pub const TRACE_ID_FIELD: &str = "dd.trace_id";
/// The span field (and attribute) carrying the span id.
pub const SPAN_ID_FIELD: &str = "dd.span_id";

/// The Datadog ids of a span: what its log lines carry and what the agent receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: u64,
    pub span_id: u64,
}

impl TraceIds {
    /// Ids for a new span: the parent's trace, or a new one, and a new span id.
    pub fn choose(parent: Option<&Context>) -> Self {
        let ids = RandomIdGenerator::default();
        let parent_trace = parent
            .map(|cx| cx.span().span_context().trace_id())
            .filter(|id| *id != TraceId::INVALID);
        let trace_id = match parent_trace {
            Some(id) => u128::from_be_bytes(id.to_bytes()) as u64,
            None => random_nonzero(&ids),
        };
        Self {
            trace_id,
            span_id: random_nonzero(&ids),
        }
    }

    /// The ids as the integer field values the trace layer records (`tracing` has no `u64` attribute
    /// type that `tracing-opentelemetry` keeps without formatting it to a string).
    pub fn as_fields(self) -> (i64, i64) {
        (self.trace_id as i64, self.span_id as i64)
    }

    /// The ids from the field values of [`Self::as_fields`].
    pub fn from_fields(trace_id: i64, span_id: i64) -> Self {
        Self {
            trace_id: trace_id as u64,
            span_id: span_id as u64,
        }
    }
}

fn random_nonzero(ids: &RandomIdGenerator) -> u64 {
    u64::from_be_bytes(ids.new_span_id().to_bytes()).max(1)
}

thread_local! {
    /// The ids [`IdTracer`] hands to [`DatadogIdGenerator`] for the one span the SDK is building on
    /// this thread right now.
    static CHOSEN: Cell<Option<TraceIds>> = const { Cell::new(None) };
}

/// The SDK's tracer, building each span with the ids the trace layer chose for it.
#[derive(Debug, Clone)]
pub struct IdTracer(pub SdkTracer);

impl Tracer for IdTracer {
    type Span = SdkSpan;

    fn build_with_context(&self, mut builder: SpanBuilder, parent_cx: &Context) -> SdkSpan {
        let chosen = builder.attributes.as_mut().and_then(take_ids);
        CHOSEN.set(chosen);
        // The SDK asks the id generator, synchronously on this thread, for the span's ids.
        let span = self.0.build_with_context(builder, parent_cx);
        CHOSEN.set(None);
        span
    }
}

/// Removes the id attributes, returning the ids when both were there.
fn take_ids(attributes: &mut Vec<opentelemetry::KeyValue>) -> Option<TraceIds> {
    let mut trace_id = None;
    let mut span_id = None;
    attributes.retain(|kv| match (kv.key.as_str(), &kv.value) {
        (TRACE_ID_FIELD, Value::I64(id)) => {
            trace_id = Some(*id);
            false
        }
        (SPAN_ID_FIELD, Value::I64(id)) => {
            span_id = Some(*id);
            false
        }
        _ => true,
    });
    Some(TraceIds::from_fields(trace_id?, span_id?))
}

/// The ids chosen by the trace layer when there are some, else random 64-bit trace ids (high half
/// zero) and span ids.
#[derive(Debug, Default)]
pub struct DatadogIdGenerator(RandomIdGenerator);

impl IdGenerator for DatadogIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let low = match CHOSEN.get() {
            Some(ids) => ids.trace_id,
            None => random_nonzero(&self.0),
        };
        TraceId::from(u128::from(low))
    }

    fn new_span_id(&self) -> SpanId {
        match CHOSEN.get() {
            Some(ids) => SpanId::from(ids.span_id),
            None => self.0.new_span_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::Span as _;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    #[test]
    fn trace_ids_fit_in_64_bits() {
        let ids = DatadogIdGenerator::default();
        for _ in 0..1000 {
            let id = u128::from_be_bytes(ids.new_trace_id().to_bytes());
            assert!(id != 0 && id <= u128::from(u64::MAX));
        }
    }

    #[test]
    fn ids_survive_the_field_round_trip_whatever_their_high_bit() {
        for ids in [
            TraceIds {
                trace_id: u64::MAX,
                span_id: 1,
            },
            TraceIds {
                trace_id: 1 << 63,
                span_id: (1 << 63) - 1,
            },
        ] {
            let (trace_id, span_id) = ids.as_fields();
            assert_eq!(TraceIds::from_fields(trace_id, span_id), ids);
        }
    }

    #[test]
    fn a_child_keeps_its_parents_trace() {
        let parent = SpanContext::new(
            TraceId::from(0xabc_u128),
            SpanId::from(7_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(parent);
        let ids = TraceIds::choose(Some(&cx));
        assert_eq!(ids.trace_id, 0xabc);
        assert_ne!(ids.span_id, 0);
        assert_ne!(TraceIds::choose(None).trace_id, 0);
    }

    #[test]
    fn the_tracer_builds_the_span_with_the_chosen_ids_and_drops_their_attributes() {
        let provider = SdkTracerProvider::builder()
            .with_id_generator(DatadogIdGenerator::default())
            .build();
        let tracer = IdTracer(provider.tracer("test"));
        let ids = TraceIds {
            trace_id: u64::MAX - 1,
            span_id: 1 << 63,
        };
        let (trace_id, span_id) = ids.as_fields();
        let builder = SpanBuilder::from_name("request").with_attributes([
            KeyValue::new("http.method", "GET"),
            KeyValue::new(TRACE_ID_FIELD, trace_id),
            KeyValue::new(SPAN_ID_FIELD, span_id),
        ]);
        let span = tracer.build_with_context(builder, &Context::new());
        let sc = span.span_context();
        assert_eq!(
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u128::from(ids.trace_id)
        );
        assert_eq!(u64::from_be_bytes(sc.span_id().to_bytes()), ids.span_id);
        let data = span.exported_data().expect("a sampled span has data");
        let keys: Vec<_> = data.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["http.method"]);

        // Without chosen ids (any other span), the generator's own.
        let other = tracer.build_with_context(SpanBuilder::from_name("other"), &Context::new());
        assert_ne!(other.span_context().span_id(), sc.span_id());
        assert!(other.span_context().is_valid());
    }
}
