//! Request limits, hermetic: a handler past its deadline is cancelled with 504 and its span says why;
//! cleartext HTTP/2 is not served. (Overload and slowloris, which measure latencies, run in
//! tests/limits.rs, one test at a time on the release build.)

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
