//! Telemetry: the tracing subscriber that turns request spans into Datadog spans and writes logs.
//!
//! Two layers on one registry: the OpenTelemetry layer exports the request and query spans (and only
//! those) through the chosen exporter ([`exporter`]) to the trace agent; the log layer writes every
//! event in the format of [`logs`]. [`Telemetry::build`] takes the log writer as a parameter, so tests
//! capture log lines and run their own subscriber without touching the global one; it hands the
//! router its [`TraceLayer`], which reads trace headers the way the chosen exporter does.
//!
//! Nothing here knows the rest of the service: what the span contract names is in [`contract`], and
//! the service tells the trace layer about a response through the contract's extensions.

pub mod contract;
pub mod export_queue;
pub mod exporter;
pub mod ids;
pub mod logs;
pub mod propagation;
pub mod sampling;
pub mod trace_layer;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use tracing::Dispatch;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use self::contract::{query, server};
use self::export_queue::ExportCounts;
use self::exporter::Pipeline;
use self::logs::{LogLayer, ServiceTags};
use self::trace_layer::TraceLayer;
use crate::config::Config;

/// The subscriber and what must be shut down with it.
pub struct Telemetry {
    /// The subscriber: install it globally (`main`) or for a scope (tests).
    pub dispatch: Dispatch,
    pipeline: Option<Pipeline>,
}

impl Telemetry {
    /// Builds the subscriber for `config`, writing log lines to `writer`.
    pub fn build<W>(config: &Config, writer: W) -> anyhow::Result<Self>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let pipeline = if config.datadog.dd_trace_enabled {
            Some(exporter::start(config)?)
        } else {
            None
        };
        let otel = pipeline.as_ref().map(|pipeline| {
            tracing_opentelemetry::layer()
                .with_tracer(pipeline.provider.tracer("apm-demo"))
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
                        && (meta.target() == server::SPAN_TARGET
                            || meta.target() == query::SPAN_TARGET)
                }))
        });
        let tags = config.datadog.dd_logs_injection.then(|| ServiceTags {
            service: config.datadog.dd_service.clone(),
            env: config.datadog.dd_env.clone(),
            version: config.datadog.dd_version.clone(),
        });
        // The request spans pass the log filter whatever RUST_LOG says, so that a line written inside a
        // request finds its span's ids (the layer formats nothing for spans themselves).
        let log_filter = EnvFilter::builder()
            .parse(&config.logs.rust_log)?
            .or(filter_fn(|meta| {
                meta.is_span() && meta.target() == server::SPAN_TARGET
            }));
        let logs = LogLayer::new(config.logs.log_format, tags, writer).with_filter(log_filter);
        let subscriber = Registry::default().with(otel).with(logs);
        Ok(Self {
            dispatch: Dispatch::new(subscriber),
            pipeline,
        })
    }

    /// The router's trace layer: reads a caller's trace headers as the exporter does (not at all
    /// when spans are not exported).
    pub fn trace_layer(&self) -> TraceLayer {
        match &self.pipeline {
            Some(pipeline) => TraceLayer {
                extract: Some(pipeline.extract.clone()),
                fields: pipeline.span_fields,
            },
            None => TraceLayer::not_exporting(),
        }
    }

    /// What the export path has done so far, where the exporter counts it: the default exporter's
    /// bounded queue does; Datadog's own exporter reports its queue to Datadog in its own telemetry
    /// instead, and `None` here.
    pub fn export_counts(&self) -> Option<ExportCounts> {
        self.pipeline
            .as_ref()
            .and_then(|pipeline| pipeline.stats.as_ref())
            .map(|stats| stats.counts())
    }

    /// Sends the spans still queued, waiting at most `timeout`. Blocks: call it off the async runtime.
    pub fn shutdown(&self, timeout: Duration) -> anyhow::Result<()> {
        match &self.pipeline {
            Some(pipeline) => pipeline
                .provider
                .shutdown_with_timeout(timeout)
                .map_err(|e| anyhow::anyhow!("flushing spans at shutdown: {e}")),
            None => Ok(()),
        }
    }
}
