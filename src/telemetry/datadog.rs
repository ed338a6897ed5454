//! The only module that touches `opentelemetry-datadog`: the exporter and the Datadog propagator.
//!
//! The crate is deprecated upstream (its successor is Datadog's dd-trace-rs, crate
//! `datadog-opentelemetry`); keeping it behind this module means a move touches one file.
//! Spans go to the agent's `/v0.5/traces` endpoint, which Agent 7 and Datadog's test agent both serve
//! (the crate's v0.3 endpoint is not served by the test agent).
#![allow(deprecated)]

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, DatadogPropagator, ModelConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use url::Url;

use super::trace_layer::{COMPONENT, OPERATION_NAME, SPAN_TYPE};

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

/// The Datadog exporter, posting v0.5 msgpack to the trace agent, with the tags every server span
/// has in Datadog.
///
/// Those tags are the same on every request, so they are added here, on the export thread, instead of
/// being carried by the tracing span: through `tracing-opentelemetry` each attribute costs an owned
/// string per request, about 1,300 instructions on the request path (callgrind, bench/README.md).
#[derive(Debug)]
pub struct Exporter {
    inner: DatadogExporter,
}

impl SpanExporter for Exporter {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            if span.span_kind == SpanKind::Server {
                span.attributes.extend([
                    // The crate reads the Datadog span type from this attribute.
                    KeyValue::new("span.type", SPAN_TYPE),
                    KeyValue::new("span.kind", "server"),
                    KeyValue::new("component", COMPONENT),
                ]);
                // The crate sends the low 64 bits of the trace id; Datadog's tracers put the high 64
                // in `_dd.p.tid` (hex) on the first span of each trace chunk, which a server span is.
                let high =
                    (u128::from_be_bytes(span.span_context.trace_id().to_bytes()) >> 64) as u64;
                if high != 0 {
                    span.attributes
                        .push(KeyValue::new("_dd.p.tid", format!("{high:016x}")));
                }
                // Not `_dd.measured = 1` (ddtrace marks its web spans so): the crate reads it from the
                // trace state only, and a trace state per span costs about 900 instructions per
                // request (callgrind), for a flag that changes nothing on a top-level span.
            }
        }
        // The crate sorts the batch by trace id to group spans into traces, moving whole spans (about
        // 300 bytes each) around; sorting on cached keys moves each span once, and the crate's sort
        // then finds the batch sorted.
        batch.sort_by_cached_key(|span| {
            u128::from_be_bytes(span.span_context.trace_id().to_bytes())
        });
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
pub fn exporter(settings: &ExporterSettings) -> anyhow::Result<Exporter> {
    let inner = std::thread::scope(|scope| scope.spawn(|| build_exporter(settings)).join())
        .unwrap_or_else(|_| Err(anyhow::anyhow!("building the Datadog exporter panicked")))?;
    Ok(Exporter { inner })
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

/// The Datadog operation name: [`OPERATION_NAME`] for server spans, else the span name. The resource
/// stays the span name (the crate's default).
fn operation_name<'a>(span: &'a SpanData, _config: &'a ModelConfig) -> &'a str {
    match span.span_kind {
        SpanKind::Server => OPERATION_NAME,
        _ => span.name.as_ref(),
    }
}

/// The context in Datadog headers, as the crate's propagator reads them.
pub fn extract_context(headers: &dyn Extractor) -> Context {
    DatadogPropagator::new().extract(headers)
}
