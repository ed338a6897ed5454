//! The default exporter: `opentelemetry-datadog` 0.20.1, the crate the project was specified with,
//! and the only module that touches it; with the project's own sampler and ids
//! ([`crate::telemetry::sampling`]), propagation ([`crate::telemetry::propagation`]) and bounded
//! queue ([`crate::telemetry::export_queue`]), which make up for what the crate lacks.
//!
//! The crate is deprecated upstream (its successor is Datadog's dd-trace-rs, crate
//! `datadog-opentelemetry`, the other exporter: [`super::datadog_opentelemetry`]).
//! Spans go to the agent's `/v0.5/traces` endpoint, which Agent 7 and Datadog's test agent both serve
//! (the crate's v0.3 endpoint is not served by the test agent).
#![allow(deprecated)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, DatadogTraceState as _, ModelConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};

use super::{Pipeline, Settings};
use crate::telemetry::contract::{query, server};
use crate::telemetry::export_queue::{
    BoundedProcessor, ExportStats, QUEUE_CAPACITY, REPORT_INTERVAL, ReportingExporter,
};
use crate::telemetry::ids::trace_id_bits;
use crate::telemetry::propagation::DatadogThenW3c;
use crate::telemetry::sampling::{
    CALLER_DECISION_MAKER, DEFERRED, DatadogIdGenerator, DatadogSampler,
};
use crate::telemetry::trace_layer::SpanFields;

/// Longest time one export may take, connection included: an agent that accepts and never answers
/// costs the export thread this much, never a request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Spans per request to the agent.
const BATCH_SIZE: usize = 512;
/// How long a span waits at most before its batch is sent (Datadog's tracers flush every second).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The pipeline: Datadog sampling and ids, a bounded batch queue, the crate's exporter.
pub fn pipeline(settings: &Settings) -> anyhow::Result<Pipeline> {
    let stats = ExportStats::new(REPORT_INTERVAL);
    let exporter = exporter(settings)?;
    let exporter = ReportingExporter::new(exporter, stats.clone(), settings.agent_url.as_str());
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                // Twice the bound, so that only BoundedProcessor drops, and counts.
                .with_max_queue_size(2 * QUEUE_CAPACITY)
                .with_max_export_batch_size(BATCH_SIZE)
                .with_scheduled_delay(FLUSH_INTERVAL)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedProcessor::new(
            batches,
            QUEUE_CAPACITY,
            stats.clone(),
        ))
        .with_sampler(DatadogSampler::new(settings.sample_rate.unwrap_or(1.0)))
        .with_id_generator(DatadogIdGenerator::default())
        // Every resource attribute lands in every span's meta: only what Datadog expects there
        // (`runtime-id`: one per process, as Datadog's tracers tag their spans).
        .with_resource(
            Resource::builder_empty()
                .with_attribute(KeyValue::new("language", "rust"))
                .with_attribute(KeyValue::new("runtime-id", runtime_id()))
                .build(),
        )
        .build();
    Ok(Pipeline {
        provider,
        extract: Arc::new(DatadogThenW3c),
        span_fields: SpanFields::Lean,
        stats: Some(stats),
    })
}

/// A random id for this process, 32 lowercase hex digits (a UUID's 128 bits, as Datadog's Python
/// tracer writes `runtime-id`).
fn runtime_id() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    let (high, low) = (ids.new_span_id(), ids.new_span_id());
    format!("{high}{low}")
}

/// The Datadog exporter, posting v0.5 msgpack to the trace agent, with the tags every server span
/// has in Datadog.
///
/// Those tags are the same on every request, so they are added here, on the export thread, instead of
/// being carried by the tracing span: through `tracing-opentelemetry` each attribute costs an owned
/// string per request, about 1,300 instructions on the request path (callgrind, bench/README.md).
///
/// It also writes what Datadog's tracers put on the first span of a trace chunk: `_dd.p.tid` (the high
/// 64 bits of the trace id, which the crate does not send) and `_dd.p.dm` (the decision maker).
#[derive(Debug)]
pub struct Exporter {
    inner: DatadogExporter,
    /// The last `_dd.p.tid` written: new trace ids share their high bits for a second (they are the
    /// start time), so the hex string is made once a second, not once a span.
    trace_id_high: Mutex<(u64, StringValue)>,
}

/// Datadog's decision maker of a trace decided here: `-0`, the default sampling mechanism.
const DECISION_MAKER: &str = "-0";

/// The `_dd.p.dm` of a span, as Datadog's tracers write it: `-0` when the decision was made here (a new
/// trace, or a caller that sent no priority: the deferred flag stays in the span's flags), the caller's
/// own (from `x-datadog-tags`) when its decision was followed, else none.
fn decision_maker(span: &SpanData) -> Option<StringValue> {
    let flags = span.span_context.trace_flags();
    if !span.parent_span_is_remote || flags & DEFERRED == DEFERRED {
        return Some(DECISION_MAKER.into());
    }
    let state = span.span_context.trace_state();
    state
        .get(CALLER_DECISION_MAKER)
        .map(|dm| dm.to_owned().into())
}

impl Exporter {
    /// Adds the tags every server span has in Datadog, and those of the first span of a trace chunk.
    fn add_datadog_tags(&self, batch: &mut [SpanData]) {
        let mut last_high = self
            .trace_id_high
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for span in batch.iter_mut() {
            match span.span_kind {
                SpanKind::Server => span.attributes.extend([
                    // The crate reads the Datadog span type from this attribute.
                    KeyValue::new("span.type", server::SPAN_TYPE),
                    KeyValue::new("span.kind", "server"),
                    KeyValue::new("component", server::COMPONENT),
                ]),
                // A query span carries its own type and component; the kind is what the Agent
                // computes client stats and peer tags by. `_dd.measured` asks the Agent for the
                // span's trace metrics: a client span is not top-level, and Agents before 7.60 (no
                // stats by span kind) compute none for it otherwise. The crate reads the flag from
                // the span's trace state only, so it is set there, here on the export thread.
                SpanKind::Client => {
                    span.attributes.push(KeyValue::new("span.kind", "client"));
                    let context = &span.span_context;
                    span.span_context = SpanContext::new(
                        context.trace_id(),
                        context.span_id(),
                        context.trace_flags(),
                        context.is_remote(),
                        context.trace_state().with_measuring(true),
                    );
                }
                _ => {}
            }
            // The first span of its trace chunk: no parent in this process. (A query made outside
            // any request, such as the schema at start, is one.)
            let chunk_root = span.parent_span_is_remote || span.parent_span_id == SpanId::INVALID;
            if !chunk_root {
                continue;
            }
            // The crate sends the low 64 bits of the trace id; Datadog's tracers put the high 64 in
            // `_dd.p.tid` (hex) on the first span of a trace chunk.
            let high = (trace_id_bits(span.span_context.trace_id()) >> 64) as u64;
            let tid = (high != 0).then(|| {
                if last_high.0 != high {
                    *last_high = (high, Arc::<str>::from(format!("{high:016x}")).into());
                }
                KeyValue::new("_dd.p.tid", last_high.1.clone())
            });
            let dm = decision_maker(span).map(|dm| KeyValue::new("_dd.p.dm", dm));
            // An exact-size iterator: the Vec grows once, to fit both.
            span.attributes.extend(tid.into_iter().chain(dm));
            // Not `_dd.measured = 1` on the server span (ddtrace marks its web spans so): a trace
            // state per span costs about 900 instructions per request (callgrind), for a flag that
            // changes nothing on a top-level span.
        }
    }
}

impl SpanExporter for Exporter {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        self.add_datadog_tags(&mut batch);
        // The crate sorts the batch by trace id to group spans into traces, moving whole spans (about
        // 300 bytes each) around; sorting on cached keys moves each span once, and the crate's sort
        // then finds the batch sorted.
        batch.sort_by_cached_key(|span| trace_id_bits(span.span_context.trace_id()));
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter of [`Exporter`].
///
/// Built on a thread of its own: the crate's blocking HTTP clients (its default one and ours) own a
/// runtime, which may be neither created nor dropped on an async runtime's thread, and callers (tests)
/// may be on one.
fn exporter(settings: &Settings) -> anyhow::Result<Exporter> {
    let inner = std::thread::scope(|scope| scope.spawn(|| build_exporter(settings)).join())
        .unwrap_or_else(|_| Err(anyhow::anyhow!("building the Datadog exporter panicked")))?;
    Ok(Exporter {
        inner,
        trace_id_high: Mutex::new((0, StringValue::from(""))),
    })
}

fn build_exporter(settings: &Settings) -> anyhow::Result<DatadogExporter> {
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?;
    let exporter = opentelemetry_datadog::new_pipeline()
        .with_agent_endpoint(settings.agent_url.as_str())
        .with_api_version(ApiVersion::Version05)
        .with_service_name(&settings.service)
        .with_env(&settings.env)
        .with_version(&settings.version)
        .with_http_client(client)
        .with_name_mapping(operation_name)
        .build_exporter()?;
    Ok(exporter)
}

/// The Datadog operation name: the server span's for server spans, the query span's for client
/// spans (the only ones are statements), else the span name. The resource stays the span name (the
/// crate's default): the route, or the statement.
fn operation_name<'a>(span: &'a SpanData, _config: &'a ModelConfig) -> &'a str {
    match span.span_kind {
        SpanKind::Server => server::OPERATION_NAME,
        SpanKind::Client => query::OPERATION_NAME,
        _ => span.name.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, trace::Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    fn span(parent_is_remote: bool, flags: TraceFlags, state: TraceState) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(2u64),
                flags,
                false,
                state,
            ),
            parent_span_id: SpanId::from(u64::from(parent_is_remote)),
            parent_span_is_remote: parent_is_remote,
            span_kind: SpanKind::Server,
            name: "GET /".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::default(),
        }
    }

    #[test]
    fn only_a_decision_made_here_is_minus_zero_and_a_callers_is_kept() {
        let sampled = TraceFlags::SAMPLED;
        let none = TraceState::default();
        let dm = |s: SpanData| decision_maker(&s).map(|v| v.as_str().to_owned());
        assert_eq!(
            dm(span(false, sampled, none.clone())).as_deref(),
            Some("-0")
        );
        assert_eq!(
            dm(span(true, sampled | DEFERRED, none.clone())).as_deref(),
            Some("-0")
        );
        assert_eq!(dm(span(true, sampled, none)), None);
        let callers = TraceState::from_key_value([(CALLER_DECISION_MAKER, "-4")]).unwrap();
        assert_eq!(dm(span(true, sampled, callers)).as_deref(), Some("-4"));
    }
}
