//! EXPERIMENT (measurement only): loadgen's spans through the service's exporter stack,
//! opentelemetry_sdk's `SpanData` and opentelemetry-datadog 0.20.1 (v0.5), to compare its cost with
//! the direct v0.4 encoder. Selected with LOADGEN_EXPORTER=otel in a build with `otel-experiment`.
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, DatadogTraceStateBuilder};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

use super::ClientSpan;
use crate::mix::{Part, render};
use crate::plan::{Plan, Tracing};

pub struct OtelSink {
    exporter: DatadogExporter,
    url: url::Url,
    resources: Vec<String>,
    urls: Vec<(String, Option<Vec<Part>>)>,
    methods: Vec<&'static str>,
    runtime_id: StringValue,
    host: StringValue,
    port: StringValue,
    tid: (u64, StringValue),
    scope: InstrumentationScope,
}

impl OtelSink {
    pub fn new(plan: &Plan, tracing: &Tracing) -> Self {
        let exporter = std::thread::scope(|s| {
            s.spawn(|| {
                let client = reqwest::blocking::Client::builder()
                    .timeout(std::time::Duration::from_secs(2))
                    .build()
                    .unwrap();
                opentelemetry_datadog::new_pipeline()
                    .with_agent_endpoint(tracing.agent.base.as_str())
                    .with_api_version(ApiVersion::Version05)
                    .with_service_name(&tracing.service)
                    .with_env(&tracing.env)
                    .with_version(&tracing.version)
                    .with_http_client(client)
                    .with_name_mapping(|_, _| super::datadog::OPERATION_NAME)
                    .build_exporter()
                    .unwrap()
            })
            .join()
            .unwrap()
        });
        let encoder_view = super::datadog::Encoder::new(plan, tracing);
        let (resources, urls, methods) = encoder_view.entry_views();
        Self {
            exporter,
            url: tracing.agent.base.clone(),
            resources,
            urls,
            methods,
            runtime_id: Arc::<str>::from(format!("{:032x}", fastrand::u128(..))).into(),
            host: Arc::<str>::from(plan.target.base.host_str().unwrap_or_default()).into(),
            port: Arc::<str>::from(
                plan.target
                    .base
                    .port_or_known_default()
                    .unwrap_or(80)
                    .to_string(),
            )
            .into(),
            tid: (0, StringValue::from("")),
            scope: InstrumentationScope::builder("loadgen").build(),
        }
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    fn span(&mut self, span: &ClientSpan) -> SpanData {
        let high = span.context.high();
        if self.tid.0 != high {
            self.tid = (high, Arc::<str>::from(format!("{high:016x}")).into());
        }
        let (prefix, parts) = &self.urls[span.entry];
        let url = match parts {
            None => prefix.clone(),
            Some(parts) => {
                let mut url = prefix.clone();
                render(parts, span.index, &mut url);
                url.split_once('?')
                    .map_or(url.clone(), |(u, _)| u.to_owned())
            }
        };
        let mut attributes = vec![
            KeyValue::new("span.type", "http"),
            KeyValue::new("span.kind", "client"),
            KeyValue::new("component", "loadgen"),
            KeyValue::new("language", "rust"),
            KeyValue::new("runtime-id", self.runtime_id.clone()),
            KeyValue::new("http.method", self.methods[span.entry]),
            KeyValue::new("http.url", url),
            KeyValue::new("out.host", self.host.clone()),
            KeyValue::new("server.address", self.host.clone()),
            KeyValue::new("network.destination.port", self.port.clone()),
            KeyValue::new("_dd.p.dm", "-0"),
            KeyValue::new("_dd.p.tid", self.tid.1.clone()),
        ];
        let mut status = Status::Unset;
        match span.outcome {
            Ok(code) => {
                attributes.push(KeyValue::new("http.status_code", code.as_str().to_owned()));
                if code.is_server_error() {
                    attributes.push(KeyValue::new("error.type", code.as_str().to_owned()));
                    attributes.push(KeyValue::new("error.message", code.to_string()));
                    status = Status::error(code.to_string());
                }
            }
            Err(failure) => {
                attributes.push(KeyValue::new("error.type", format!("{failure:?}")));
                status = Status::error("failed");
            }
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(span.context.trace_id),
                SpanId::from(span.context.span_id),
                TraceFlags::SAMPLED,
                false,
                DatadogTraceStateBuilder::default()
                    .with_measuring(true)
                    .build(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(self.resources[span.entry].clone()),
            start_time: span.start,
            end_time: span.start + span.duration,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    pub fn send(&mut self, batch: &[ClientSpan]) -> Result<(), String> {
        let spans: Vec<SpanData> = batch.iter().map(|s| self.span(s)).collect();
        let mut future = std::pin::pin!(self.exporter.export(spans));
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
                return result.map_err(|e| e.to_string());
            }
            std::thread::yield_now();
        }
    }
}
