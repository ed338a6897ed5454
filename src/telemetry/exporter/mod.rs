//! The exporter, behind one seam: `TRACE_EXPORTER` chooses, at start, which crate turns the finished
//! spans into Datadog spans and sends them to the trace agent.
//!
//! - [`opentelemetry_datadog`] (the default): the crate the project was specified with, deprecated
//!   upstream, with the project's own sampler, ids, propagation and bounded queue around it.
//! - [`datadog_opentelemetry`]: Datadog's own Rust tracer (dd-trace-rs), which brings its own.
//!
//! Each is a [`Pipeline`]: an OpenTelemetry tracer provider for the `tracing` layer, and what the
//! trace layer needs to know of it. Each crate is touched by its one file; the rest of the service
//! sees only this module. docs/service.md#which-exporter compares what each sends and costs.

#[cfg(feature = "datadog-opentelemetry")]
pub mod datadog_opentelemetry;
pub mod opentelemetry_datadog;

use std::sync::Arc;

use opentelemetry_sdk::trace::SdkTracerProvider;
use url::Url;

use super::export_queue::ExportStats;
use super::propagation::Extract;
use super::trace_layer::SpanFields;
use crate::config::{Config, TraceExporter};

/// A running exporter.
pub struct Pipeline {
    /// The tracer provider the `tracing` layer creates spans with; shut it down to flush.
    pub provider: SdkTracerProvider,
    /// How a caller's trace headers are read: the exporter's sampler understands only its own
    /// propagator's contexts.
    pub extract: Arc<dyn Extract>,
    /// What the request span carries for this exporter.
    pub span_fields: SpanFields,
    /// The bounded queue's counters, where the project keeps them (the default exporter).
    pub stats: Option<Arc<ExportStats>>,
}

/// What every exporter is told.
#[derive(Debug, Clone)]
pub struct Settings {
    pub agent_url: Url,
    pub service: String,
    pub env: String,
    pub version: String,
    /// `DD_TRACE_SAMPLE_RATE`, if set.
    pub sample_rate: Option<f64>,
}

impl Settings {
    pub fn of(config: &Config) -> Self {
        Self {
            agent_url: config.datadog.agent_url(),
            service: config.datadog.dd_service.clone(),
            env: config.datadog.dd_env.clone(),
            version: config.datadog.dd_version.clone(),
            sample_rate: config.datadog.dd_trace_sample_rate,
        }
    }
}

/// Starts the exporter `config` chooses.
pub fn start(config: &Config) -> anyhow::Result<Pipeline> {
    let settings = Settings::of(config);
    match config.datadog.trace_exporter {
        TraceExporter::OpentelemetryDatadog => opentelemetry_datadog::pipeline(&settings),
        #[cfg(feature = "datadog-opentelemetry")]
        TraceExporter::DatadogOpentelemetry => datadog_opentelemetry::pipeline(&settings),
        // Refused at start by the configuration (`Config::check_combinations`).
        #[cfg(not(feature = "datadog-opentelemetry"))]
        TraceExporter::DatadogOpentelemetry => {
            anyhow::bail!("TRACE_EXPORTER=datadog-opentelemetry: not in this build")
        }
    }
}
