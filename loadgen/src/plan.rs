//! The plan of a run: where to send, which paths in which proportions, and when to stop; and the
//! [`Schedule`] that hands each request its number, path and (at a fixed rate) its send time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use url::Url;

use crate::cli::TraceHeaders;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub mix: Mix,
    pub headers: HeaderMap,
    pub trace_headers: TraceHeaders,
    pub mode: Mode,
    pub connections: usize,
    pub stop: Stop,
    pub timeout: Duration,
    pub max_error_rate: Option<f64>,
    pub json: bool,
}

/// Open loop (a fixed rate) or closed loop (as fast as the service answers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64 },
    Closed,
}

/// When the run ends: the first of the two that is set and reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// The service: its address for the socket, its authority for the Host header, its base path.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: Url,
    /// `host:port`, to connect to.
    pub address: String,
    /// The Host header.
    pub authority: String,
}

impl Target {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let base =
            Url::parse(text.trim()).map_err(|e| anyhow::anyhow!("{text:?} is not a URL: {e}"))?;
        anyhow::ensure!(
            base.scheme() == "http",
            "{text:?}: only http:// targets are supported"
        );
        let host = base
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{text:?} has no host"))?;
        let port = base.port_or_known_default().unwrap_or(80);
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            address: format!("{host}:{port}"),
            authority,
            base,
        })
    }

    /// The request target for a mix path: the base URL's path, then the mix path.
    fn path_and_query(&self, path: &str) -> String {
        let base = self.base.path().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// Weighted paths, sent in a fixed interleaved cycle so that any run holds them in proportion.
#[derive(Debug, Clone)]
pub struct Mix {
    entries: Vec<(String, u32)>,
    cycle: Vec<usize>,
}

impl Mix {
    /// Parses `path=weight,...`; a path without `=weight` weighs 1.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (path, weight) = match entry.rsplit_once('=') {
                Some((path, weight)) => {
                    let weight: u32 = weight.trim().parse().map_err(|_| {
                        anyhow::anyhow!("--mix entry {entry:?}: the weight must be a whole number from 1 to 1000")
                    })?;
                    (path.trim(), weight)
                }
                None => (entry, 1),
            };
            anyhow::ensure!(
                path.starts_with('/'),
                "--mix entry {entry:?}: the path must start with /"
            );
            anyhow::ensure!(
                (1..=1000).contains(&weight),
                "--mix entry {entry:?}: the weight must be a whole number from 1 to 1000"
            );
            http::uri::PathAndQuery::try_from(path)
                .map_err(|_| anyhow::anyhow!("--mix entry {entry:?}: not a valid URL path"))?;
            entries.push((path.to_owned(), weight));
        }
        anyhow::ensure!(!entries.is_empty(), "--mix has no entries");
        let cycle = smooth_cycle(&entries);
        Ok(Self { entries, cycle })
    }

    /// The mix's paths, in the order given.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(path, _)| path.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Which path request number `index` goes to.
    pub fn pick(&self, index: u64) -> usize {
        self.cycle[(index % self.cycle.len() as u64) as usize]
    }

    /// The request targets (base path + mix path), by path index.
    pub fn request_targets(&self, target: &Target) -> Vec<String> {
        self.paths()
            .map(|path| target.path_and_query(path))
            .collect()
    }
}

/// Smooth weighted round robin (as nginx balances upstreams): weights 3,1 give a a b a, not a a a b.
fn smooth_cycle(entries: &[(String, u32)]) -> Vec<usize> {
    let total: i64 = entries.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current = vec![0i64; entries.len()];
    (0..total)
        .map(|_| {
            for (c, (_, w)) in current.iter_mut().zip(entries) {
                *c += i64::from(*w);
            }
            let best = (0..entries.len())
                .max_by_key(|&i| (current[i], -(i as i64)))
                .unwrap_or(0);
            current[best] -= total;
            best
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_cycle_interleaves_by_weight() {
        let mix = Mix::parse("/a=3,/b=1").unwrap();
        let picks: Vec<usize> = (0..8).map(|i| mix.pick(i)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn mix_proportions_are_exact_over_whole_cycles() {
        let mix = Mix::parse("/=6,/api/apm=7,/api/trace=6,/x=1").unwrap();
        let mut counts = [0u32; 4];
        for i in 0..2000 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(counts, [600, 700, 600, 100]);
    }

    #[test]
    fn mix_refuses_malformed_entries() {
        for bad in ["", "api=1", "/a=0", "/a=-1", "/a=1001", "/a=x", "/a b=1"] {
            assert!(Mix::parse(bad).is_err(), "{bad:?}");
        }
        let mix = Mix::parse("/a").unwrap();
        assert_eq!(mix.len(), 1);
        assert!(!mix.is_empty(), "a mix that parses has a path");
    }

    #[test]
    fn target_keeps_the_base_path_and_host_header() {
        let target = Target::parse("http://localhost:5050/prefix/").unwrap();
        assert_eq!(target.address, "localhost:5050");
        assert_eq!(target.authority, "localhost:5050");
        assert_eq!(target.path_and_query("/api/apm"), "/prefix/api/apm");
        let target = Target::parse("http://example").unwrap();
        assert_eq!(
            (target.address.as_str(), target.authority.as_str()),
            ("example:80", "example")
        );
    }
}
