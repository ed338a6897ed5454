//! Recording: per path, the latency histogram, status codes and failures. Each worker records into
//! its own [`Record`]; they are merged once at the end, so the hot path takes no lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use http::StatusCode;

use crate::client::Failure;

/// Latencies are recorded in microseconds, from 1 µs to 1 hour, with 3 significant digits.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// What happened to the requests of one path.
#[derive(Debug, Clone)]
pub struct PathRecord {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<Failure, u64>,
}

impl Default for PathRecord {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
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

    /// An answer, with its latency; answers are timed whatever their status.
    pub fn answer(&mut self, path: usize, status: StatusCode, latency: Duration) {
        let record = &mut self.paths[path];
        *record.statuses.entry(status.as_u16()).or_default() += 1;
        record
            .latency_us
            .saturating_record(latency.as_micros().clamp(1, u128::from(HIGHEST_MICROS)) as u64);
    }

    /// A request that got no answer; its time is not a latency.
    pub fn failure(&mut self, path: usize, failure: Failure) {
        *self.paths[path].failures.entry(failure).or_default() += 1;
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
