//! The only module that touches `opentelemetry-datadog`: the exporter and the Datadog propagator.
//!
//! The crate is deprecated upstream (its successor is Datadog's dd-trace-rs, crate
//! `datadog-opentelemetry`); keeping it behind this module means a move touches one file.
//! Spans go to the agent's `/v0.5/traces` endpoint, which Agent 7 and Datadog's test agent both serve
//! (the crate's v0.3 endpoint is not served by the test agent).
#![allow(deprecated)]

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::Value;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, DatadogPropagator, ModelConfig};
use opentelemetry_sdk::trace::SpanData;
use url::Url;

/// Longest time one export may take, connection included: an agent that accepts and never answers
/// costs the export thread this much, never a request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What the exporter stamps on every span.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    pub agent_url: Url,
    pub service: String,
    pub env: String,
    pub version: String,
}

/// The Datadog exporter, posting v0.5 msgpack to the trace agent.
///
/// Built on a thread of its own: the crate's blocking HTTP clients (its default one and ours) own a
/// runtime, which may be neither created nor dropped on an async runtime's thread, and callers (tests)
/// may be on one.
pub fn exporter(settings: &ExporterSettings) -> anyhow::Result<DatadogExporter> {
    std::thread::scope(|scope| scope.spawn(|| build_exporter(settings)).join())
        .unwrap_or_else(|_| Err(anyhow::anyhow!("building the Datadog exporter panicked")))
}

fn build_exporter(settings: &ExporterSettings) -> anyhow::Result<DatadogExporter> {
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

/// The Datadog operation name: the span's `operation.name` attribute (Datadog's own convention for
/// OpenTelemetry spans), else the span name. The resource stays the span name (the crate's default).
fn operation_name<'a>(span: &'a SpanData, _config: &'a ModelConfig) -> &'a str {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "operation.name")
        .and_then(|kv| match &kv.value {
            Value::String(name) => Some(name.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| span.name.as_ref())
}

/// The context in Datadog headers, as the crate's propagator reads them.
pub fn extract_context(headers: &dyn Extractor) -> Context {
    DatadogPropagator::new().extract(headers)
}
