//! OpenTelemetry's ids as Datadog counts them: a trace id is 128 bits, of which Datadog's `trace_id`
//! field and log correlation use the low 64; a span id is 64 bits.

use opentelemetry::trace::{SpanId, TraceId};

/// The whole 128-bit trace id.
pub fn trace_id_bits(id: TraceId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

/// The span id as Datadog writes it.
pub fn span_id_bits(id: SpanId) -> u64 {
    u64::from_be_bytes(id.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_every_bit() {
        let trace = 0x6b07_8232_0000_0000_f8f4_1f79_5acb_5a1a_u128;
        assert_eq!(trace_id_bits(TraceId::from(trace)), trace);
        assert_eq!(
            trace_id_bits(TraceId::from(trace)) as u64,
            0xf8f4_1f79_5acb_5a1a
        );
        assert_eq!(span_id_bits(SpanId::from(u64::MAX - 1)), u64::MAX - 1);
    }
}
