//! Which traces are kept: the caller's decision when it made one, otherwise `DD_TRACE_SAMPLE_RATE`.
//!
//! The decision for a new trace uses Datadog's own rule (keep when
//! `trace_id * 1111111111111111111 mod 2^64 < rate * 2^64`), so that this service and Datadog's tracers
//! agree on the same trace. A Datadog parent without a sampling priority ("deferred") is decided the
//! same way: the OpenTelemetry parent-based sampler would read it as "not sampled" and drop it.
//!
//! Trace ids are 128 bits as Datadog's tracers make them (`DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED`,
//! on by default): the high 64 bits are the start time in seconds followed by 32 zero bits, the low 64
//! random. The exporter sends the low 64 bits as the span's trace id and the high ones in `_dd.p.tid`
//! (see `datadog`), which is how Datadog rebuilds the full id.
//!
//! A trace decided here (new, or a Datadog parent without a priority, whose deferred flag the span
//! keeps) gets `_dd.p.dm=-0` from the exporter, the decision maker Datadog's tracers write and
//! Datadog's ingestion views read; a trace continued with the caller's decision gets the caller's.

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample,
};

use super::ids::{span_id_bits, trace_id_bits};

/// The flag the Datadog propagator sets on a context whose sampling decision was not made upstream; a
/// span continuing such a context keeps it in its own flags.
pub const DEFERRED: TraceFlags = TraceFlags::new(0x02);
/// The trace-state key under which [`super::propagation`] keeps the caller's `_dd.p.dm`.
pub const CALLER_DECISION_MAKER: &str = "dd_p_dm";
/// Knuth's multiplicative hash factor, as in every Datadog tracer's rate sampler.
const KNUTH_FACTOR: u64 = 1_111_111_111_111_111_111;

/// Whether a remote context leaves the sampling decision to this service.
pub fn is_deferred(span_context: &SpanContext) -> bool {
    span_context.is_remote() && span_context.trace_flags() & DEFERRED == DEFERRED
}

/// Follows a caller's decision, and samples new or deferred traces at a fixed rate.
#[derive(Debug, Clone)]
pub struct DatadogSampler {
    rate: f64,
}

impl DatadogSampler {
    pub fn new(rate: f64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
        }
    }

    fn keeps(&self, trace_id: TraceId) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let low = trace_id_bits(trace_id) as u64;
        let threshold = (self.rate * u64::MAX as f64) as u64;
        low.wrapping_mul(KNUTH_FACTOR) < threshold
    }
}

impl ShouldSample for DatadogSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid);
        let (keep, trace_state) = match parent {
            Some(parent) if !is_deferred(&parent) => {
                (parent.is_sampled(), parent.trace_state().clone())
            }
            Some(parent) => (self.keeps(trace_id), parent.trace_state().clone()),
            None => (self.keeps(trace_id), TraceState::default()),
        };
        SamplingResult {
            decision: if keep {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

/// 128-bit trace ids as Datadog's tracers make them (the start time in seconds, 32 zero bits, 64
/// random bits), and random span ids.
#[derive(Debug, Default)]
pub struct DatadogIdGenerator(RandomIdGenerator);

impl IdGenerator for DatadogIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let low = span_id_bits(self.0.new_span_id());
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        TraceId::from(u128::from(seconds) << 96 | u128::from(low.max(1)))
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(sampler: &DatadogSampler, parent: Option<SpanContext>, trace_id: u128) -> bool {
        let cx = parent.map(|sc| Context::new().with_remote_span_context(sc));
        let result = sampler.should_sample(
            cx.as_ref(),
            TraceId::from(trace_id),
            "x",
            &SpanKind::Server,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    fn remote(flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(5u128),
            SpanId::from(6u64),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn caller_decision_wins_over_the_rate() {
        let none = DatadogSampler::new(0.0);
        let all = DatadogSampler::new(1.0);
        assert!(decide(&none, Some(remote(TraceFlags::SAMPLED)), 5));
        assert!(!decide(&all, Some(remote(TraceFlags::default())), 5));
    }

    #[test]
    fn deferred_parent_is_decided_by_the_rate_not_dropped() {
        assert!(decide(&DatadogSampler::new(1.0), Some(remote(DEFERRED)), 5));
        assert!(!decide(
            &DatadogSampler::new(0.0),
            Some(remote(DEFERRED)),
            5
        ));
    }

    #[test]
    fn rate_keeps_about_that_share_of_new_traces() {
        let sampler = DatadogSampler::new(0.25);
        let ids = DatadogIdGenerator::default();
        let kept = (0..20_000)
            .filter(|_| {
                let id = trace_id_bits(ids.new_trace_id());
                decide(&sampler, None, id)
            })
            .count();
        assert!(
            (4_500..5_500).contains(&kept),
            "kept {kept} of 20000 at rate 0.25"
        );
    }

    #[test]
    fn trace_ids_are_128_bit_with_the_time_in_the_high_bits() {
        let ids = DatadogIdGenerator::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for _ in 0..1000 {
            let id = trace_id_bits(ids.new_trace_id());
            let high = (id >> 64) as u64;
            assert_eq!(high & 0xffff_ffff, 0, "{id:032x}");
            assert!(((high >> 32) as i64 - now as i64).abs() <= 1, "{id:032x}");
            assert_ne!(id as u64, 0);
        }
    }
}
