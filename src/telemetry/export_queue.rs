//! Between a finished span and the trace agent: a bounded queue, and reports of what goes wrong.
//!
//! The SDK's batch processor exports from its own thread, so a request never waits for the agent.
//! Two wrappers around it keep the promise that an absent or stuck agent never hurts the service:
//! [`BoundedProcessor`] drops (and counts) spans beyond a fixed number waiting, so memory stays
//! bounded; [`ReportingExporter`] counts failed exports and logs the problem once, then at most once
//! per [`REPORT_INTERVAL`], and once more when the agent is back.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

/// Spans waiting for export at most; beyond this they are dropped and counted. About 1 KiB each (a
/// client's URL and user agent are capped at 1 KiB: `trace_layer::MAX_CLIENT_VALUE`).
pub const QUEUE_CAPACITY: usize = 4096;

/// How often, at most, a persisting export problem is logged again.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of the export path, shared by the processor and the exporter.
#[derive(Debug)]
pub struct ExportStats {
    queued: AtomicU64,
    taken: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    drops: Throttle,
    failures: Throttle,
    failing: AtomicBool,
}

/// A snapshot of [`ExportStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    /// Spans handed to the queue.
    pub queued: u64,
    /// Spans the agent accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans in exports that failed (agent absent, slow or answering an error).
    pub failed: u64,
}

impl ExportStats {
    pub fn new(report_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            drops: Throttle::new(report_interval),
            failures: Throttle::new(report_interval),
            failing: AtomicBool::new(false),
        })
    }

    pub fn counts(&self) -> ExportCounts {
        ExportCounts {
            queued: self.queued.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Spans queued and not yet taken by an export.
    fn waiting(&self) -> u64 {
        let queued = self.queued.load(Ordering::Relaxed);
        queued.saturating_sub(self.taken.load(Ordering::Relaxed))
    }
}

/// The batch processor, with at most `capacity` spans waiting; the rest are dropped and counted.
#[derive(Debug)]
pub struct BoundedProcessor {
    inner: BatchSpanProcessor,
    stats: Arc<ExportStats>,
    capacity: u64,
}

impl BoundedProcessor {
    /// `inner`'s own queue must hold more than `capacity`, so that it never drops uncounted.
    pub fn new(inner: BatchSpanProcessor, capacity: usize, stats: Arc<ExportStats>) -> Self {
        Self {
            inner,
            stats,
            capacity: capacity as u64,
        }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.waiting() >= self.capacity {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(dropped) = self.stats.drops.record(1) {
                tracing::warn!(
                    target: "apm_demo::telemetry",
                    dropped,
                    capacity = self.capacity,
                    "trace export queue full: dropped {dropped} spans since the last report \
                     (the agent is slower than the traffic)"
                );
            }
            return;
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that counts and reports its failures instead of passing them to the SDK, which would
/// log every one of them.
#[derive(Debug)]
pub struct ReportingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
    agent: String,
}

impl<E> ReportingExporter<E> {
    pub fn new(inner: E, stats: Arc<ExportStats>, agent: impl Into<String>) -> Self {
        Self {
            inner,
            stats,
            agent: agent.into(),
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let stats = &self.stats;
        stats.taken.fetch_add(spans, Ordering::Relaxed);
        match self.inner.export(batch).await {
            Ok(()) => {
                stats.exported.fetch_add(spans, Ordering::Relaxed);
                if stats.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "apm_demo::telemetry", agent = %self.agent, "traces reach the agent again");
                }
            }
            Err(error) => {
                stats.failed.fetch_add(spans, Ordering::Relaxed);
                stats.failing.store(true, Ordering::Relaxed);
                if let Some(lost) = stats.failures.record(spans) {
                    tracing::warn!(
                        target: "apm_demo::telemetry",
                        agent = %self.agent,
                        lost,
                        "cannot send traces to the agent at {}: {error}; {lost} spans lost since the \
                         last report (requests are not affected)",
                        self.agent
                    );
                }
            }
        }
        Ok(())
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

/// Says when a recurring problem is due to be reported: the first time, then at most once per
/// interval, with the count accumulated in between.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    last_report: Mutex<Option<Instant>>,
    pending: AtomicU64,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_report: Mutex::new(None),
            pending: AtomicU64::new(0),
        }
    }

    /// Adds `count`; returns the total to report when a report is due.
    fn record(&self, count: u64) -> Option<u64> {
        self.pending.fetch_add(count, Ordering::Relaxed);
        // Another thread is deciding right now: it reports these too.
        let mut last = self.last_report.try_lock().ok()?;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            return None;
        }
        *last = Some(now);
        Some(self.pending.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider};

    /// An agent that accepts everything.
    #[derive(Debug)]
    struct AcceptingAgent;

    impl SpanExporter for AcceptingAgent {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    /// The pipeline's bounded processor, over a batch processor that exports only when flushed (as if
    /// the agent were too slow to take anything), reporting into `stats`.
    fn provider_that_exports_on_flush_only(stats: &Arc<ExportStats>) -> SdkTracerProvider {
        let exporter = ReportingExporter::new(AcceptingAgent, stats.clone(), "test");
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(2 * QUEUE_CAPACITY)
                    .with_max_export_batch_size(2 * QUEUE_CAPACITY)
                    .with_scheduled_delay(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        SdkTracerProvider::builder()
            .with_span_processor(BoundedProcessor::new(
                batches,
                QUEUE_CAPACITY,
                stats.clone(),
            ))
            .build()
    }

    #[test]
    fn a_full_queue_holds_4096_spans_and_drops_and_counts_the_rest_until_an_export_takes_them() {
        let stats = ExportStats::new(REPORT_INTERVAL);
        let provider = provider_that_exports_on_flush_only(&stats);
        let tracer = provider.tracer("test");
        let capacity = QUEUE_CAPACITY as u64;
        for _ in 0..capacity + 10 {
            tracer.start("request").end();
        }
        let counts = stats.counts();
        assert_eq!((counts.queued, counts.dropped), (capacity, 10));

        // Once an export has taken the waiting spans, there is room again.
        provider.force_flush().unwrap();
        assert_eq!(stats.counts().exported, capacity);
        tracer.start("request").end();
        let counts = stats.counts();
        assert_eq!((counts.queued, counts.dropped), (capacity + 1, 10));
        provider.shutdown().unwrap();
        assert_eq!(stats.counts().exported, capacity + 1);
    }

    #[test]
    fn throttle_reports_first_then_once_per_interval_with_the_count() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.record(3), Some(3));
        assert_eq!(throttle.record(2), None);
        assert_eq!(throttle.record(5), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.record(1), Some(8));
        assert_eq!(throttle.record(1), None);
    }
}
