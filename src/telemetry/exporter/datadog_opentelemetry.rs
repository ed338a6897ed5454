//! The other exporter: `datadog-opentelemetry` 0.5.4, Datadog's own Rust tracer (DataDog/dd-trace-rs),
//! and the only module that touches it.
//!
//! It brings what the default exporter's pipeline builds by hand, Datadog's way: its sampler (sampling
//! rules, a rate limiter, the Agent's rates, remote configuration), 128-bit ids, its propagator
//! (Datadog, W3C, B3, baggage), a span processor that sends whole trace chunks from a byte-bounded
//! buffer, and client-side stats. It reads the `DD_*` environment itself, as every Datadog tracer
//! does; the settings the service resolved (flags included) are set over it, so both exporters serve
//! the same service, environment, version, agent and sample rate.
//!
//! Version 0.5.4 because it is built on the OpenTelemetry versions the default exporter needs
//! (opentelemetry 0.32, tracing-opentelemetry 0.33); 0.6 needs 0.33/0.34.

use std::fmt;
use std::sync::Arc;

use datadog_opentelemetry::configuration::Config as TracerConfig;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt as _;

use super::{Pipeline, Settings};
use crate::telemetry::propagation::{Extract, Incoming, Sanitized};
use crate::telemetry::trace_layer::SpanFields;

/// The pipeline: the tracer's own provider, and its propagator for the trace layer (its sampler reads
/// what its propagator extracted: the caller's priority, decision maker, origin and tags).
pub fn pipeline(settings: &Settings) -> anyhow::Result<Pipeline> {
    let mut config = TracerConfig::builder();
    config
        .set_service(settings.service.clone())
        .set_env(settings.env.clone())
        .set_version(settings.version.clone())
        .set_trace_agent_url(settings.agent_url.as_str().trim_end_matches('/').to_owned());
    // Unset stays unset: an explicit rate also installs the tracer's rate limiter (DD_TRACE_RATE_LIMIT,
    // 100 traces a second by default), as in every Datadog tracer.
    if let Some(rate) = settings.sample_rate {
        config.set_trace_sample_rate(rate);
    }
    // `init_local`, not `init`: no global provider or propagator, so that tests can run several.
    let (provider, propagator) = datadog_opentelemetry::tracing()
        .with_config(config.build())
        .init_local();
    let fields = propagator.fields().map(str::to_owned).collect();
    Ok(Pipeline {
        provider,
        extract: Arc::new(DatadogPropagation { propagator, fields }),
        span_fields: SpanFields::Complete,
        stats: None,
    })
}

/// The tracer's propagator, behind the service's header guard ([`Sanitized`]: an oversized, repeated
/// or non-text header is absent); ids, priorities and tags are its to judge.
struct DatadogPropagation<P> {
    propagator: P,
    /// The headers it reads: a request without any of them (most) skips it.
    fields: Vec<String>,
}

impl<P> fmt::Debug for DatadogPropagation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatadogPropagation")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl<P: TextMapPropagator + Send + Sync> Extract for DatadogPropagation<P> {
    fn extract(&self, headers: &HeaderMap) -> Incoming {
        if !self.fields.iter().any(|field| headers.contains_key(field)) {
            return Incoming::default();
        }
        let context = self.propagator.extract(&Sanitized(headers));
        if !context.span().span_context().is_valid() {
            return Incoming::default();
        }
        // The origin travels in the context, and the tracer writes `_dd.origin` itself.
        Incoming {
            parent: Some(context),
            origin: None,
        }
    }
}
