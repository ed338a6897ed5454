//! The fault suite: the release binary under load while its trace agent misbehaves, and under SIGTERM.
//!
//! The promise: an absent agent, one that never answers, one that answers 500, or one that restarts,
//! costs the requests nothing (no failure, p99 within 10% of a healthy run measured in the same
//! test), memory stays bounded, and spans flow again within 10 s of the agent's return. SIGTERM
//! answers every request the service accepted and delivers every span of them.
//! Run by `make test` one test at a time (`--test-threads=1`), so that the latency comparisons are
//! not made against each other's load.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use common::agent::{Behaviour, TestAgent};
use common::service::{Service, free_port};

/// Scheduling noise on a shared 2-core machine that a p99 comparison allows on top of the 10%: a
/// p99 of a few hundred microseconds moves by this much between identical runs on a quiet machine.
/// When the host is noisy (a virtual machine's neighbours: p99s of 3-10 ms for a while, measured),
/// the rounds' own spread is allowed instead, as the difference no comparison can resolve then.
const P99_SLACK_MS: f64 = 0.25;
const RATE: &str = "400";
/// Each measurement: 2 s at 400 requests/s; three alternating rounds per side.
const LOAD: &str = "2s";
const ROUNDS: usize = 3;

/// A fixed-rate load against the service, as loadgen measures it.
fn load(service: &Service, args: &[&str]) -> loadgen::Summary {
    let args: Vec<&str> = [
        "loadgen",
        service.url.as_str(),
        "--connections",
        "8",
        "--mix",
        "/api/apm",
    ]
    .iter()
    .chain(args)
    .copied()
    .collect();
    let plan = loadgen::Args::try_parse_from(args)
        .unwrap()
        .into_plan()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(loadgen::execute(plan)).unwrap()
}

fn rss_kib(service: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs the same load, alternately, against a service with a healthy agent and one whose agent has
/// `fault` (`None`: nothing listens on its port).
fn compare_with_healthy(fault: Option<Behaviour>) -> Comparison {
    let healthy_agent = TestAgent::start(Behaviour::Healthy);
    let faulty_agent = fault.map(TestAgent::start);
    let faulty_url = match &faulty_agent {
        Some(agent) => agent.url.clone(),
        None => format!("http://127.0.0.1:{}", free_port()),
    };
    let mut healthy = Service::start(&healthy_agent.url, &[]);
    let mut faulty = Service::start(&faulty_url, &[]);
    load(&healthy, &["--rate", RATE, "--duration", "1s"]); // warm-up
    load(&faulty, &["--rate", RATE, "--duration", "1s"]);

    let label = format!("{fault:?}");
    let (mut healthy_p99, mut faulty_p99) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (service, p99s) in [(&healthy, &mut healthy_p99), (&faulty, &mut faulty_p99)] {
            let summary = load(service, &["--rate", RATE, "--duration", LOAD]);
            assert_eq!(summary.overall.errors, 0, "{label}: no request fails");
            assert!(
                summary.overall.requests >= 790,
                "{label}: every request was sent"
            );
            p99s.push(summary.overall.latency_ms.p99);
        }
    }
    let rss = rss_kib(&faulty);
    assert!(healthy.terminate().success());
    assert!(faulty.terminate().success());
    let comparison = Comparison {
        healthy: median(&healthy_p99),
        faulty: median(&faulty_p99),
        noise: spread(&healthy_p99).max(spread(&faulty_p99)),
    };
    println!(
        "agent {label}: median p99 {:.3} ms against {:.3} ms healthy (rounds {faulty_p99:?} and \
         {healthy_p99:?}); RSS {rss} KiB",
        comparison.faulty, comparison.healthy
    );
    assert!(rss < 64 * 1024, "{label}: RSS {rss} KiB stays bounded");
    if fault.is_some() {
        let failed = faulty_agent.as_ref().map(|a| a.spans().len()).unwrap_or(0);
        assert_eq!(failed, 0, "{label}: the faulty agent accepted nothing");
    }
    comparison
}

/// Median p99s of the two sides, and the noise: how far apart one side's rounds were (identical
/// runs). A cost the fault puts on every request moves the faulty side's median, not its spread.
struct Comparison {
    healthy: f64,
    faulty: f64,
    noise: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn spread(values: &[f64]) -> f64 {
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(min, max), &v| {
        (min.min(v), max.max(v))
    });
    max - min
}

fn assert_p99_within_ten_percent(label: &str, comparison: Comparison) {
    let Comparison {
        healthy,
        faulty,
        noise,
    } = comparison;
    let slack = noise.max(P99_SLACK_MS);
    assert!(
        faulty <= healthy * 1.10 + slack,
        "{label}: p99 {faulty:.3} ms is more than 10% (+{slack:.3} ms of noise) above the healthy {healthy:.3} ms"
    );
}

#[test]
fn absent_agent_costs_requests_nothing() {
    assert_p99_within_ten_percent("absent", compare_with_healthy(None));
}

#[test]
fn agent_that_never_answers_costs_requests_nothing() {
    assert_p99_within_ten_percent("silent", compare_with_healthy(Some(Behaviour::Silent)));
}

#[test]
fn agent_answering_500_costs_requests_nothing() {
    assert_p99_within_ten_percent("500", compare_with_healthy(Some(Behaviour::Failing)));
}

#[test]
fn agent_restarting_mid_load_costs_nothing_and_spans_flow_again_within_10_s() {
    let mut agent = TestAgent::start(Behaviour::Healthy);
    let port = agent.port;
    let mut service = Service::start(&agent.url, &[]);
    let url = service.url.clone();
    let loader = std::thread::spawn(move || {
        // The seed's routes and a 404 (loadgen's default mix also has the database routes, which
        // this service, run without a database, answers 503).
        let plan = loadgen::Args::try_parse_from([
            "loadgen",
            &url,
            "-c",
            "8",
            "--rate",
            "300",
            "-d",
            "6s",
            "--mix",
            "/=6,/api/apm=7,/api/trace=6,/no-such-page=1",
        ])
        .unwrap()
        .into_plan()
        .unwrap();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(loadgen::execute(plan))
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    let before_outage = agent.spans().len();
    assert!(before_outage > 0, "spans flowed before the outage");
    std::thread::sleep(Duration::from_millis(1500));
    let restarted_at = Instant::now();
    let agent = TestAgent::restart(port, Behaviour::Healthy, &agent);
    let arrived = agent.wait_for_spans(before_outage + 1, Duration::from_secs(10));
    let took = restarted_at.elapsed();
    let summary = loader.join().unwrap();
    assert!(service.terminate().success());
    println!(
        "agent restart: spans again after {took:?}; {} requests, {} errors",
        summary.overall.requests, summary.overall.errors
    );
    assert!(
        arrived > before_outage,
        "spans arrive again after the agent is back"
    );
    assert!(took <= Duration::from_secs(10), "within 10 s: {took:?}");
    assert_eq!(
        summary.overall.errors, 0,
        "no request failed during the outage"
    );
}

#[test]
fn sigterm_mid_load_answers_every_accepted_request_and_delivers_its_span() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut service = Service::start(&agent.url, &[]);
    let answered: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let failed: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let clients: Vec<_> = (0..8u64)
        .map(|worker| {
            let (url, answered, failed) = (service.url.clone(), answered.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                for i in 1.. {
                    // At most about 2,000 requests a second in all: what this test judges is the
                    // flush at SIGTERM, not a burst past an exporter's buffer (datadog-opentelemetry
                    // drops what its 5 MB buffer cannot hold: 3,800 of 23,000 spans in one second).
                    std::thread::sleep(Duration::from_millis(4));
                    let trace_id = worker * 1_000_000 + i;
                    let response = client
                        .get(format!("{url}/api/trace"))
                        .header("x-datadog-trace-id", trace_id.to_string())
                        .header("x-datadog-parent-id", "1")
                        .header("x-datadog-sampling-priority", "1")
                        .send();
                    match response {
                        Ok(r) if r.status() == 200 => answered.lock().unwrap().insert(trace_id),
                        // A request that reached a kept-alive connection as the stop closed it: refused
                        // unhandled, as an evicted connection's is (src/server/in_flight.rs), so the
                        // client may send it again; like a closed connection, it has no span.
                        Ok(r) if refused_unhandled(&r) => {
                            failed.lock().unwrap().insert(trace_id);
                            break;
                        }
                        Ok(r) => panic!("status {} during shutdown", r.status()),
                        Err(_) => {
                            failed.lock().unwrap().insert(trace_id);
                            break;
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let status = service.terminate();
    for client in clients {
        client.join().unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    let answered = answered.lock().unwrap().clone();
    let spans: HashSet<u64> = agent.spans().iter().map(|s| s.trace_id).collect();
    println!(
        "SIGTERM mid-load: {} answered, {} refused after the stop, {} spans",
        answered.len(),
        failed.lock().unwrap().len(),
        spans.len()
    );
    assert!(answered.len() > 100, "the load ran");
    assert_eq!(
        spans, answered,
        "a span for every answered request, and none for a request left unanswered"
    );
}

/// 503 with `Connection: close` and `Retry-After`: the server's answer for a request it did not
/// handle because its connection was closing.
fn refused_unhandled(response: &reqwest::blocking::Response) -> bool {
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
    response.status() == 503
        && header("connection") == Some("close")
        && header("retry-after").is_some()
}
