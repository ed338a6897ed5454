//! Running the plan: one task per connection, each claiming requests from the shared schedule,
//! sending them and recording what happened.
//!
//! At a fixed rate, a request that a connection takes up after its due time (every connection was
//! busy: the service is behind) is timed from when it was *due*, not from when it was sent: when the
//! service stalls, the requests queued behind the stall carry the wait in their latency, as users
//! would see it (no coordinated omission). A request taken up early waits for its due time and is
//! timed from its send, so the timer's own wake-up jitter (about a millisecond) is not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::Full;

use crate::client::{Connection, Failure};
use crate::export::Reporter;
use crate::plan::Plan;
use crate::prepared::Prepared;
use crate::record::Record;
use crate::schedule::Schedule;
use crate::tracer::{Trace, Tracer};

/// Pause before reconnecting after a failed connect, so a dead target is not hammered in a loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub record: Record,
    pub elapsed: Duration,
}

/// Checks that the target accepts connections, so a wrong URL fails at once with a clear message.
pub async fn preflight(plan: &Plan) -> anyhow::Result<()> {
    match Connection::open(&plan.target.address, plan.timeout).await {
        Ok(_) => Ok(()),
        Err(failure) => {
            let why = match failure {
                Failure::Timeout => "no answer",
                _ => "connection refused or host unknown",
            };
            anyhow::bail!(
                "cannot connect to {} ({}): {why}",
                plan.target.base,
                plan.target.address
            )
        }
    }
}

/// Runs the plan to its end and merges every connection's record; with a `reporter`, each request's
/// client span goes to it.
pub async fn run(plan: Arc<Plan>, progress: Arc<Progress>, reporter: Option<Reporter>) -> Outcome {
    let schedule = Arc::new(Schedule::new(&plan, Instant::now()));
    // Prepared once: a request to a fixed path clones its URI instead of parsing the text again.
    let targets: Arc<Vec<Prepared>> = Arc::new(Prepared::all(&plan.mix, &plan.target));
    let workers: Vec<_> = (0..plan.connections)
        .map(|_| {
            tokio::spawn(worker(
                plan.clone(),
                schedule.clone(),
                targets.clone(),
                progress.clone(),
                Tracer::new(plan.trace_headers, reporter.clone()),
            ))
        })
        .collect();
    // Only the connections hold a reporter now: the export queue closes when the last one ends.
    drop(reporter);
    let mut record = Record::new(plan.mix.entries().len());
    for worker in workers {
        if let Ok(worker_record) = worker.await {
            record.merge(&worker_record);
        }
    }
    Outcome {
        record,
        elapsed: schedule.start().elapsed(),
    }
}

async fn worker(
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    targets: Arc<Vec<Prepared>>,
    progress: Arc<Progress>,
    mut tracer: Option<Tracer>,
) -> Record {
    let mut record = Record::new(targets.len());
    let mut connection: Option<Connection> = None;
    let host = HeaderValue::from_str(&plan.target.authority)
        .expect("a URL authority is a valid header value");
    let user_agent = HeaderValue::from_static(concat!("loadgen/", env!("CARGO_PKG_VERSION")));
    let mut scratch = String::new();
    while let Some(slot) = schedule.claim() {
        let behind = slot.due.filter(|due| Instant::now() > *due);
        if let (Some(due), None) = (slot.due, behind) {
            tokio::time::sleep_until(due.into()).await;
        }
        let path = plan.mix.pick(slot.index);
        let timed_from = behind.unwrap_or_else(Instant::now);
        let trace = tracer.as_ref().map(|tracer| tracer.start(timed_from));

        if !connection.as_ref().is_some_and(Connection::is_open) {
            match Connection::open(&plan.target.address, plan.timeout).await {
                Ok(opened) => connection = Some(opened),
                Err(failure) => {
                    let elapsed = timed_from.elapsed();
                    let named = traced(&tracer, &trace, false, slot.index);
                    record.failure(path, failure, elapsed, named);
                    if let (Some(tracer), Some(trace)) = (&tracer, &trace) {
                        tracer.end(trace, path, slot.index, elapsed, Err(failure));
                    }
                    progress.requests.fetch_add(1, Ordering::Relaxed);
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    if slot.due.is_none() {
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                    }
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };

        let prepared = &targets[path];
        // An empty Full is no body at all (hyper sends no content-length for it), as Empty was.
        let body = prepared.body.clone().unwrap_or_default();
        let mut request = Request::new(Full::new(body));
        if let Some(tracer) = &tracer {
            // Sized once for every header below, rather than grown three times as they come (an
            // untraced request's few headers are cheaper in the map's default growth).
            *request.headers_mut() = HeaderMap::with_capacity(
                2 + prepared.headers.len() + plan.headers.len() + tracer.header_count(),
            );
        }
        *request.method_mut() = prepared.method.clone();
        *request.uri_mut() = prepared.uri(slot.index, &mut scratch);
        let headers = request.headers_mut();
        headers.insert(HOST, host.clone());
        headers.insert(USER_AGENT, user_agent.clone());
        for (name, value) in &prepared.headers {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &plan.headers {
            headers.append(name, value.clone());
        }
        if let (Some(tracer), Some(trace)) = (&mut tracer, &trace) {
            tracer.inject(trace, headers);
        }

        let outcome = open.send(request, plan.timeout).await;
        let elapsed = timed_from.elapsed();
        let named = traced(&tracer, &trace, true, slot.index);
        match outcome {
            Ok(status) => {
                record.answer(path, status, elapsed, named);
                if status.is_server_error() {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(failure) => {
                record.failure(path, failure, elapsed, named);
                progress.errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
        if let (Some(tracer), Some(trace)) = (&tracer, &trace) {
            tracer.end(trace, path, slot.index, elapsed, outcome);
        }
        progress.requests.fetch_add(1, Ordering::Relaxed);
    }
    record
}

/// The trace id and request number under which the record may name a request, if its trace exists
/// somewhere (`sent` to the service, or reported as loadgen's span).
fn traced(
    tracer: &Option<Tracer>,
    trace: &Option<Trace>,
    sent: bool,
    index: u64,
) -> Option<(u128, u64)> {
    match (tracer, trace) {
        (Some(tracer), Some(trace)) if tracer.names(sent) => Some((trace.context.trace_id, index)),
        _ => None,
    }
}
