//! Telemetry: the tracing subscriber that turns request spans into Datadog spans and writes logs.
//!
//! Two layers on one registry: the OpenTelemetry layer exports the request spans (and only those)
//! through [`export_queue`] and [`datadog`] to the trace agent; the log layer writes every event in
//! the format of [`logs`]. [`Telemetry::build`] takes the log writer as a parameter, so tests capture
//! log lines and run their own subscriber without touching the global one.

pub mod datadog;
pub mod export_queue;
pub mod logs;
pub mod propagation;
pub mod sampling;
pub mod trace_layer;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use self::datadog::ExporterSettings;
use self::export_queue::{
    BoundedProcessor, ExportCounts, ExportStats, REPORT_INTERVAL, ReportingExporter,
};
use self::logs::{LogLayer, ServiceTags};
use self::sampling::{DatadogIdGenerator, DatadogSampler};
use crate::config::Config;

/// Spans waiting for export at most; beyond this they are dropped and counted. About 1 KiB each.
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per request to the agent.
const BATCH_SIZE: usize = 512;
/// How long a span waits at most before its batch is sent (Datadog's tracers flush every second).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The subscriber and what must be shut down with it.
pub struct Telemetry {
    /// The subscriber: install it globally (`main`) or for a scope (tests).
    pub dispatch: Dispatch,
    provider: Option<SdkTracerProvider>,
    stats: Arc<ExportStats>,
}

impl Telemetry {
    /// Builds the subscriber for `config`, writing log lines to `writer`.
    pub fn build<W>(config: &Config, writer: W) -> anyhow::Result<Self>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let stats = ExportStats::new(REPORT_INTERVAL);
        let provider = if config.dd_trace_enabled {
            Some(tracer_provider(config, stats.clone())?)
        } else {
            None
        };
        let otel = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("apm-demo"))
                .with_location(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                // Nothing here reads OpenTelemetry's current context (the trace follows the tracing
                // span), so attaching it at every poll of the request would be pure cost.
                .with_context_activation(false)
                // The request and query spans only: not events (the agent would drop them) nor
                // other crates' spans.
                .with_filter(filter_fn(|meta| {
                    meta.is_span()
                        && (meta.target() == trace_layer::SPAN_TARGET
                            || meta.target() == crate::db::query::SPAN_TARGET)
                }))
        });
        let tags = config.dd_logs_injection.then(|| ServiceTags {
            service: config.dd_service.clone(),
            env: config.dd_env.clone(),
            version: config.dd_version.clone(),
        });
        // The request spans pass the log filter whatever RUST_LOG says, so that a line written inside a
        // request finds its span's ids (the layer formats nothing for spans themselves).
        let log_filter = EnvFilter::builder()
            .parse(&config.rust_log)?
            .or(filter_fn(|meta| {
                meta.is_span() && meta.target() == trace_layer::SPAN_TARGET
            }));
        let logs = LogLayer::new(config.log_format, tags, writer).with_filter(log_filter);
        let subscriber = Registry::default().with(otel).with(logs);
        Ok(Self {
            dispatch: Dispatch::new(subscriber),
            provider,
            stats,
        })
    }

    /// What the export path has done so far.
    pub fn export_counts(&self) -> ExportCounts {
        self.stats.counts()
    }

    /// Sends the spans still queued, waiting at most `timeout`. Blocks: call it off the async runtime.
    pub fn shutdown(&self, timeout: Duration) -> anyhow::Result<()> {
        match &self.provider {
            Some(provider) => provider
                .shutdown_with_timeout(timeout)
                .map_err(|e| anyhow::anyhow!("flushing spans at shutdown: {e}")),
            None => Ok(()),
        }
    }
}

/// The OpenTelemetry pipeline: Datadog sampling and ids, a bounded batch queue, the Datadog exporter.
fn tracer_provider(config: &Config, stats: Arc<ExportStats>) -> anyhow::Result<SdkTracerProvider> {
    let agent_url = config.agent_url();
    let exporter = datadog::exporter(&ExporterSettings {
        agent_url: agent_url.clone(),
        service: config.dd_service.clone(),
        env: config.dd_env.clone(),
        version: config.dd_version.clone(),
    })?;
    let exporter = ReportingExporter::new(exporter, stats.clone(), agent_url.as_str());
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
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BoundedProcessor::new(batches, QUEUE_CAPACITY, stats))
        .with_sampler(DatadogSampler::new(config.dd_trace_sample_rate))
        .with_id_generator(DatadogIdGenerator::default())
        // Every resource attribute lands in every span's meta: only what Datadog expects there
        // (`runtime-id`: one per process, as Datadog's tracers tag their spans).
        .with_resource(
            Resource::builder_empty()
                .with_attribute(KeyValue::new("language", "rust"))
                .with_attribute(KeyValue::new("runtime-id", runtime_id()))
                .build(),
        )
        .build())
}

/// A random id for this process, 32 lowercase hex digits (a UUID's 128 bits, as Datadog's Python
/// tracer writes `runtime-id`).
fn runtime_id() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    let (high, low) = (ids.new_span_id(), ids.new_span_id());
    format!("{high}{low}")
}
