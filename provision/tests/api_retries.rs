//! The API client's retry policy, against local servers: how many attempts, how long between them,
//! what a 429 asks, and what the error says. (tests/apply.rs covers the same policy through `apply`.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use provision::api::{Api, Credentials};

const BACKOFF: Duration = Duration::from_millis(200);

/// A server answering every request with `answer` (a whole HTTP response, or `None` to hang up at
/// once); returns its URL and the count of requests.
fn server(answer: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            seen.fetch_add(1, Ordering::SeqCst);
            if let Some(answer) = answer {
                let _ = stream.write_all(answer.as_bytes());
            }
        }
    });
    (url, count)
}

fn api(base: &str) -> Api {
    Api::new(
        base,
        Credentials {
            api_key: "test-api-key".into(), // pragma: allowlist secret
            app_key: "test-app-key".into(),
        },
    )
    .unwrap()
    .with_backoff(BACKOFF)
}

/// Three attempts, paused by the backoff then twice it: 600 ms in all.
fn assert_three_attempts_with_doubling_pauses(answer: Option<&'static str>) -> String {
    let (url, count) = server(answer);
    let started = Instant::now();
    let error = api(&url).get("/api/v1/thing").unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(count.load(Ordering::SeqCst), 3, "{error:#}");
    assert!(
        elapsed >= 3 * BACKOFF && elapsed < 5 * BACKOFF + Duration::from_millis(100),
        "{elapsed:?}"
    );
    format!("{error:#}")
}

#[test]
fn a_broken_connection_is_tried_three_times_with_doubling_pauses() {
    let error = assert_three_attempts_with_doubling_pauses(None);
    assert!(error.contains("no answer after 3 attempts"), "{error}");
}

#[test]
fn a_server_error_is_tried_three_times_with_doubling_pauses_and_its_errors_are_quoted() {
    let error = assert_three_attempts_with_doubling_pauses(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 26\r\nconnection: close\r\n\r\n{\"errors\":[\"overloaded\"]}\n",
    ));
    assert!(error.contains("503"), "{error}");
    // The API's `errors` list, not the whole body.
    assert!(error.ends_with(r#"["overloaded"]"#), "{error}");
    assert!(!error.contains("{"), "{error}");
}

#[test]
fn a_client_error_fails_at_once_with_the_body_when_it_is_not_the_apis_errors() {
    for body in ["plain failure", r#"{"message":"bad"}"#] {
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (url, count) = server(Some(answer.leak()));
        let error = format!("{:#}", api(&url).get("/api/v1/thing").unwrap_err());
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(error.contains("400"), "{error}");
        assert!(error.ends_with(body), "{error}");
    }
}

#[test]
fn a_rate_limit_is_tried_five_times_then_reported() {
    let (url, count) = server(Some(
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    let error = format!("{:#}", api(&url).get("/api/v1/thing").unwrap_err());
    assert_eq!(count.load(Ordering::SeqCst), 5, "{error}");
    assert!(
        error.contains("still rate limited (429) after 5 attempts"),
        "{error}"
    );
}

#[test]
fn a_negative_retry_after_is_ignored_for_the_next_header() {
    // Retry-After -5 is not a wait; X-RateLimit-Reset 0 is: the second attempt comes at once.
    let (url, count) = server(Some(
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: -5\r\nx-ratelimit-reset: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    let started = Instant::now();
    let error = format!("{:#}", api(&url).get("/api/v1/thing").unwrap_err());
    assert_eq!(count.load(Ordering::SeqCst), 5, "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "no 1 s default wait"
    );
}

#[test]
fn an_unreadable_dotenv_is_an_error_not_ignored() {
    // `.env` a link to itself cannot be opened (too many levels of links): only a missing one is
    // the same as none.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("provision-api-dotenv-loop");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(".env", dir.join(".env")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_provision"))
        .current_dir(&dir)
        .env_clear()
        .arg("--help")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("provision: .env:"), "{stderr}");
}
