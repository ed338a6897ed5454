//! A connection's part in tracing: each request's trace context (its ids, and with `--trace-agent`
//! loadgen's client span), the headers that carry it, and the span handed to the export queue once
//! the request is over. Nothing here waits or locks.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::client::Failure;
use crate::export::{ClientSpan, Reporter};
use crate::trace_headers::{Injector, TraceContext, TraceHeaders};

/// One request's trace, from its start to its report.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    pub context: TraceContext,
    start: SystemTime,
}

/// Tracing for one connection; `None` from [`Tracer::new`] when the run traces nothing.
#[derive(Debug)]
pub struct Tracer {
    format: TraceHeaders,
    injector: Injector,
    reporter: Option<Reporter>,
}

impl Tracer {
    pub fn new(format: TraceHeaders, reporter: Option<Reporter>) -> Option<Self> {
        if format == TraceHeaders::None && reporter.is_none() {
            return None;
        }
        Some(Self {
            format,
            injector: Injector::new(format),
            reporter,
        })
    }

    /// The trace of a request timed from `timed_from`: a span's context when spans are reported
    /// (the span starts at `timed_from`, on the wall clock), else ids made up for the headers.
    pub fn start(&self, timed_from: Instant) -> Trace {
        if self.reporter.is_none() {
            return Trace {
                context: TraceContext::unreported(self.format),
                start: SystemTime::UNIX_EPOCH,
            };
        }
        let now = SystemTime::now();
        let start = now.checked_sub(timed_from.elapsed()).unwrap_or(now);
        Trace {
            context: TraceContext::new(start),
            start,
        }
    }

    /// How many headers [`Tracer::inject`] adds at most.
    pub fn header_count(&self) -> usize {
        self.injector.header_count()
    }

    /// Adds `trace`'s headers to a request about to be sent.
    pub fn inject(&mut self, trace: &Trace, headers: &mut HeaderMap) {
        self.injector.inject(&trace.context, headers);
    }

    /// Whether the trace's id is worth naming in the summary: it was sent to the service, or it is
    /// that of a span reported to the agent (a request that never left still has its span).
    pub fn names(&self, sent: bool) -> bool {
        sent || self.reporter.is_some()
    }

    /// Reports the client span of a request that ended after `duration` with `outcome`.
    pub fn end(
        &self,
        trace: &Trace,
        entry: usize,
        index: u64,
        duration: Duration,
        outcome: Result<StatusCode, Failure>,
    ) {
        if let Some(reporter) = &self.reporter {
            reporter.report(ClientSpan {
                context: trace.context,
                start: trace.start,
                duration,
                entry,
                index,
                outcome,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tracer_when_nothing_is_traced() {
        assert!(Tracer::new(TraceHeaders::None, None).is_none());
    }

    #[test]
    fn the_map_is_sized_for_every_header_a_trace_adds() {
        for (format, count) in [
            (TraceHeaders::Datadog, 4),
            (TraceHeaders::W3c, 1),
            (TraceHeaders::Both, 5),
        ] {
            let mut tracer = Tracer::new(format, None).unwrap();
            let trace = Trace {
                context: TraceContext::new(SystemTime::now()),
                start: SystemTime::UNIX_EPOCH,
            };
            let mut headers = HeaderMap::new();
            tracer.inject(&trace, &mut headers);
            assert_eq!(
                (headers.len(), tracer.header_count()),
                (count, count),
                "{format}"
            );
        }
    }
}
