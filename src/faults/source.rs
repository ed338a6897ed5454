//! The flag source: a flagd flag-definition file, read at start and re-read when it changes.
//!
//! A thread polls the file's metadata (modification time, size, inode) every `FLAGD_OFFLINE_POLL_MS`
//! and re-reads it when they change; a file replaced by a rename is read whole, old or new. The flags
//! in force are a snapshot behind an `Arc`, swapped whole; the request path first reads one atomic
//! flag that says whether any fault flag is enabled at all, so with every flag off it takes no lock
//! and allocates nothing. A missing file means all flags off; an invalid file is reported once and the
//! last good flags stay in force.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use super::flags::{Flag, FlagFile};

/// What a known flag key does when it resolves to a value that is "on".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number: milliseconds added before the handler runs.
    Latency,
    /// `true`: 500 instead of the handler.
    Failure,
    /// `true`: a panic, caught, 500.
    Panic,
    /// A number: KiB retained per request, until the process restarts.
    MemoryLeak,
    /// `true`: each statement of the request fails (its span and the route's 503 name the flag).
    QueryFailure,
    /// A number: milliseconds each statement takes longer, at the server (`DO SLEEP` first, in the
    /// statement's span, with its DBM comment: a slow statement in DBM too).
    SlowQuery,
    /// A number: milliseconds each statement's connection stays taken after it ran (a leak that ends):
    /// enough of them and the pool is exhausted, and other requests wait MYSQL_TIMEOUT for a 503.
    PoolHold,
}

/// The flag keys the service acts on, and what each does. Other keys in the file are accepted and
/// ignored (a file shared with other services).
pub const KNOWN_FLAGS: &[(&str, Kind)] = &[
    ("routeLatencyMs", Kind::Latency),
    ("routeLatencyTailMs", Kind::Latency),
    ("routeFailure", Kind::Failure),
    ("routePanic", Kind::Panic),
    ("memoryLeakKb", Kind::MemoryLeak),
    ("dbQueryFailure", Kind::QueryFailure),
    ("dbSlowQueryMs", Kind::SlowQuery),
    ("dbPoolExhaustionMs", Kind::PoolHold),
];

/// The enabled fault flags of one version of the file.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub flags: Vec<(Kind, Flag)>,
}

impl Snapshot {
    /// Parses a file's text; the error says what is wrong, naming the flag.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FlagFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.evaluators.is_some() {
            return Err("\"$evaluators\" (shared targeting, $ref) is not supported here".into());
        }
        let mut flags = Vec::new();
        for (key, definition) in file.flags {
            // Every flag is checked, known or not: a mistake anywhere is reported.
            let flag = Flag::compile(&key, definition)?;
            let kind = KNOWN_FLAGS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, kind)| *kind);
            if let (Some(kind), Some(flag)) = (kind, flag) {
                flags.push((kind, flag));
            }
        }
        Ok(Self { flags })
    }

    fn enabled(&self) -> String {
        let keys: Vec<&str> = self.flags.iter().map(|(_, f)| f.key.as_str()).collect();
        if keys.is_empty() {
            "none".into()
        } else {
            keys.join(", ")
        }
    }
}

/// The flags in force, shared by the layer and the watcher thread.
#[derive(Debug)]
pub struct FlagSource {
    path: PathBuf,
    /// Whether `current` has any flag: the request path reads only this when none is on.
    any: AtomicBool,
    current: RwLock<Arc<Snapshot>>,
    /// What `memoryLeakKb` retained; freed only when the process (the source) goes.
    leaked: Mutex<Vec<Box<[u8]>>>,
    leaked_bytes: AtomicUsize,
    cap_reported: AtomicBool,
}

/// At most this much is retained by `memoryLeakKb`, so that a forgotten flag fills the container's
/// limit slowly rather than the machine.
pub const LEAK_CAP_BYTES: usize = 1 << 30;

/// What the file was when last looked at, to tell a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Missing,
    File {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
    },
}

impl FlagSource {
    /// Reads `path` now (so the flags are in force from the first request), then watches it from a
    /// thread that ends when the source is dropped. Log lines go to the caller's subscriber.
    pub fn watch(path: PathBuf, poll: Duration) -> Arc<Self> {
        let source = Arc::new(Self {
            path,
            any: AtomicBool::new(false),
            current: RwLock::new(Arc::new(Snapshot::default())),
            leaked: Mutex::new(Vec::new()),
            leaked_bytes: AtomicUsize::new(0),
            cap_reported: AtomicBool::new(false),
        });
        let mut seen = source.check(None);
        let weak: Weak<Self> = Arc::downgrade(&source);
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::Builder::new()
            .name("fault-flags".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    loop {
                        std::thread::sleep(poll);
                        let Some(source) = weak.upgrade() else { break };
                        seen = source.check(Some(seen));
                    }
                })
            })
            .expect("spawn the fault-flags thread");
        source
    }

    /// The flags in force, `None` when none is enabled (one atomic load: no lock, no allocation).
    #[inline]
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Bytes retained by `memoryLeakKb` so far.
    pub fn leaked_bytes(&self) -> usize {
        self.leaked_bytes.load(Ordering::Relaxed)
    }

    /// Retains `bytes` (written, so that they count in the resident set); false past the cap, which
    /// is logged once.
    pub fn leak(&self, bytes: usize) -> bool {
        if self.leaked_bytes.load(Ordering::Relaxed) + bytes > LEAK_CAP_BYTES {
            if !self.cap_reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "apm_demo::faults",
                    "memoryLeakKb: {} MiB retained, the cap; not growing further",
                    LEAK_CAP_BYTES >> 20
                );
            }
            return false;
        }
        let block = vec![0xa5u8; bytes].into_boxed_slice();
        self.leaked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block);
        self.leaked_bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    fn install(&self, snapshot: Snapshot) {
        let any = !snapshot.flags.is_empty();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.any.store(any, Ordering::Release);
    }

    /// Looks at the file; reads it if it changed since `last` (`None`: never read).
    fn check(&self, last: Option<Seen>) -> Seen {
        let path = self.path.display();
        let now = match std::fs::metadata(&self.path) {
            Ok(meta) => Seen::File {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            },
            Err(_) => Seen::Missing,
        };
        if last.as_ref() == Some(&now) {
            return now;
        }
        if now == Seen::Missing {
            self.install(Snapshot::default());
            tracing::info!(target: "apm_demo::faults", path = %path, "no fault flag file at {path}: every fault flag is off");
            return now;
        }
        match std::fs::read_to_string(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|text| Snapshot::parse(&text))
        {
            Ok(snapshot) => {
                let enabled = snapshot.enabled();
                self.install(snapshot);
                tracing::info!(target: "apm_demo::faults", path = %path, enabled = %enabled, "fault flags from {path}: enabled: {enabled}");
            }
            Err(error) => {
                let kept = self
                    .current
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .enabled();
                tracing::warn!(target: "apm_demo::faults", path = %path, error = %error, "invalid fault flag file {path}: {error}; the last good flags stay in force (enabled: {kept})");
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const LOCAL_FLAGS: &str = include_str!("../../local/flags/flags.json");

    #[test]
    fn local_flags_json_is_valid_with_every_flag_off_and_each_one_can_be_switched_on() {
        assert!(Snapshot::parse(LOCAL_FLAGS).unwrap().flags.is_empty());
        for (key, kind) in KNOWN_FLAGS {
            let mut file: serde_json::Value = serde_json::from_str(LOCAL_FLAGS).unwrap();
            file["flags"][key]["state"] = "ENABLED".into();
            let snapshot = Snapshot::parse(&file.to_string()).unwrap();
            assert_eq!(snapshot.flags.len(), 1, "{key}");
            assert_eq!(
                (snapshot.flags[0].0, snapshot.flags[0].1.key.as_str()),
                (*kind, *key)
            );
        }
    }

    #[test]
    fn unknown_keys_are_checked_but_ignored_and_evaluators_refused() {
        let other = r#"{"flags": {"adFailure": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#;
        assert!(Snapshot::parse(other).unwrap().flags.is_empty());
        let broken = r#"{"flags": {"adFailure": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "no"}}}"#;
        assert!(Snapshot::parse(broken).unwrap_err().contains("adFailure"));
        let shared = r#"{"flags": {}, "$evaluators": {"x": {"in": ["a", "b"]}}}"#;
        assert!(Snapshot::parse(shared).unwrap_err().contains("$evaluators"));
    }

    #[test]
    fn memory_growth_is_counted_and_stops_at_the_cap() {
        let source = FlagSource::watch(
            PathBuf::from("/nonexistent/apm-demo-flags.json"),
            Duration::from_secs(60),
        );
        assert_eq!(source.leaked_bytes(), 0);
        assert!(source.leak(4096));
        assert!(source.leak(4096));
        assert_eq!(source.leaked_bytes(), 8192);
        // Past the cap: refused, and nothing retained (no 1 GiB allocation is made here); said once.
        let said = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountEvents(said.clone()));
        tracing::subscriber::with_default(subscriber, || {
            assert!(!source.leak(LEAK_CAP_BYTES));
            assert_eq!(
                said.load(Ordering::Relaxed),
                1,
                "reported at the first refusal"
            );
            assert!(!source.leak(LEAK_CAP_BYTES));
            assert!(!source.leak(LEAK_CAP_BYTES));
        });
        assert_eq!(source.leaked_bytes(), 8192);
        assert_eq!(said.load(Ordering::Relaxed), 1, "and only then");
    }

    /// Counts the events logged on the thread it is the default subscriber of.
    struct CountEvents(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountEvents {
        fn on_event(
            &self,
            _event: &tracing::Event<'_>,
            _context: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}
