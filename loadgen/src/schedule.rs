//! The schedule: hands each request its number and, at a fixed rate, the time it is due, until the
//! plan says stop. Shared by all connections: claiming a request is one atomic increment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::plan::{Mode, Plan};

/// Hands out request numbers to the connections, until the plan says stop.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    deadline: Option<Instant>,
    limit: Option<u64>,
    interval: Option<Duration>,
    next: AtomicU64,
}

/// One request to send: its number, and for a fixed rate, when it is due.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: u64,
    pub due: Option<Instant>,
}

impl Schedule {
    pub fn new(plan: &Plan, start: Instant) -> Self {
        Self {
            start,
            deadline: plan.stop.duration.map(|d| start + d),
            limit: plan.stop.requests,
            interval: match plan.mode {
                Mode::Open { rate } => Some(Duration::from_secs_f64(1.0 / rate)),
                Mode::Closed => None,
            },
            next: AtomicU64::new(0),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// The next request, or `None` when the run is over.
    pub fn claim(&self) -> Option<Slot> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| index >= limit) {
            return None;
        }
        let due = self
            .interval
            .map(|interval| self.start + interval.mul_f64(index as f64));
        let when = due.unwrap_or_else(Instant::now);
        if self.deadline.is_some_and(|deadline| when >= deadline) {
            return None;
        }
        Some(Slot { index, due })
    }
}
