//! The limits under load, measured, so on the release build and one test at a time (`make test`):
//!
//! - hostile connections against the release binary at its default connection limit (1,024: what fits
//!   the Kubernetes container's memory, docs/service.md): floods of 3,000 silent, trickling, or keep-alive-then-idle connections
//!   from an attacker that reconnects as soon as one is closed, and a flood of unfinished request
//!   heads of the largest size served. A normal client's requests (on its kept-alive connection and
//!   on new ones) are all answered, under a second at p99 (the 100 ms target is printed, not
//!   asserted: the attacker shares the machine's two cores), a request on the kept-alive
//!   connection as it is evicted is sent again (as browsers do) and that stays rare, and `/health`
//!   answers, because a new connection takes the place of the attacker's that waited longest; RSS stays under the bound
//!   docs/service.md gives; every eviction is counted in the log line that reports them; when the
//!   attack stops, the service is back to its quiet figures;
//! - slow and silent clients (slowloris) under the limit, at the default header-read timeout: each
//!   closed by it, none answered, a client already served does not notice, and SIGTERM stops the
//!   service at once all the same;
//! - overload: requests beyond the in-flight bound are shed at once with 503 and Retry-After, each
//!   still gets exactly one span saying why, `/health` answers throughout, the rate returns after.
//!
//! Bounded: each flood lasts 5 s (3,000 attackers, a normal request every 20 ms), the slowloris
//! test 300 connections for 11 s, the overload 3,000 requests in 2 s; about 80 s in all. Loopback
//! only. The test process raises its own open-file limit to its hard limit (3,000 connections).

#[path = "common/agent.rs"]
mod agent;
#[allow(dead_code)] // the suite uses part of the hermetic suite's helpers
#[path = "api/helpers.rs"]
mod helpers;
#[path = "common/service.rs"]
mod service;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent::{AgentSpan, Behaviour, TestAgent};
use apm_demo::server::EVICTED_CLOSING_AT_MOST;
use axum::Router;
use axum::routing::get;
use helpers::{TestApp, spawn_app_serving};
use http::StatusCode;
use service::Service;

/// The default connection limit (docs/service.md: what fits the container's 96 MiB with every
/// connection holding a full request head), which the service runs with here.
const LIMIT: u64 = 1024;
/// Resident memory a connection costs at most, in a flood of unfinished 16 KiB heads: 22.6 KiB
/// each held still (`make bench-memory`), up to 39.7 KiB at the peak of a flood here, where the
/// allocator keeps the memory of the connections it has just freed. The bound on RSS
/// (docs/service.md) is the idle figure plus this for each connection the limit and the evicted
/// ones still closing allow, plus `RSS_SLACK_KIB` for the normal traffic and the spans it makes.
const CONNECTION_KIB: u64 = 40;
const RSS_SLACK_KIB: u64 = 4 * 1024;
/// The attacker's connections, held open at once.
const ATTACKERS: usize = 3000;
const ATTACK: Duration = Duration::from_secs(5);
/// What an attacker sends first: half a request head.
const HALF_HEAD: &[u8] = b"GET /api/apm HTTP/1.1\r\nHost: attacker\r\n";
/// A trickling attacker adds a byte this often (slowloris sends a header line every few seconds).
const TRICKLE: Duration = Duration::from_secs(1);
/// The largest head the service reads is 16 KiB; one byte less stays unfinished and is held.
const FULL_HEAD: usize = 16 * 1024 - 1;
/// The answer a normal client needs at p99, under attack.
const NORMAL_P99: Duration = Duration::from_millis(100);
/// A normal client's p99 under a flood past which it counts as locked out.
const LOCKED_OUT: Duration = Duration::from_secs(1);

fn rss_kib(service: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Open file descriptors of the service: its connections plus a fixed few.
fn open_fds(service: &Service) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", service.child.id()))
        .unwrap()
        .count()
}

/// Lets this process hold the attacker's connections: the soft open-file limit raised to the hard.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|n| n > ATTACKERS as u64 + 200),
        "this test needs {ATTACKERS} connections; the open-file limit is {now:?}"
    );
}

/// The service at its default connection limit and header-read timeout (10 s, longer than an
/// attack: every close the attacker sees is an eviction), quiet logs but for the server's own.
fn start_service(agent: &TestAgent) -> Service {
    let defaults = apm_demo::config::Config::parse_from_args(["apm-demo"]).unwrap();
    assert_eq!(
        u64::from(defaults.server.max_connections),
        LIMIT,
        "the limit these tests measure is not the default (or MAX_CONNECTIONS is set)"
    );
    Service::start(
        &agent.url,
        &[
            ("RUST_LOG", "info,apm_demo::access=warn"),
            (
                "XCLOSING",
                &std::env::var("XCLOSING").unwrap_or("32".into()),
            ),
            ("XYIELD", &std::env::var("XYIELD").unwrap_or_default()),
        ],
    )
}

/// Latency percentile `q` (0..1) of `samples`, sorted in place.
fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// A normal client: a browser-like keep-alive connection, and requests on new connections (a
/// client that does not keep them, or a new visitor).
struct NormalClient {
    url: String,
    kept: reqwest::blocking::Client,
    fresh: reqwest::blocking::Client,
}

/// What a normal client measured.
#[derive(Default)]
struct Measured {
    kept: Vec<Duration>,
    fresh: Vec<Duration>,
    health: Vec<StatusCode>,
    failures: Vec<String>,
    /// Requests sent again on a new connection: the kept-alive one closed before their answer.
    retried: usize,
}

impl Measured {
    fn all(&self) -> Vec<Duration> {
        self.kept.iter().chain(&self.fresh).copied().collect()
    }
}

impl NormalClient {
    fn new(service: &Service) -> Self {
        let timeout = Duration::from_secs(5);
        Self {
            url: service.url.clone(),
            kept: reqwest::blocking::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(timeout)
                .build()
                .unwrap(),
            fresh: reqwest::blocking::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(timeout)
                .build()
                .unwrap(),
        }
    }

    /// One `GET /api/apm`, on the kept-alive connection or a new one. A request sent on the
    /// kept-alive connection as the server closed it (idle the longest: evicted) gets no answer; it
    /// is sent once more on a new connection, as browsers do (RFC 9112, section 9.3.1: a client
    /// may retry an idempotent request whose connection closed before its answer), and counted.
    /// The time is the whole of it.
    fn ask(&self, fresh: bool, measured: &mut Measured) {
        let client = if fresh { &self.fresh } else { &self.kept };
        let url = format!("{}/api/apm", self.url);
        let sent = Instant::now();
        let mut result = client.get(&url).send();
        if !fresh && result.as_ref().is_err_and(closed_unanswered) {
            measured.retried += 1;
            result = client.get(&url).send();
        }
        match result {
            Ok(response) if response.status() == StatusCode::OK => {
                let took = sent.elapsed();
                if fresh {
                    measured.fresh.push(took);
                } else {
                    measured.kept.push(took);
                }
            }
            Ok(response) => measured.failures.push(format!("{}", response.status())),
            Err(error) => measured.failures.push(format!("{error:?}")),
        }
    }

    fn health(&self, measured: &mut Measured) {
        match self.fresh.get(format!("{}/health", self.url)).send() {
            Ok(response) => measured.health.push(response.status()),
            Err(error) => measured.failures.push(format!("/health: {error:?}")),
        }
    }

    /// The quiet figures: 200 requests on the kept connection, 20 on new ones.
    fn quiet(&self) -> Measured {
        let mut measured = Measured::default();
        for i in 0..220 {
            self.ask(i % 11 == 10, &mut measured);
        }
        measured
    }
}

/// Whether a request failed because its connection closed before any answer (reset, or closed):
/// what a request on a kept-alive connection the server has just closed meets.
fn closed_unanswered(error: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), ConnectionReset | BrokenPipe | UnexpectedEof);
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Half a request head, then nothing.
    Silent,
    /// Half a request head, then a byte every `TRICKLE`.
    Trickling,
    /// One whole request, its answer read, then nothing: an idle keep-alive connection.
    KeepAlive,
    /// An unfinished head of the largest size the service reads.
    FullHeads,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reconnect at once when a connection is closed.
    Attack,
    /// Hold the connections left, see which the server still closes, reconnect no more.
    Hold,
    /// Close everything.
    Release,
}

/// An attacker on a thread and runtime of its own: `ATTACKERS` connections, each reopened as soon
/// as the server closes it while the phase is `Attack`.
struct Attacker {
    phase: tokio::sync::watch::Sender<Phase>,
    /// Connections the server closed (an eviction: the attack is shorter than the header-read
    /// timeout, and no head passes the size limit).
    closed: Arc<AtomicU64>,
    opened: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attacker {
    fn start(address: &str, attack: Attack) -> Self {
        let (phase, watched) = tokio::sync::watch::channel(Phase::Attack);
        let (closed, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (address, counts) = (address.to_owned(), (closed.clone(), opened.clone()));
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let tasks: Vec<_> = (0..ATTACKERS)
                        .map(|_| {
                            let (address, watched) = (address.clone(), watched.clone());
                            let (closed, opened) = (counts.0.clone(), counts.1.clone());
                            tokio::spawn(attacker(address, attack, watched, closed, opened))
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                });
        });
        Self {
            phase,
            closed,
            opened,
            thread: Some(thread),
        }
    }

    /// Stops reconnecting, and waits (at most 5 s) until the server has closed what it was going
    /// to: the connections still in the listen backlog get their turn, each evicting one.
    fn hold(&self) {
        self.phase.send_replace(Phase::Hold);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.closed.load(Ordering::SeqCst);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.closed.load(Ordering::SeqCst);
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Closes every connection; returns (opened, closed by the server).
    fn release(mut self) -> (u64, u64) {
        self.phase.send_replace(Phase::Release);
        self.thread.take().unwrap().join().unwrap();
        (
            self.opened.load(Ordering::SeqCst),
            self.closed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.phase.send_replace(Phase::Release);
    }
}

async fn attacker(
    address: String,
    attack: Attack,
    mut phase: tokio::sync::watch::Receiver<Phase>,
    closed: Arc<AtomicU64>,
    opened: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    while *phase.borrow() == Phase::Attack {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::SeqCst);
        let opening = match attack {
            Attack::Silent | Attack::Trickling => stream.write_all(HALF_HEAD).await.is_ok(),
            Attack::FullHeads => {
                let mut head = b"GET /api/apm HTTP/1.1\r\nHost: attacker\r\nX-Fill: ".to_vec();
                head.resize(FULL_HEAD, b'a');
                stream.write_all(&head).await.is_ok()
            }
            Attack::KeepAlive => one_request(&mut stream).await,
        };
        let mut trickle = tokio::time::interval_at(tokio::time::Instant::now() + TRICKLE, TRICKLE);
        let mut buffer = [0u8; 256];
        // Held until the server closes it (false), or the attack ends (true).
        let released = opening
            && loop {
                tokio::select! {
                    read = stream.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break false,
                        Ok(n) => panic!("the server answered an attacker: {:?}", String::from_utf8_lossy(&buffer[..n])),
                    },
                    _ = trickle.tick(), if attack == Attack::Trickling => {
                        if stream.write_all(b"x").await.is_err() {
                            break false;
                        }
                    }
                    () = released(&mut phase) => break true,
                }
            };
        if released {
            return;
        }
        closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn released(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Release).await;
}

/// A whole `GET /api/apm` and its whole answer; false if the server closed the connection first.
async fn one_request(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream
        .write_all(b"GET /api/apm HTTP/1.1\r\nHost: attacker\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let body = b"Getting APM Started";
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(body) {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    true
}

/// What the service logged of its evictions: the `connections.evicted` count of each line.
fn eviction_lines(service: &Service) -> Vec<u64> {
    service
        .json_lines()
        .iter()
        .filter_map(|line| line.get("connections.evicted").and_then(|n| n.as_u64()))
        .collect()
}

/// Waits (at most 10 s) until the service holds no more descriptors than `fds`.
fn settles_to(service: &Service, fds: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = open_fds(service);
        if now <= fds || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The flood test of each attack: figures before, during and after, and the promises on them.
fn flood(attack: Attack) {
    raise_open_file_limit();
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut service = start_service(&agent);
    let address = service.url.trim_start_matches("http://").to_owned();
    let client = NormalClient::new(&service);

    let before = client.quiet();
    let before_p50 = percentile(&mut before.all(), 0.5);
    let before_p99 = percentile(&mut before.all(), 0.99);
    // Only the kept-alive connection is open now.
    let quiet_fds = open_fds(&service);
    let idle_rss = rss_kib(&service);

    let attacker = Attacker::start(&address, attack);
    let mut during = Measured::default();
    let mut peak_rss = idle_rss;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < ATTACK {
        client.ask(round % 5 == 4, &mut during);
        if round % 25 == 0 {
            client.health(&mut during);
        }
        peak_rss = peak_rss.max(rss_kib(&service));
        round += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let attacked_for = started.elapsed();
    attacker.hold();
    peak_rss = peak_rss.max(rss_kib(&service));
    let (opened, evicted_seen) = attacker.release();
    let fds_after = settles_to(&service, quiet_fds);

    let after = client.quiet();
    let after_p50 = percentile(&mut after.all(), 0.5);
    let after_p99 = percentile(&mut after.all(), 0.99);
    let after_rss = rss_kib(&service);
    assert!(service.terminate().success());
    let lines = eviction_lines(&service);

    let kept_p99 = percentile(&mut during.kept, 0.99);
    let fresh_p99 = percentile(&mut during.fresh, 0.99);
    let mut all = during.all();
    let all_p99 = percentile(&mut all, 0.99);
    let bound_kib =
        idle_rss + (LIMIT + EVICTED_CLOSING_AT_MOST as u64) * CONNECTION_KIB + RSS_SLACK_KIB;
    println!(
        "{attack:?} flood, {ATTACKERS} attackers for {attacked_for:.1?}: {opened} connections opened, \
         {evicted_seen} evicted ({:.0}/s); a normal client's p99 {all_p99:?} (target {NORMAL_P99:?}; {} kept-alive: \
         {kept_p99:?}, {} of them sent again on a new connection, {} on new connections: \
         {fresh_p99:?}), quiet p50/p99 {before_p50:?}/{before_p99:?} \
         before and {after_p50:?}/{after_p99:?} after; /health {:?}; RSS {idle_rss} KiB idle, {peak_rss} KiB peak ({:.1} KiB \
         a connection; bound {bound_kib} KiB), {after_rss} KiB after; eviction lines {lines:?}",
        evicted_seen as f64 / attacked_for.as_secs_f64(),
        during.kept.len(),
        during.retried,
        during.fresh.len(),
        during.health,
        (peak_rss - idle_rss) as f64 / LIMIT as f64,
    );

    // Not locked out: every request answered, the p99 under a second (before eviction a normal
    // request got no answer within 5 s). The 100 ms target is a figure, printed above and in
    // docs/service.md, not asserted: the attacker, the client and the service share two cores
    // here, and a timed assertion would judge the machine's load as much as the service.
    assert!(
        all_p99 < LOCKED_OUT,
        "a normal client's p99 under attack: {all_p99:?}"
    );
    // A new connection waits for the attacker's ahead of it in the listen backlog to be accepted
    // (each evicting one).
    assert!(fresh_p99 < LOCKED_OUT, "{fresh_p99:?}");
    assert!(
        !during.health.is_empty() && during.health.iter().all(|s| *s == StatusCode::OK),
        "{:?}",
        during.health
    );
    assert!(
        peak_rss < bound_kib,
        "RSS {peak_rss} KiB, above {bound_kib} KiB"
    );
    // The attack held more connections than the limit: it was evicting, and every eviction is
    // counted in the log. The first line comes at once, the rest of the minute's when it stops.
    // The log counts the attacker's evictions and those of the normal client's connections,
    // which it does not see: at most one per request (its idle kept-alive connection, and a new
    // one between its answer and its close).
    let logged: u64 = lines.iter().sum();
    let normal = (during.kept.len() + during.fresh.len() + during.health.len()) as u64;
    assert!(evicted_seen > ATTACKERS as u64 - LIMIT, "{evicted_seen}");
    assert!(
        (evicted_seen..=evicted_seen + normal).contains(&logged),
        "logged {lines:?}, the attacker saw {evicted_seen}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], 1);
    // Back to quiet: every attacker's connection is gone, and a normal client is served as
    // before (the median within 2x and 1 ms: a shared machine's p99 moves by milliseconds).
    assert!(
        fds_after <= quiet_fds,
        "{fds_after} descriptors, {quiet_fds} before"
    );
    assert!(after.failures.is_empty(), "{:?}", after.failures);
    assert!(
        after_p50 < before_p50 * 2 + Duration::from_millis(1),
        "p50 {after_p50:?} after, {before_p50:?} before"
    );
    assert!(after_p99 < NORMAL_P99, "p99 {after_p99:?} after");
}

#[test]
fn a_flood_of_silent_connections_does_not_lock_clients_out() {
    flood(Attack::Silent);
}

#[test]
fn a_flood_of_trickling_connections_does_not_lock_clients_out() {
    flood(Attack::Trickling);
}

#[test]
fn keep_alive_connections_left_idle_are_evicted_like_silent_ones() {
    flood(Attack::KeepAlive);
}

#[test]
fn a_flood_of_unfinished_16_kib_heads_stays_within_the_memory_bound() {
    flood(Attack::FullHeads);
}

/// Slowloris under the limit, at the default header-read timeout (10 s): 150 silent and 150
/// trickling connections, none evicted (there is room), each closed by the timeout.
#[test]
fn slow_and_silent_clients_are_closed_by_the_header_read_timeout() {
    const SLOWLORIS: usize = 300;
    const TIMEOUT: Duration = Duration::from_secs(10);
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut service = start_service(&agent);
    let address = service.url.trim_start_matches("http://").to_owned();
    let client = NormalClient::new(&service);
    let mut before = client.quiet();
    let healthy_p99 = percentile(&mut before.kept, 0.99);
    let idle_rss = rss_kib(&service);

    let attackers: Vec<_> = (0..SLOWLORIS)
        .map(|i| {
            let address = address.clone();
            std::thread::spawn(move || slowloris(&address, i % 2 == 1, TIMEOUT))
        })
        .collect();
    let mut during = Measured::default();
    let mut peak_rss = idle_rss;
    let started = Instant::now();
    while started.elapsed() < TIMEOUT + Duration::from_secs(1) {
        client.ask(during.kept.len() % 25 == 24, &mut during);
        peak_rss = peak_rss.max(rss_kib(&service));
        std::thread::sleep(Duration::from_millis(20));
    }
    let closed: Vec<(Duration, usize)> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let first_close = closed.iter().map(|(took, _)| *took).min().unwrap();
    let last_close = closed.iter().map(|(took, _)| *took).max().unwrap();
    let answered = closed.iter().filter(|(_, bytes)| *bytes > 0).count();
    let kept_p99 = percentile(&mut during.kept, 0.99);
    let fresh_max = *during.fresh.iter().max().unwrap();
    println!(
        "slowloris: {SLOWLORIS} connections closed {first_close:?} to {last_close:?} after they \
         connected, {answered} answered; a kept-alive client's p99 {kept_p99:?} (healthy \
         {healthy_p99:?}), new connections at most {fresh_max:?}; RSS {idle_rss} KiB idle, \
         {peak_rss} KiB peak"
    );
    assert!(during.failures.is_empty(), "{:?}", during.failures);
    assert_eq!(during.retried, 0, "under the limit, nothing is evicted");
    assert_eq!(answered, 0);
    // Closed by the header-read timeout, counted from the accept: no sooner, and not much later.
    assert!(
        first_close >= TIMEOUT - Duration::from_millis(50),
        "{first_close:?}"
    );
    assert!(
        last_close < TIMEOUT + Duration::from_secs(1),
        "{last_close:?}"
    );
    // A client the service already serves does not notice (beyond a shared machine's noise), and
    // a new one does not wait.
    assert!(
        kept_p99 < healthy_p99 + Duration::from_millis(50),
        "{kept_p99:?} against {healthy_p99:?}"
    );
    assert!(fresh_max < NORMAL_P99, "{fresh_max:?}");
    assert!(
        peak_rss < idle_rss + SLOWLORIS as u64 * CONNECTION_KIB + RSS_SLACK_KIB,
        "{peak_rss} KiB against {idle_rss} KiB idle"
    );

    // SIGTERM with unfinished heads open: they are closed at once, not left to the 10 s timeout.
    let _lurkers: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&address).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let stopping = Instant::now();
    assert!(service.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        stopping.elapsed()
    );
}

/// One slowloris connection: half a head, then nothing more (`trickle` false) or a byte every
/// 100 ms. Returns how long the server took to close it, and how many bytes it answered first.
fn slowloris(address: &str, trickle: bool, timeout: Duration) -> (Duration, usize) {
    let mut stream = TcpStream::connect(address).unwrap();
    let connected = Instant::now();
    stream.write_all(HALF_HEAD).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = 0;
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Still open: keep trickling, and give up (a test failure) long past the timeout.
                assert!(connected.elapsed() < timeout * 3, "never closed");
                if trickle && stream.write_all(b"x").is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (connected.elapsed(), received)
}

/// The slow handler stands in for a database or an injected delay: 20 ms with at most 10 requests in
/// flight makes the service's capacity 500 requests per second, so an open-loop load of 1,500 per
/// second is three times what it can serve.
const SLOW: Duration = Duration::from_millis(20);

fn slow_routes() -> Router {
    Router::new().route("/slow", get(|| async { tokio::time::sleep(SLOW).await }))
}

fn meta<'a>(span: &'a AgentSpan, key: &str) -> Option<&'a str> {
    span.meta.get(key).map(String::as_str)
}

async fn flushed_spans(app: &mut TestApp, agent: &TestAgent) -> Vec<AgentSpan> {
    app.stop_and_flush().await;
    agent.spans()
}

#[tokio::test(flavor = "current_thread")]
async fn overload_is_shed_at_once_with_a_span_each_and_the_rate_recovers() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app_serving(
        &agent.url,
        &["--max-in-flight", "10", "--request-timeout", "1s"],
        slow_routes(),
    )
    .await;
    let url = format!("{}/slow", app.address);
    let health_url = format!("{}/health", app.address);
    // The load runs on a runtime of its own, so that sending it does not slow the service's thread.
    let load = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(open_loop(url, health_url))
    });
    let Load {
        mut served,
        mut shed,
        total,
        health,
    } = load.await.unwrap();
    assert_eq!(health, StatusCode::OK, "/health is never shed");
    let (served_count, shed_count) = (served.len(), shed.len());
    let served_p99 = percentile(&mut served, 0.99);
    let shed_p99 = percentile(&mut shed, 0.99);
    let slowest = served.last().copied().max(shed.last().copied()).unwrap();
    println!(
        "overload: {served_count} served (p99 {served_p99:?}), {shed_count} shed (p99 {shed_p99:?}), slowest {slowest:?}"
    );
    // About a third is served (capacity 500/s of 1,500/s); the rest is refused, not queued.
    assert!(
        (500..=1_800).contains(&served_count),
        "served {served_count}"
    );
    assert!(shed_count >= 1_000, "shed {shed_count}");
    // Nothing waited in a queue: a queue of this overload grows by 1,000 requests a second, so its
    // requests would wait toward the 1 s deadline and come back 504 (none did: only 200 and 503).
    // Served requests take their handler's 20 ms plus scheduling; shed ones are answered at once.
    // (Quiet machine: served p99 ~35 ms, shed p99 ~10 ms; the bounds leave room for a shared one.)
    assert!(served_p99 < Duration::from_millis(500), "{served_p99:?}");
    assert!(shed_p99 < Duration::from_millis(250), "{shed_p99:?}");
    // No request outlives its deadline.
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");

    // The load is gone: the full rate is back, nothing shed.
    for _ in 0..50 {
        assert_eq!(app.get("/slow").await.status(), StatusCode::OK);
    }

    // Exactly one span per request, shed ones marked as such.
    let spans = flushed_spans(&mut app, &agent).await;
    let slow: Vec<&AgentSpan> = spans.iter().filter(|s| s.resource == "GET /slow").collect();
    assert_eq!(slow.len(), total as usize + 50, "one span per request");
    let shed_spans: Vec<&&AgentSpan> = slow
        .iter()
        .filter(|s| meta(s, "error.type") == Some("load_shed"))
        .collect();
    assert_eq!(shed_spans.len(), shed_count);
    for span in shed_spans {
        assert_eq!(span.error, 1);
        assert_eq!(meta(span, "http.status_code"), Some("503"));
        assert!(
            meta(span, "error.message")
                .unwrap()
                .contains("MAX_IN_FLIGHT")
        );
    }
}

struct Load {
    served: Vec<Duration>,
    shed: Vec<Duration>,
    total: u32,
    health: StatusCode,
}

/// Open loop: 1,500 requests per second for 2 s, each sent on schedule whatever the answers; a probe
/// of `/health` in the middle of it.
async fn open_loop(url: String, health_url: String) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    let (rate, total) = (1_500u32, 3_000u32);
    let started = Instant::now();
    let mut requests = Vec::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        let (client, url) = (client.clone(), url.clone());
        requests.push(tokio::spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            let sent = Instant::now();
            let response = client
                .get(url)
                .send()
                .await
                .expect("every request answered");
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status(), retry_after, sent.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = client.get(health_url).send().await.unwrap().status();

    let (mut served, mut shed) = (Vec::new(), Vec::new());
    for request in requests {
        let (status, retry_after, took) = request.await.unwrap();
        match status {
            StatusCode::OK => served.push(took),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after.unwrap(), "1");
                shed.push(took);
            }
            other => panic!("unexpected {other}"),
        }
    }
    Load {
        served,
        shed,
        total,
        health,
    }
}
