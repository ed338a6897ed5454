//! Reporting loadgen's client spans to a Datadog trace agent, off the request path.
//!
//! A connection hands each finished request's [`ClientSpan`] (ids, times, outcome: under 100 bytes,
//! nothing formatted) to a bounded queue and goes on; when the queue is full (the agent is slow or
//! absent) the span is dropped and counted, never waited for. One thread of its own takes the spans
//! out, turns them into Datadog spans ([`datadog`]) and posts them to the agent ([`agent`]) in
//! batches, at least once a second, and flushes what is left when the run ends. A failed post costs
//! its spans (counted as lost) and one warning, not the run.

mod agent;
pub mod datadog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;

use crate::client::Failure;
use crate::plan::{Plan, Tracing};
use crate::trace_headers::TraceContext;

/// Spans waiting for the export thread at most; beyond, new ones are dropped and counted. At 10k
/// requests per second that is a second of spans (about 1 MB), enough to ride out a slow post.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Spans per payload at most (a few hundred KiB of msgpack; the Agent takes up to 25 MB).
const MAX_BATCH: usize = 2_000;
/// Spans wait at most this long for their batch (and a tick), as Datadog's tracers flush once a
/// second.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the export thread takes what the queue holds: at this pace [`QUEUE_CAPACITY`] holds
/// 200k spans a second, more than loadgen sends.
const TICK: Duration = Duration::from_millis(50);

/// One request's client span, as the request path hands it over: the rest (resource, URL, tags) is
/// derived from the plan on the export thread.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpan {
    pub context: TraceContext,
    /// When the request's timing started (its due time, for a request sent late at a fixed rate).
    pub start: SystemTime,
    pub duration: Duration,
    /// The mix entry, by index, and the request's number (which decides a numbered path).
    pub entry: usize,
    pub index: u64,
    pub outcome: Result<StatusCode, Failure>,
}

/// The request path's end of the queue; one clone per connection.
#[derive(Debug, Clone)]
pub struct Reporter {
    queue: SyncSender<ClientSpan>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Queues `span` for the agent, or drops and counts it when the queue is full. Never waits.
    pub fn report(&self, span: ClientSpan) {
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What became of the run's spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpanCounts {
    /// Accepted by the agent.
    pub sent: u64,
    /// Dropped (the queue was full) or refused (the agent was down, slow or answered an error).
    pub lost: u64,
}

/// The export thread and the queue to it.
pub struct Export {
    reporter: Reporter,
    thread: JoinHandle<SpanCounts>,
}

impl Export {
    /// Starts the export thread for `plan`'s spans, to `tracing.agent`.
    pub fn start(plan: &Plan, tracing: &Tracing) -> Self {
        let (queue, spans) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let sink = Sink::new(plan, tracing);
        let thread = std::thread::Builder::new()
            .name("loadgen-export".to_owned())
            .spawn(move || export(spans, sink))
            .expect("a thread for the export");
        Self {
            reporter: Reporter {
                queue,
                dropped: Arc::default(),
            },
            thread,
        }
    }

    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Flushes what is queued and stops the thread, once every [`Reporter`] is dropped (the
    /// connections have ended). Bounded: a post gives up after the agent client's timeout.
    pub fn finish(self) -> SpanCounts {
        let Self { reporter, thread } = self;
        let dropped = reporter.dropped.clone();
        drop(reporter);
        // The queue is closed now: wake the thread for its last flush rather than wait for a tick.
        thread.thread().unpark();
        let mut counts = thread.join().unwrap_or_default();
        counts.lost += dropped.load(Ordering::Relaxed);
        counts
    }
}

/// Where batches go: encoded, then posted to the agent.
struct Sink {
    encoder: datadog::Encoder,
    client: agent::AgentClient,
}

impl Sink {
    fn new(plan: &Plan, tracing: &Tracing) -> Self {
        Self {
            encoder: datadog::Encoder::new(plan, tracing),
            client: agent::AgentClient::new(&tracing.agent),
        }
    }

    fn send(&mut self, batch: &[ClientSpan]) -> Result<(), String> {
        let mut payload = Vec::new();
        self.encoder.encode(batch, &mut payload);
        self.client.post(payload, batch.len())
    }

    fn url(&self) -> &url::Url {
        self.client.url()
    }
}

/// The export thread: batches of spans, encoded and posted, until the queue closes.
///
/// It looks at the queue every [`TICK`] and never waits *in* it: a connection handing over a span
/// then never finds a sleeping thread to wake, which would cost a system call per request.
fn export(spans: Receiver<ClientSpan>, sink: Sink) -> SpanCounts {
    let mut flusher = Flusher {
        sink,
        counts: SpanCounts::default(),
        warned: false,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // When the oldest span of the batch was taken from the queue.
    let mut oldest: Option<Instant> = None;
    loop {
        std::thread::park_timeout(TICK);
        let mut open = true;
        loop {
            match spans.try_recv() {
                Ok(span) => {
                    oldest.get_or_insert_with(Instant::now);
                    batch.push(span);
                    if batch.len() == MAX_BATCH {
                        flusher.flush(&mut batch);
                        oldest = None;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let due = oldest.is_some_and(|oldest| oldest.elapsed() >= FLUSH_INTERVAL);
        if !batch.is_empty() && (due || !open) {
            flusher.flush(&mut batch);
            oldest = None;
        }
        if !open {
            return flusher.counts;
        }
    }
}

/// Sends batches and keeps count; warns once when the agent does not take one.
struct Flusher {
    sink: Sink,
    counts: SpanCounts,
    warned: bool,
}

impl Flusher {
    fn flush(&mut self, batch: &mut Vec<ClientSpan>) {
        match self.sink.send(batch) {
            Ok(()) => self.counts.sent += batch.len() as u64,
            Err(why) => {
                self.counts.lost += batch.len() as u64;
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "loadgen: warning: spans not accepted by the trace agent at {}: {why}; \
                         they are dropped and counted, the load goes on",
                        self.sink.url()
                    );
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> ClientSpan {
        ClientSpan {
            context: TraceContext {
                trace_id: 1,
                span_id: 1,
            },
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            entry: 0,
            index: 0,
            outcome: Ok(StatusCode::OK),
        }
    }

    #[test]
    fn a_span_on_the_queue_is_under_100_bytes() {
        assert!(std::mem::size_of::<ClientSpan>() <= 96);
    }

    #[test]
    fn the_lost_count_adds_the_dropped_spans_to_the_refused_ones() {
        let (queue, spans) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            // The export thread ends when the queue closes, with what it posted and lost.
            while spans.recv().is_ok() {}
            SpanCounts { sent: 4, lost: 2 }
        });
        let export = Export {
            reporter: Reporter {
                queue,
                dropped: Arc::new(AtomicU64::new(3)),
            },
            thread,
        };
        assert_eq!(export.finish(), SpanCounts { sent: 4, lost: 5 });
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, spans) = std::sync::mpsc::sync_channel(2);
        let reporter = Reporter {
            queue,
            dropped: Arc::default(),
        };
        for _ in 0..5 {
            reporter.report(span());
        }
        assert_eq!(reporter.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(spans.try_iter().count(), 2);
    }
}
