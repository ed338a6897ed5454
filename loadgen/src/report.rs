//! The final report: a summary per path and overall, as a table for people or JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::client::Failure;
use crate::export::SpanCounts;
use crate::plan::{Mode, Plan};
use crate::record::{Noted, PathRecord, Record};
use crate::trace_headers::TraceHeaders;

/// The run's summary; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub mode: &'static str,
    /// The requested rate (open loop), per second.
    pub rate: Option<f64>,
    pub connections: usize,
    pub trace_headers: TraceHeaders,
    /// Where loadgen's client spans went (`--trace-agent`), and what became of them; absent when
    /// it reported none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<Spans>,
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub overall: PathSummary,
    pub paths: Vec<PathSummary>,
}

/// loadgen's client spans: sent to (accepted by) the agent, and lost (dropped when the queue was
/// full, or refused: the agent was down, slow or answered an error).
#[derive(Debug, Clone, Serialize)]
pub struct Spans {
    pub agent: String,
    #[serde(flatten)]
    pub counts: SpanCounts,
}

/// What one entry of the mix (or all of them) got.
#[derive(Debug, Clone, Serialize)]
pub struct PathSummary {
    /// The entry's method; absent from the overall figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The entry's path as written in the mix, `{low..high}` placeholders included (`all` overall).
    pub path: String,
    pub requests: u64,
    /// Requests per second over the run.
    pub achieved_rate: f64,
    /// No answer (connect, timeout, io) or a 5xx answer.
    pub errors: u64,
    pub error_rate: f64,
    pub status_codes: BTreeMap<String, u64>,
    /// Error kinds: connect, timeout, io (no answer) and status (5xx answers).
    pub error_kinds: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    /// The traces of the entry's slowest requests, slowest first (5 at most); empty when the run
    /// started no traces. Absent from the overall figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest: Option<Vec<TraceRef>>,
    /// The traces of the entry's first failed requests (a 5xx or no answer; 3 at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Vec<TraceRef>>,
}

/// A request's trace, as Datadog names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRef {
    /// The 128-bit trace id, 32 lowercase hex digits (zero-padded for a 64-bit id).
    pub trace_id: String,
    /// Its low 64 bits in decimal, as a string (beyond what a JSON number keeps exactly): the span's
    /// `trace_id` in Datadog, and `dd.trace_id` in logs.
    pub trace_id_64: String,
    pub latency_ms: f64,
    /// The answer's status code; absent for a request with no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed (`status` for a 5xx, `connect`, `timeout`, `io`); absent for a success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl TraceRef {
    fn new(noted: &Noted) -> Self {
        let (status, error) = match noted.outcome {
            Ok(status) => (
                Some(status.as_u16()),
                status.is_server_error().then_some("status"),
            ),
            Err(failure) => (None, Some(kind_name(failure))),
        };
        Self {
            trace_id: format!("{:032x}", noted.trace_id),
            trace_id_64: (noted.trace_id as u64).to_string(),
            // To the microsecond, as the percentiles.
            latency_ms: noted.latency.as_micros() as f64 / 1000.0,
            status,
            error,
        }
    }
}

/// Latency of answered requests, in milliseconds (HDR histogram, 3 significant digits).
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    pub fn new(plan: &Plan, record: &Record, elapsed: Duration, spans: Option<SpanCounts>) -> Self {
        let elapsed_s = elapsed.as_secs_f64();
        Self {
            target: plan.target.base.to_string(),
            mode: match plan.mode {
                Mode::Open { .. } => "open",
                Mode::Closed => "closed",
            },
            rate: match plan.mode {
                Mode::Open { rate } => Some(rate),
                Mode::Closed => None,
            },
            connections: plan.connections,
            trace_headers: plan.trace_headers,
            spans: plan
                .tracing
                .as_ref()
                .zip(spans)
                .map(|(tracing, counts)| Spans {
                    agent: tracing.agent.base.to_string(),
                    counts,
                }),
            elapsed_s,
            overall: PathSummary::new(None, "all", &record.total(), elapsed_s),
            paths: plan
                .mix
                .entries()
                .iter()
                .zip(&record.paths)
                .map(|(entry, path_record)| {
                    let mut row = PathSummary::new(
                        Some(entry.method.as_str()),
                        &entry.path,
                        path_record,
                        elapsed_s,
                    );
                    row.slowest = Some(path_record.slowest.iter().map(TraceRef::new).collect());
                    row.failed = Some(path_record.failed.iter().map(TraceRef::new).collect());
                    row
                })
                .collect(),
        }
    }

    /// The table, for a person at a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} for {:.1}s, {mode}, {} connections, trace headers: {}",
            self.target, self.elapsed_s, self.connections, self.trace_headers
        );
        let rows = || self.paths.iter().chain(std::iter::once(&self.overall));
        let width = rows()
            .map(|row| row.label().len())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9} {:>7}  {:<22} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "request",
            "requests",
            "rate/s",
            "errors",
            "status codes",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        for row in rows() {
            let statuses: Vec<String> = row
                .status_codes
                .iter()
                .map(|(code, n)| format!("{code}:{n}"))
                .collect();
            let l = row.latency_ms;
            let _ = writeln!(
                out,
                "{:<width$} {:>9} {:>9.1} {:>7}  {:<22} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                row.label(),
                row.requests,
                row.achieved_rate,
                row.errors,
                statuses.join(" "),
                l.p50,
                l.p90,
                l.p99,
                l.p99_9,
                l.max
            );
        }
        let kinds: Vec<String> = self
            .overall
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "errors: {} ({:.2}%): {}",
            self.overall.errors,
            self.overall.error_rate * 100.0,
            kinds.join(", ")
        );
        if let Some(spans) = &self.spans {
            let _ = writeln!(
                out,
                "spans: {} sent to the trace agent at {}, {} lost",
                spans.counts.sent, spans.agent, spans.counts.lost
            );
        }
        self.trace_lists(&mut out);
        if let Some(rate) = self.rate
            && self.overall.achieved_rate < rate * 0.95
        {
            let _ = writeln!(
                out,
                "note: achieved {:.1}/s of {rate}/s: the service (or --connections) could not keep up",
                self.overall.achieved_rate
            );
        }
        out
    }
}

impl Summary {
    /// The traces worth opening, per entry: its slowest requests, then its first failed ones.
    fn trace_lists(&self, out: &mut String) {
        let rows: Vec<(&PathSummary, &[TraceRef], &[TraceRef])> = self
            .paths
            .iter()
            .map(|row| {
                (
                    row,
                    row.slowest.as_deref().unwrap_or_default(),
                    row.failed.as_deref().unwrap_or_default(),
                )
            })
            .filter(|(_, slowest, failed)| !slowest.is_empty() || !failed.is_empty())
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "traces to open (Datadog takes either id at /apm/trace/<id>; search trace_id:<64-bit>):"
        );
        let _ = writeln!(
            out,
            "  {:<8} {:>9}  {:<7} {:<32}  trace id (64-bit)",
            "", "ms", "status", "trace id (128-bit, hex)"
        );
        for (row, slowest, failed) in rows {
            let _ = writeln!(out, "{}", row.label());
            let lists = [("slowest", slowest), ("failed", failed)];
            for (name, traces) in lists {
                for trace in traces {
                    let status = match (trace.status, trace.error) {
                        (Some(status), _) => status.to_string(),
                        (None, Some(error)) => error.to_owned(),
                        (None, None) => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "  {name:<8} {:>9.3}  {status:<7} {}  {}",
                        trace.latency_ms, trace.trace_id, trace.trace_id_64
                    );
                }
            }
        }
    }
}

impl PathSummary {
    /// The row's name in the table: `METHOD path`, or `all`.
    pub fn label(&self) -> String {
        match &self.method {
            Some(method) => format!("{method} {}", self.path),
            None => self.path.clone(),
        }
    }

    fn new(method: Option<&str>, path: &str, record: &PathRecord, elapsed_s: f64) -> Self {
        let requests = record.requests();
        let errors = record.errors();
        let mut error_kinds: BTreeMap<String, u64> =
            [Failure::Connect, Failure::Timeout, Failure::Io]
                .into_iter()
                .map(|failure| {
                    (
                        kind_name(failure).to_owned(),
                        record.failures.get(&failure).copied().unwrap_or(0),
                    )
                })
                .collect();
        error_kinds.insert("status".to_owned(), record.server_errors());
        let histogram = &record.latency_us;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency = if histogram.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: ms(histogram.value_at_quantile(0.50)),
                p90: ms(histogram.value_at_quantile(0.90)),
                p99: ms(histogram.value_at_quantile(0.99)),
                p99_9: ms(histogram.value_at_quantile(0.999)),
                max: ms(histogram.max()),
                mean: histogram.mean() / 1000.0,
            }
        };
        Self {
            method: method.map(str::to_owned),
            path: path.to_owned(),
            requests,
            achieved_rate: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            errors,
            error_rate: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            status_codes: record
                .statuses
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            error_kinds,
            latency_ms: latency,
            slowest: None,
            failed: None,
        }
    }
}

fn kind_name(failure: Failure) -> &'static str {
    match failure {
        Failure::Connect => "connect",
        Failure::Timeout => "timeout",
        Failure::Io => "io",
    }
}
