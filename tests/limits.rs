//! The limits under load, measured, so on the release build and one test at a time (`make test`):
//!
//! - overload: requests beyond the in-flight bound are shed at once with 503 and Retry-After, each
//!   still gets exactly one span saying why, `/health` answers throughout, the rate returns after;
//! - hostile connections against the release binary: silent and trickling clients (slowloris), three
//!   times as many as the connection limit. The service keeps answering a client it already serves,
//!   answers new clients within a bounded wait, closes every attacker after the header-read timeout,
//!   keeps its memory flat, and still stops cleanly on SIGTERM.
//!
//! Bounded: 3,000 requests in 2 s, then 300 attacking connections on loopback; about 15 s in all.

#[path = "common/agent.rs"]
mod agent;
#[allow(dead_code)] // the suite uses part of the hermetic suite's helpers
#[path = "api/helpers.rs"]
mod helpers;
#[path = "common/service.rs"]
mod service;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use agent::{AgentSpan, Behaviour, TestAgent};
use axum::Router;
use axum::routing::get;
use helpers::{TestApp, spawn_app_serving};
use http::StatusCode;
use service::Service;

const MAX_CONNECTIONS: usize = 100;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Silent and trickling attackers, each as many as the limit and a half: 3x the limit in all.
const EACH: usize = 150;
/// An attacker waits for a slot for at most one timeout per limit's worth of attackers ahead of it,
/// then holds it for one timeout: the bound on how long any connection can wait or be held.
const WAVES: u32 = (2 * EACH).div_ceil(MAX_CONNECTIONS) as u32;

fn rss_kib(service: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One attacker: connects, starts a request head and never finishes it, either sending nothing more
/// (`trickle` false) or one byte every 100 ms. Returns how long the server took to close it, and what
/// it sent before closing.
fn attack(address: &str, trickle: bool) -> (Duration, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    let connected = Instant::now();
    stream
        .write_all(b"GET /api/apm HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Still open: keep trickling, and give up (a test failure) long past any bound.
                assert!(
                    connected.elapsed() < HEADER_READ_TIMEOUT * (WAVES + 1) * 3,
                    "an attacker was never closed"
                );
                if trickle && stream.write_all(b"x").is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (connected.elapsed(), received)
}

#[test]
fn slow_and_silent_clients_are_closed_and_cost_nothing_lasting() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut service = Service::start(
        &agent.url,
        &[
            ("MAX_CONNECTIONS", "100"),
            ("HEADER_READ_TIMEOUT", "1s"),
            // Access lines for thousands of requests are not what this test is about.
            ("RUST_LOG", "info,apm_demo::access=warn"),
        ],
    );
    let address = service.url.trim_start_matches("http://").to_owned();
    // One keep-alive client, as a browser or a proxy keeps its connection: healthy latency first.
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("{}/api/apm", service.url);
    let mut healthy: Vec<Duration> = (0..200)
        .map(|_| {
            let sent = Instant::now();
            assert!(client.get(&url).send().unwrap().status().is_success());
            sent.elapsed()
        })
        .collect();
    let healthy_p99 = percentile(&mut healthy, 0.99);
    let idle_rss = rss_kib(&service);

    // The attack.
    let attackers: Vec<_> = (0..2 * EACH)
        .map(|i| {
            let address = address.clone();
            std::thread::spawn(move || attack(&address, i % 2 == 1))
        })
        .collect();

    // Meanwhile: the keep-alive client every 20 ms, and a new connection every 500 ms.
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    let mut peak_rss = idle_rss;
    let attack_started = Instant::now();
    while attack_started.elapsed() < HEADER_READ_TIMEOUT * (WAVES + 1) {
        let sent = Instant::now();
        assert!(client.get(&url).send().unwrap().status().is_success());
        kept.push(sent.elapsed());
        if kept.len() % 25 == 0 {
            let new_client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let sent = Instant::now();
            assert!(new_client.get(&url).send().unwrap().status().is_success());
            fresh.push(sent.elapsed());
        }
        peak_rss = peak_rss.max(rss_kib(&service));
        std::thread::sleep(Duration::from_millis(20));
    }
    let closed: Vec<(Duration, Vec<u8>)> =
        attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let kept_p99 = percentile(&mut kept, 0.99);
    let fresh_max = *fresh.iter().max().unwrap();
    let first_close = closed.iter().map(|(took, _)| *took).min().unwrap();
    let last_close = closed.iter().map(|(took, _)| *took).max().unwrap();
    let answered = closed.iter().filter(|(_, bytes)| !bytes.is_empty()).count();
    println!(
        "healthy p99 {healthy_p99:?}; under attack: kept-alive p99 {kept_p99:?} ({} requests), \
         new connections max {fresh_max:?} ({}); attackers closed after {first_close:?} to \
         {last_close:?}, {answered} of them got bytes first ({:?}); RSS {idle_rss} KiB idle, \
         {peak_rss} KiB peak",
        kept.len(),
        fresh.len(),
        closed
            .iter()
            .find(|(_, b)| !b.is_empty())
            .map(|(_, b)| String::from_utf8_lossy(b)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned())
    );

    // A client the service already serves does not notice the attack (beyond a shared machine's noise).
    assert!(
        kept_p99 < healthy_p99 + Duration::from_millis(50),
        "{kept_p99:?} against {healthy_p99:?}"
    );
    // A new client waits at most for the attackers ahead of it to time out.
    assert!(fresh_max < HEADER_READ_TIMEOUT * WAVES + Duration::from_secs(1));
    // Every attacker is closed: none before the timeout, none later than the waves ahead of it.
    assert!(first_close >= HEADER_READ_TIMEOUT - Duration::from_millis(50));
    assert!(last_close < HEADER_READ_TIMEOUT * (WAVES + 1) + Duration::from_secs(1));
    // Memory stays flat: without the limit, 3,000 such connections took ~70 MiB more.
    assert!(
        peak_rss < idle_rss + 16 * 1024,
        "{peak_rss} KiB against {idle_rss} KiB idle"
    );

    // Graceful shutdown with attackers connected: a silent connection does not hold it up.
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

/// Latency percentile `q` (0..1) of `samples`, sorted in place.
fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
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
