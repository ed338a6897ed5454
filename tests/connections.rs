//! Hostile connections against the release binary: silent and trickling clients (slowloris), three
//! times as many as the connection limit. The service keeps answering a client it already serves,
//! answers new clients within a bounded wait, closes every attacker after the header-read timeout,
//! keeps its memory flat, and still stops cleanly on SIGTERM.
//!
//! Bounded: 300 attacking connections on loopback, about 10 s in all. Run by `make test` (release).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/service.rs"]
mod service;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use agent::{Behaviour, TestAgent};
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

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
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
