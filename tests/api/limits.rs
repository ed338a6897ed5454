//! Request limits under load: a handler past its deadline is cancelled with 504, requests beyond the
//! in-flight bound are shed at once with 503 and Retry-After, each of them still gets exactly one
//! span saying why, `/health` answers throughout, and the full rate returns when the load drops.
//!
//! The slow handler stands in for a database or an injected delay: 20 ms with at most 10 requests in
//! flight makes the service's capacity 500 requests per second, so an open-loop load of 1,500 per
//! second is three times what it can serve.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http::StatusCode;

use crate::agent::{AgentSpan, Behaviour, TestAgent};
use crate::helpers::{TestApp, spawn_app_serving};

const SLOW: Duration = Duration::from_millis(20);

fn slow_routes() -> Router {
    Router::new()
        .route("/slow", get(|| async { tokio::time::sleep(SLOW).await }))
        .route(
            "/stuck",
            get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }),
        )
}

fn meta<'a>(span: &'a AgentSpan, key: &str) -> Option<&'a str> {
    span.meta.get(key).map(String::as_str)
}

async fn flushed_spans(app: &mut TestApp, agent: &TestAgent) -> Vec<AgentSpan> {
    app.stop_and_flush().await;
    agent.spans()
}

#[tokio::test]
async fn a_handler_past_its_deadline_is_cancelled_with_504_and_an_error_span() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app =
        spawn_app_serving(&agent.url, &["--request-timeout", "200ms"], slow_routes()).await;
    let started = Instant::now();
    let response = app.get("/stuck").await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "answered after {took:?}"
    );
    // The place the request held is free again: the next one is served.
    assert_eq!(app.get("/slow").await.status(), StatusCode::OK);

    let spans = flushed_spans(&mut app, &agent).await;
    let stuck = spans.iter().find(|s| s.resource == "GET /stuck").unwrap();
    assert_eq!(stuck.error, 1);
    assert_eq!(meta(stuck, "http.status_code"), Some("504"));
    assert_eq!(meta(stuck, "error.type"), Some("deadline_exceeded"));
    assert!(
        meta(stuck, "error.message")
            .unwrap()
            .contains("REQUEST_TIMEOUT")
    );
    // The span ends at the deadline, not when the handler would have finished.
    assert!(stuck.duration < 2_000_000_000, "{} ns", stuck.duration);
    let slow = spans.iter().find(|s| s.resource == "GET /slow").unwrap();
    assert_eq!((slow.error, meta(slow, "error.type")), (0, None));
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

/// Cleartext HTTP/2 is not served: hyper gives it no header-read timeout, so a client could hold a
/// connection with a preface and nothing more. The preface is answered as the HTTP/1 request it is
/// not (or not at all), never with an HTTP/2 SETTINGS frame, and closed by the header-read timeout.
#[tokio::test]
async fn an_http2_preface_gets_no_http2_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app_serving(&agent.url, &["--header-read-timeout", "1s"], slow_routes()).await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}
