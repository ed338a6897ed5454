//! The log line that reports evicted connections: at once for the first, then at most once a minute
//! with the count since the previous line (an attack evicts thousands a second: one line each
//! would flood the logs it is meant to show up in), and the remainder when the server stops.

use std::time::Duration;

use tokio::time::Instant;

/// At most one line per this long (but for the one that closes the count when the server stops).
pub(crate) const INTERVAL: Duration = Duration::from_secs(60);

/// Evictions counted, and when they were last reported.
pub(crate) struct Evictions {
    limit: usize,
    unreported: u64,
    total: u64,
    last_line: Option<Instant>,
}

impl Evictions {
    /// `limit`: `MAX_CONNECTIONS`, which the line names.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            unreported: 0,
            total: 0,
            last_line: None,
        }
    }

    /// One more eviction, logged at once if no line was written within the interval.
    pub(crate) fn record(&mut self, now: Instant) {
        self.unreported += 1;
        self.total += 1;
        if self.last_line.is_none_or(|last| now - last >= INTERVAL) {
            self.report(now);
        }
    }

    /// When the evictions not logged yet are due to be (none: never).
    pub(crate) fn due(&self) -> Option<Instant> {
        match (self.unreported, self.last_line) {
            (0, _) | (_, None) => None,
            (_, Some(last)) => Some(last + INTERVAL),
        }
    }

    /// Logs the evictions not logged yet, if any.
    pub(crate) fn report(&mut self, now: Instant) {
        if self.unreported == 0 {
            return;
        }
        tracing::warn!(
            connections.evicted = self.unreported,
            connections.evicted_total = self.total,
            "MAX_CONNECTIONS ({}) reached: closed {} connection(s) waiting for a request head, the \
             longest-waiting first, to admit new ones ({} since start)",
            self.limit,
            self.unreported,
            self.total
        );
        self.unreported = 0;
        self.last_line = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The lines `run` logs, as text.
    fn logged(run: impl FnOnce()) -> Vec<String> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_writer(move || Captured(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_first_eviction_is_logged_at_once_then_at_most_one_line_a_minute() {
        let start = Instant::now();
        let mut evictions = Evictions::new(1200);
        let lines = logged(|| {
            assert_eq!(evictions.due(), None);
            evictions.record(start);
            assert_eq!(evictions.due(), None, "reported");
            evictions.record(start + Duration::from_secs(1));
            evictions.record(start + Duration::from_secs(59));
            assert_eq!(evictions.due(), Some(start + INTERVAL));
            // A minute after the last line: this eviction and the two before it.
            evictions.record(start + INTERVAL);
            assert_eq!(evictions.due(), None);
            evictions.record(start + INTERVAL + Duration::from_secs(1));
            // Nothing more evicted: the remainder when it is due (the accept loop's timer).
            evictions.report(start + 2 * INTERVAL);
            evictions.report(start + 3 * INTERVAL);
        });
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let counts = [
            "evicted=1 connections.evicted_total=1",
            "evicted=3 connections.evicted_total=4",
            "evicted=1 connections.evicted_total=5",
        ];
        for (line, counts) in lines.iter().zip(counts) {
            assert!(line.contains(" WARN "), "{line}");
            assert!(line.contains("MAX_CONNECTIONS (1200) reached"), "{line}");
            assert!(line.ends_with(&format!("connections.{counts}")), "{line}");
        }
    }

    #[test]
    fn stopping_reports_the_remainder_whenever_it_comes() {
        let start = Instant::now();
        let mut evictions = Evictions::new(10);
        let lines = logged(|| {
            evictions.record(start);
            evictions.record(start + Duration::from_secs(2));
            evictions.report(start + Duration::from_secs(3));
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[1].ends_with("connections.evicted=1 connections.evicted_total=2"),
            "{}",
            lines[1]
        );
    }
}
