//! Recording: per path, the latency histogram, status codes and failures, and the trace ids of the
//! requests worth opening in Datadog (the slowest, the first failed). Each worker records into its
//! own [`Record`]; they are merged once at the end, so the hot path takes no lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use http::StatusCode;

use crate::client::Failure;

/// Latencies are recorded in microseconds, from 1 µs to 1 hour, with 3 significant digits.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// The slowest requests of a path whose trace ids are kept.
pub const SLOWEST_KEPT: usize = 5;
/// The failed requests of a path whose trace ids are kept (the first ones).
pub const FAILED_KEPT: usize = 3;

/// What happened to the requests of one path.
#[derive(Debug, Clone)]
pub struct PathRecord {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<Failure, u64>,
    /// The traced requests that took longest, slowest first (at most [`SLOWEST_KEPT`]).
    pub slowest: Vec<Noted>,
    /// The first traced requests that failed, by request number (at most [`FAILED_KEPT`]).
    pub failed: Vec<Noted>,
}

/// A traced request worth opening in Datadog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noted {
    pub trace_id: u128,
    /// The request's number in the run.
    pub index: u64,
    /// Its latency; for a request with no answer, how long it took to fail.
    pub latency: Duration,
    pub outcome: Result<StatusCode, Failure>,
}

impl Default for PathRecord {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            slowest: Vec::new(),
            failed: Vec::new(),
        }
    }
}

impl PathRecord {
    /// Requests that got an answer or a failure.
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures.values().sum::<u64>()
    }

    /// Requests that failed: no answer, or a 5xx answer (a 4xx is the client's doing, and counted
    /// under its status code only).
    pub fn errors(&self) -> u64 {
        self.failures.values().sum::<u64>() + self.server_errors()
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(code, _)| **code >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    fn merge(&mut self, other: &PathRecord) {
        self.latency_us
            .add(&other.latency_us)
            .expect("same histogram bounds");
        for (code, n) in &other.statuses {
            *self.statuses.entry(*code).or_default() += n;
        }
        for (failure, n) in &other.failures {
            *self.failures.entry(*failure).or_default() += n;
        }
        for noted in &other.slowest {
            self.note_slow(*noted);
        }
        for noted in &other.failed {
            self.note_failed(*noted);
        }
    }

    /// Keeps `noted` if it is among the [`SLOWEST_KEPT`] slowest so far (after those as slow that
    /// came first). Most requests are not: a few comparisons with those kept.
    fn note_slow(&mut self, noted: Noted) {
        let at = self
            .slowest
            .partition_point(|kept| kept.latency >= noted.latency);
        if at == SLOWEST_KEPT {
            return;
        }
        self.slowest.insert(at, noted);
        self.slowest.truncate(SLOWEST_KEPT);
    }

    /// Keeps `noted` if it is among the [`FAILED_KEPT`] first failed requests so far (failures are
    /// few: sorting a handful costs nothing).
    fn note_failed(&mut self, noted: Noted) {
        self.failed.push(noted);
        self.failed.sort_unstable_by_key(|kept| kept.index);
        self.failed.truncate(FAILED_KEPT);
    }
}

/// One worker's (or, merged, the run's) records, by path index.
#[derive(Debug, Clone)]
pub struct Record {
    pub paths: Vec<PathRecord>,
}

impl Record {
    pub fn new(paths: usize) -> Self {
        Self {
            paths: vec![PathRecord::default(); paths],
        }
    }

    /// An answer, with its latency; answers are timed whatever their status. `trace_id`, when the
    /// request carried one, may be kept among the path's slowest or failed.
    pub fn answer(
        &mut self,
        path: usize,
        status: StatusCode,
        latency: Duration,
        traced: Option<(u128, u64)>,
    ) {
        let record = &mut self.paths[path];
        *record.statuses.entry(status.as_u16()).or_default() += 1;
        record
            .latency_us
            .saturating_record(latency.as_micros().clamp(1, u128::from(HIGHEST_MICROS)) as u64);
        if let Some((trace_id, index)) = traced {
            let noted = Noted {
                trace_id,
                index,
                latency,
                outcome: Ok(status),
            };
            record.note_slow(noted);
            if status.is_server_error() {
                record.note_failed(noted);
            }
        }
    }

    /// A request that got no answer; its time is not a latency, but a traced one's trace id may be
    /// kept among the path's failed.
    pub fn failure(
        &mut self,
        path: usize,
        failure: Failure,
        elapsed: Duration,
        traced: Option<(u128, u64)>,
    ) {
        let record = &mut self.paths[path];
        *record.failures.entry(failure).or_default() += 1;
        if let Some((trace_id, index)) = traced {
            record.note_failed(Noted {
                trace_id,
                index,
                latency: elapsed,
                outcome: Err(failure),
            });
        }
    }

    pub fn merge(&mut self, other: &Record) {
        for (mine, theirs) in self.paths.iter_mut().zip(&other.paths) {
            mine.merge(theirs);
        }
    }

    /// All paths together.
    pub fn total(&self) -> PathRecord {
        let mut total = PathRecord::default();
        for path in &self.paths {
            total.merge(path);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: StatusCode = StatusCode::OK;
    const FAIL: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_five_slowest_traced_answers_are_kept_slowest_first() {
        let mut record = Record::new(1);
        for (i, latency) in [3, 9, 1, 7, 5, 8, 2, 6].into_iter().enumerate() {
            let i = i as u64;
            record.answer(0, OK, ms(latency), Some((100 + u128::from(i), i)));
        }
        record.answer(0, OK, ms(50), None);
        let kept: Vec<(u64, u128)> = record.paths[0]
            .slowest
            .iter()
            .map(|n| (n.latency.as_millis() as u64, n.trace_id))
            .collect();
        assert_eq!(
            kept,
            [(9, 101), (8, 105), (7, 103), (6, 107), (5, 104)],
            "an untraced answer is not named, however slow"
        );
        assert!(record.paths[0].failed.is_empty());
    }

    #[test]
    fn an_answer_as_slow_as_the_fastest_kept_does_not_displace_it() {
        let mut record = Record::new(1);
        for i in 0..6 {
            record.answer(0, OK, ms(4), Some((u128::from(i), i)));
        }
        let kept: Vec<u128> = record.paths[0].slowest.iter().map(|n| n.trace_id).collect();
        assert_eq!(kept, [0, 1, 2, 3, 4], "the first come stay");
    }

    #[test]
    fn the_first_three_failures_are_kept_whichever_worker_saw_them() {
        let mut first = Record::new(1);
        let mut second = Record::new(1);
        first.answer(0, FAIL, ms(1), Some((1, 4)));
        first.failure(0, Failure::Timeout, ms(1), Some((2, 9)));
        first.answer(0, OK, ms(1), Some((3, 1)));
        second.failure(0, Failure::Io, ms(1), Some((4, 2)));
        second.answer(0, FAIL, ms(1), Some((5, 7)));
        second.failure(0, Failure::Connect, ms(1), Some((6, 3)));
        second.failure(0, Failure::Connect, ms(1), None);
        first.merge(&second);
        let failed: Vec<(u64, u128)> = first.paths[0]
            .failed
            .iter()
            .map(|n| (n.index, n.trace_id))
            .collect();
        assert_eq!(failed, [(2, 4), (3, 6), (4, 1)], "by request number");
        assert_eq!(first.paths[0].errors(), 6);
        let slowest: Vec<u128> = first.paths[0].slowest.iter().map(|n| n.trace_id).collect();
        assert_eq!(slowest.len(), 3, "answers only: {slowest:?}");
    }
}
