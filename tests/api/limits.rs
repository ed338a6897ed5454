//! Request and connection limits, hermetic: a handler past its deadline is cancelled with 504 and its
//! span says why; cleartext HTTP/2 is not served; past `MAX_CONNECTIONS` a new connection evicts the
//! one that has waited longest for a request head, never one with a request in flight, and the log
//! counts evictions; a request head past 16 KiB is refused with 431; stopping closes the connections
//! waiting for a head at once; the open-file limit is raised to what the connection limit needs. (Floods and overload, which measure latencies and memory, run in
//! tests/limits.rs, one test at a time on the release build.)

use std::time::{Duration, Instant};

use apm_demo::server::EVICTED_CLOSING_AT_MOST;
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
        .route("/held", get(|| async { tokio::time::sleep(HELD).await }))
}

/// How long `/held` keeps its request in flight.
const HELD: Duration = Duration::from_millis(300);

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

/// A connection that sends `bytes` (nothing: a silent one) and holds still.
async fn connect(address: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Sends a request on `stream` and reads its answer's head (the answers here are bodiless or tiny);
/// the connection stays open.
async fn ask(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the server has closed `stream`, with no answer; false if it is still open after 200 ms.
async fn closed_unanswered(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 256];
    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
        Err(_still_open) => false,
        Ok(Ok(0)) => true,
        Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buffer[..n])),
        // A reset is a close too.
        Ok(Err(_)) => true,
    }
}

/// The `connections.evicted` counts of the eviction report lines so far.
fn eviction_lines(app: &TestApp) -> Vec<(u64, u64)> {
    app.json_logs()
        .iter()
        .filter_map(|line| {
            let evicted = line.get("connections.evicted")?.as_u64()?;
            let total = line["connections.evicted_total"].as_u64().unwrap();
            assert_eq!(line["level"], "WARN", "{line}");
            assert!(
                line["message"]
                    .as_str()
                    .unwrap()
                    .contains("MAX_CONNECTIONS (3)"),
                "{line}"
            );
            Some((evicted, total))
        })
        .collect()
}

/// Silent, unfinished-head and idle keep-alive connections all wait for a head; a
/// newcomer past the limit is served at once and closes the one that has waited longest.
#[tokio::test]
async fn past_max_connections_a_newcomer_evicts_the_connection_waiting_longest_for_a_head() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app_serving(&agent.url, &["--max-connections", "3"], slow_routes()).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let pause = || tokio::time::sleep(Duration::from_millis(30));

    let mut silent = connect(&address, b"").await;
    pause().await;
    let mut unfinished = connect(&address, b"GET /slow HTTP/1.1\r\nHost: te").await;
    pause().await;
    let mut kept_alive = connect(&address, b"").await;
    assert!(
        ask(&mut kept_alive, "/slow")
            .await
            .starts_with("HTTP/1.1 200")
    );
    pause().await;
    assert!(
        eviction_lines(&app).is_empty(),
        "nothing evicted under the limit"
    );

    // Each newcomer is answered, and closes the oldest waiting: the silent one first (it waited
    // since it connected), then the one with an unfinished head, then the keep-alive one (it waited
    // since its answer), then the first newcomer (since its own answer).
    let mut newcomers = Vec::new();
    for evicted in [&mut silent, &mut unfinished, &mut kept_alive] {
        let mut newcomer = connect(&address, b"").await;
        assert!(
            ask(&mut newcomer, "/slow")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(closed_unanswered(evicted).await);
        newcomers.push(newcomer);
        pause().await;
    }
    let mut last = connect(&address, b"").await;
    assert!(ask(&mut last, "/slow").await.starts_with("HTTP/1.1 200"));
    assert!(closed_unanswered(&mut newcomers[0]).await);
    assert!(!closed_unanswered(&mut newcomers[1]).await);
    assert!(!closed_unanswered(&mut newcomers[2]).await);

    // The first eviction is reported at once; the rest within the minute wait for the next line,
    // or for the server to stop.
    assert_eq!(eviction_lines(&app), [(1, 1)]);
    app.stop_and_flush().await;
    assert_eq!(eviction_lines(&app), [(1, 1), (3, 4)]);
}

/// A connection whose request is in flight is never evicted: with every connection busy, a newcomer
/// waits until one has answered, then takes its place.
#[tokio::test]
async fn a_request_in_flight_is_answered_before_a_newcomer_takes_its_connection() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app_serving(&agent.url, &["--max-connections", "1"], slow_routes()).await;
    let address = app.address.trim_start_matches("http://").to_owned();

    let mut busy = connect(&address, b"").await;
    let started = Instant::now();
    let busy_answer = tokio::spawn(async move {
        let answer = ask(&mut busy, "/held").await;
        (answer, started.elapsed(), busy)
    });
    tokio::time::sleep(HELD / 3).await;
    let mut newcomer = connect(&address, b"").await;
    let answer = ask(&mut newcomer, "/slow").await;
    let newcomer_answered = started.elapsed();
    let (busy_answer, busy_answered, mut busy) = busy_answer.await.unwrap();

    assert!(busy_answer.starts_with("HTTP/1.1 200"), "{busy_answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(busy_answered >= HELD, "{busy_answered:?}");
    assert!(
        newcomer_answered >= HELD,
        "the newcomer waited for the request in flight: {newcomer_answered:?}"
    );
    // Answered, the first connection waited for its next head: the newcomer took its place.
    assert!(closed_unanswered(&mut busy).await);
}

/// hyper's read buffer stops at 16 KiB: a longer head gets 431 and the connection is closed, so
/// an unfinished head costs at most that (docs/benchmarks.md).
#[tokio::test]
async fn a_request_head_past_16_kib_is_refused_with_431() {
    use tokio::io::AsyncReadExt;

    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app_serving(&agent.url, &[], slow_routes()).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let head = |size: usize| {
        let start = "GET /slow HTTP/1.1\r\nHost: test\r\nX-Fill: ";
        let fill = "a".repeat(size - start.len() - 4);
        format!("{start}{fill}\r\n\r\n")
    };
    assert_eq!(head(16 * 1024).len(), 16 * 1024);

    let mut largest = connect(&address, head(16 * 1024).as_bytes()).await;
    let mut answer = [0u8; 12];
    largest.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");

    let mut too_large = connect(&address, head(16 * 1024 + 1).as_bytes()).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), too_large.read_to_end(&mut answer))
        .await
        .expect("closed after the answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
}

/// Stopping closes every connection waiting for a head at once: an unfinished head (which hyper's
/// own graceful shutdown would leave to the header-read timeout, 10 s by default) and an idle
/// keep-alive connection do not hold the stop up.
#[tokio::test]
async fn stopping_closes_the_connections_waiting_for_a_head_at_once() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app_serving(&agent.url, &[], slow_routes()).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut unfinished = connect(&address, b"GET /slow HTTP/1.1\r\nHost: te").await;
    let mut idle = connect(&address, b"").await;
    assert!(ask(&mut idle, "/slow").await.starts_with("HTTP/1.1 200"));

    let stopping = Instant::now();
    app.stop_and_flush().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "stopped after {:?}",
        stopping.elapsed()
    );
    assert!(closed_unanswered(&mut unfinished).await);
    assert!(closed_unanswered(&mut idle).await);
}

/// The service raises its soft limit on open files to what `MAX_CONNECTIONS` needs (past it,
/// accepting would fail before the limit is reached, and nothing would be evicted): the
/// connections, the evicted ones still closing beside them, one waiting for room, MySQL's pool
/// and 64 more. Up to the hard limit, past which
/// it warns, naming the setting.
#[test]
fn the_open_file_limit_is_raised_to_what_max_connections_needs() {
    // (ulimit settings, soft limit expected, the line logged)
    let cases = [
        (
            "ulimit -Sn 256",
            300 + EVICTED_CLOSING_AT_MOST as u64 + 1 + 5 + 64,
            "raised the open-file limit from 256 to 402 for MAX_CONNECTIONS=300",
        ),
        (
            "ulimit -n 200",
            200,
            "MAX_CONNECTIONS=300 needs 402 open files, but this process may open 200",
        ),
    ];
    for (ulimit, expected, logged) in cases {
        let (soft, lines) = open_file_limit_at_start(ulimit);
        assert_eq!(soft, expected, "{ulimit}: {lines:#?}");
        assert!(
            lines.iter().any(|l| l.contains(logged)),
            "{ulimit}: {lines:#?}"
        );
    }
}

/// The binary started under `ulimit` with MAX_CONNECTIONS=300 and MYSQL_POOL_SIZE=5: its soft limit
/// on open files once it listens, and its log lines until then.
fn open_file_limit_at_start(ulimit: &str) -> (u64, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("{ulimit} && exec \"$0\""),
            env!("CARGO_BIN_EXE_apm-demo"),
        ])
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DD_TRACE_ENABLED", "false")
        .env("MAX_CONNECTIONS", "300")
        .env("MYSQL_POOL_SIZE", "5")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("listening on");
        lines.push(line);
        if listening {
            break;
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .parse()
        .unwrap();
    (soft, lines)
}
