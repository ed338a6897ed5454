//! Which traces are kept: the caller's decision when it made one, otherwise `DD_TRACE_SAMPLE_RATE`.
//!
//! The decision for a new trace uses Datadog's own rule (keep when
//! `trace_id * 1111111111111111111 mod 2^64 < rate * 2^64`), so that this service and Datadog's tracers
//! agree on the same trace. A Datadog parent without a sampling priority ("deferred") is decided the
//! same way: the OpenTelemetry parent-based sampler would read it as "not sampled" and drop it.
//!
//! Trace ids are 64 bits (the high half zero): the exporter sends the low 64 bits only, so larger ids
//! would be cut, and a caller's 128-bit id is carried in `_dd.p.tid` instead.

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample,
};

/// The flag the Datadog propagator sets on a context whose sampling decision was not made upstream.
const DEFERRED: TraceFlags = TraceFlags::new(0x02);
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
        let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
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

/// Random 64-bit trace ids (high half zero) and span ids.
#[derive(Debug, Default)]
pub struct DatadogIdGenerator(RandomIdGenerator);

impl IdGenerator for DatadogIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let low = u64::from_be_bytes(self.0.new_span_id().to_bytes());
        TraceId::from(u128::from(low.max(1)))
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
                let id = u128::from_be_bytes(ids.new_trace_id().to_bytes());
                decide(&sampler, None, id)
            })
            .count();
        assert!(
            (4_500..5_500).contains(&kept),
            "kept {kept} of 20000 at rate 0.25"
        );
    }

    #[test]
    fn trace_ids_fit_in_64_bits() {
        let ids = DatadogIdGenerator::default();
        for _ in 0..1000 {
            let id = u128::from_be_bytes(ids.new_trace_id().to_bytes());
            assert!(id != 0 && id <= u128::from(u64::MAX));
        }
    }
}
