//! Fault flags (src/faults, docs/faults.md): each flag acts within 2 s of the file changing, at the
//! rate asked (within a binomial tolerance), on the routes asked and no others, and shows on the span
//! and the log line; a missing file is all flags off, an invalid one is reported once and the last
//! good flags stay, and a file replaced mid-load loses no request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::agent::{AgentSpan, Behaviour, TestAgent};
use crate::helpers::{TestApp, spawn_app};

/// A directory of its own per test, empty.
fn flag_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apm-demo-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `{"flags": {<flags>}}` as an editor would: a new file renamed over the old one.
fn write_flags(path: &Path, flags: &str) {
    let text =
        format!(r#"{{"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {{{flags}}}}}"#);
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// `key` on for `share` percent of the requests of `route`, its value `on`.
fn on_route(key: &str, route: &str, share: u32, on: &str, off: &str) -> String {
    format!(
        r#""{key}": {{"state": "ENABLED", "variants": {{"on": {on}, "off": {off}}}, "defaultVariant": "off",
            "targeting": {{"if": [{{"==": [{{"var": "route"}}, "{route}"]}},
                {{"fractional": [["on", {share}], ["off", {}]]}}, "off"]}}}}"#,
        100 - share
    )
}

async fn spawn_with_flags(agent: &TestAgent, path: &Path, extra: &[&str]) -> TestApp {
    let mut args = vec!["--flagd-offline-flag-source-path", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    spawn_app(&agent.url, &args).await
}

/// Asks `path` until it answers `status`; how long that took (panics after 5 s).
async fn until_status(app: &TestApp, path: &str, status: StatusCode) -> Duration {
    let started = Instant::now();
    while app.get(path).await.status() != status {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// `count` GETs of `path`, 25 at a time: the statuses and client latencies.
async fn load(app: &TestApp, path: &str, count: usize) -> Vec<(StatusCode, Duration)> {
    let url = format!("{}{path}", app.address);
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for i in 0..count {
        let (client, url) = (app.client.clone(), url.clone());
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .get(url)
                .send()
                .await
                .expect("every request answered");
            (response.status(), sent.elapsed())
        }));
        if pending.len() == 25 || i + 1 == count {
            for request in pending.drain(..) {
                results.push(request.await.unwrap());
            }
        }
    }
    results
}

fn count(results: &[(StatusCode, Duration)], status: StatusCode) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

/// The binomial tolerance: mean +- 5 standard deviations (a false failure once in ~3.5 million runs).
fn assert_binomial(observed: usize, n: usize, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {observed} of {n}, expected {mean} +- {:.1}",
        5.0 * sd
    );
}

fn meta<'a>(span: &'a AgentSpan, key: &str) -> Option<&'a str> {
    span.meta.get(key).map(String::as_str)
}

#[tokio::test]
async fn a_flag_acts_within_2s_of_the_file_changing_on_its_route_only_and_shows_on_span_and_log() {
    let dir = flag_dir("within-2s");
    let path = dir.join("flags.json");
    let agent = TestAgent::start(Behaviour::Healthy);
    // The default poll (500 ms); no file yet: every flag off.
    let mut app = spawn_with_flags(&agent, &path, &[]).await;
    assert_eq!(app.get("/api/trace").await.status(), StatusCode::OK);

    write_flags(
        &path,
        &on_route("routeFailure", "/api/trace", 100, "true", "false"),
    );
    let took = until_status(&app, "/api/trace", StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(took < Duration::from_secs(2), "on after {took:?}");
    for (path, status) in [("/api/trace", 500), ("/api/apm", 200), ("/", 200)] {
        let results = load(&app, path, 30).await;
        assert_eq!(
            count(&results, StatusCode::from_u16(status).unwrap()),
            30,
            "{path}"
        );
    }
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);

    // The file removed: every flag off again.
    std::fs::remove_file(&path).unwrap();
    let took = until_status(&app, "/api/trace", StatusCode::OK).await;
    assert!(took < Duration::from_secs(2), "off after {took:?}");

    app.stop_and_flush().await;
    let spans = agent.spans();
    let faulted: Vec<&AgentSpan> = spans
        .iter()
        .filter(|s| meta(s, "fault.injected").is_some())
        .collect();
    assert!(
        faulted.len() >= 31,
        "{} spans with fault.injected",
        faulted.len()
    );
    for span in &faulted {
        assert_eq!(span.resource, "GET /api/trace");
        assert_eq!(span.error, 1);
        assert_eq!(meta(span, "fault.injected"), Some("routeFailure"));
        assert_eq!(meta(span, "error.type"), Some("fault_injected"));
        assert_eq!(meta(span, "http.status_code"), Some("500"));
        assert!(
            meta(span, "error.message")
                .unwrap()
                .contains("flag routeFailure")
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s.resource == "GET /api/apm" && s.error == 0)
    );

    let logs = app.json_logs();
    let access: Vec<_> = logs
        .iter()
        .filter(|l| l["logger.name"] == "apm_demo::access" && l["fault.injected"] == "routeFailure")
        .collect();
    assert_eq!(
        access.len(),
        faulted.len(),
        "the log line carries the fault too"
    );
    assert!(access.iter().all(|l| l["http.status_code"] == 500));
    let messages: Vec<&str> = logs
        .iter()
        .filter(|l| l["logger.name"] == "apm_demo::faults")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains("every fault flag is off"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("enabled: routeFailure"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("every fault flag is off"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn the_error_rate_is_the_share_asked_on_the_route_asked() {
    let dir = flag_dir("rate");
    let path = dir.join("flags.json");
    write_flags(
        &path,
        &on_route("routeFailure", "/api/trace", 20, "true", "false"),
    );
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "100"]).await;
    let trace = load(&app, "/api/trace", 1_000).await;
    assert_eq!(
        count(&trace, StatusCode::OK) + count(&trace, StatusCode::INTERNAL_SERVER_ERROR),
        1_000
    );
    assert_binomial(
        count(&trace, StatusCode::INTERNAL_SERVER_ERROR),
        1_000,
        0.2,
        "500s of /api/trace",
    );
    for other in ["/", "/api/apm", "/nowhere"] {
        let results = load(&app, other, 200).await;
        assert_eq!(
            count(&results, StatusCode::INTERNAL_SERVER_ERROR),
            0,
            "{other}"
        );
    }
}

#[tokio::test]
async fn latency_fixed_and_long_tail_on_their_routes_and_within_the_deadline() {
    let dir = flag_dir("latency");
    let path = dir.join("flags.json");
    write_flags(
        &path,
        &[
            on_route("routeLatencyMs", "/api/apm", 100, "150", "0"),
            on_route("routeLatencyTailMs", "/api/trace", 20, "300", "0"),
        ]
        .join(","),
    );
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "100"]).await;

    let fixed = load(&app, "/api/apm", 50).await;
    assert!(
        fixed
            .iter()
            .all(|(s, took)| *s == StatusCode::OK && *took >= Duration::from_millis(150))
    );
    let tail = load(&app, "/api/trace", 250).await;
    assert_eq!(count(&tail, StatusCode::OK), 250);
    let slow = tail
        .iter()
        .filter(|(_, took)| *took >= Duration::from_millis(300))
        .count();
    let other = load(&app, "/", 50).await;

    app.stop_and_flush().await;
    let spans = agent.spans();
    for span in spans.iter().filter(|s| s.resource == "GET /api/apm") {
        assert_eq!(meta(span, "fault.injected"), Some("routeLatencyMs"));
        assert_eq!((span.error, meta(span, "error.type")), (0, None));
        assert!(span.duration >= 150_000_000, "{}", span.duration);
    }
    // The tail: the spans the flag touched are its share, each 300 ms or longer, and the client saw
    // at least that many slow answers (a busy machine may add slow ones of its own).
    let tail_spans: Vec<&AgentSpan> = spans
        .iter()
        .filter(|s| s.resource == "GET /api/trace")
        .collect();
    let tagged: Vec<&&AgentSpan> = tail_spans
        .iter()
        .filter(|s| meta(s, "fault.injected") == Some("routeLatencyTailMs"))
        .collect();
    assert_binomial(tagged.len(), 250, 0.2, "slowed /api/trace");
    assert!(tagged.iter().all(|s| s.duration >= 300_000_000));
    assert!(
        slow >= tagged.len(),
        "{slow} slow answers, {} slowed",
        tagged.len()
    );
    // No other route is touched: no tag on GET /, and no request of it waited the 150 or 300 ms.
    let root: Vec<&AgentSpan> = spans.iter().filter(|s| s.resource == "GET /").collect();
    assert_eq!(root.len(), other.len());
    assert!(
        root.iter()
            .all(|s| meta(s, "fault.injected").is_none() && s.duration < 150_000_000)
    );

    // Inside the limits: a delay past REQUEST_TIMEOUT ends at the deadline with 504.
    write_flags(
        &path,
        &on_route("routeLatencyMs", "/api/apm", 100, "5000", "0"),
    );
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_with_flags(
        &agent,
        &path,
        &[
            "--flagd-offline-poll-ms",
            "100",
            "--request-timeout",
            "300ms",
        ],
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        app.get("/api/apm").await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_panic_is_caught_and_answered_500_naming_the_flag() {
    let dir = flag_dir("panic");
    let path = dir.join("flags.json");
    write_flags(&path, &on_route("routePanic", "/", 100, "true", "false"));
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "100"]).await;
    for _ in 0..5 {
        assert_eq!(
            app.get("/").await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(app.get("/api/apm").await.status(), StatusCode::OK);
    }
    app.stop_and_flush().await;
    let spans = agent.spans();
    let panicked: Vec<&AgentSpan> = spans.iter().filter(|s| s.resource == "GET /").collect();
    assert_eq!(panicked.len(), 5);
    for span in panicked {
        assert_eq!(span.error, 1);
        assert_eq!(meta(span, "fault.injected"), Some("routePanic"));
        let message = meta(span, "error.message").unwrap();
        assert!(
            message.contains("flag routePanic") && message.contains("panicked"),
            "{message}"
        );
    }
}

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn memory_grows_while_the_flag_is_on_and_is_not_given_back_when_it_is_off() {
    let dir = flag_dir("memory");
    let path = dir.join("flags.json");
    write_flags(
        &path,
        r#""memoryLeakKb": {"state": "ENABLED", "variants": {"on": 1024, "off": 0}, "defaultVariant": "on"}"#,
    );
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "100"]).await;
    let before = resident_bytes();
    assert_eq!(
        count(&load(&app, "/api/apm", 100).await, StatusCode::OK),
        100
    );
    let grown = resident_bytes().saturating_sub(before);
    // 100 requests x 1 MiB; other tests share the process, so a margin either way.
    assert!(grown >= 80 << 20, "grew {} MiB", grown >> 20);

    // Off: nothing more is retained, and nothing is given back either (a leak).
    write_flags(&path, "");
    until_status(&app, "/api/apm", StatusCode::OK).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let off = resident_bytes();
    load(&app, "/api/apm", 100).await;
    assert!(
        resident_bytes() < off + (40 << 20),
        "still growing with the flag off"
    );
    assert!(
        resident_bytes() >= before + (80 << 20),
        "the leak was given back"
    );

    app.stop_and_flush().await;
    let spans = agent.spans();
    let tagged = spans
        .iter()
        .filter(|s| meta(s, "fault.injected") == Some("memoryLeakKb"))
        .count();
    assert!(tagged >= 100, "{tagged}");
    assert!(spans.iter().all(|s| s.error == 0));
}

#[tokio::test]
async fn an_invalid_file_is_reported_once_and_the_last_good_flags_stay() {
    let dir = flag_dir("invalid");
    let path = dir.join("flags.json");
    write_flags(
        &path,
        &on_route("routeFailure", "/api/trace", 100, "true", "false"),
    );
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "50"]).await;
    assert_eq!(
        app.get("/api/trace").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    std::fs::write(
        path.with_extension("tmp"),
        "{\"flags\": {\"routeFailure\": ",
    )
    .unwrap();
    std::fs::rename(path.with_extension("tmp"), &path).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.get("/api/trace").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // An operator this subset does not evaluate: refused, not silently off.
    write_flags(
        &path,
        r#""routeFailure": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"starts_with": [{"var": "route"}, "/api"]}}"#,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.get("/api/trace").await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(app.get("/api/apm").await.status(), StatusCode::OK);

    let warnings: Vec<String> = app
        .json_logs()
        .iter()
        .filter(|l| l["logger.name"] == "apm_demo::faults" && l["level"] == "WARN")
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 2, "once per invalid version: {warnings:?}");
    assert!(
        warnings[0].contains("invalid fault flag file"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("enabled: routeFailure"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("\"starts_with\" is not supported"),
        "{warnings:?}"
    );

    write_flags(&path, "");
    until_status(&app, "/api/trace", StatusCode::OK).await;
}

#[tokio::test]
async fn a_file_replaced_mid_load_loses_no_request() {
    let dir = flag_dir("replaced");
    let path = dir.join("flags.json");
    let on = on_route("routeFailure", "/api/trace", 100, "true", "false");
    write_flags(&path, &on);
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_with_flags(&agent, &path, &["--flagd-offline-poll-ms", "10"]).await;

    // While the load runs, the file flips between on and off every 15 ms: renamed over (atomic), and
    // every third time rewritten in place (a reader may see it half-written: invalid, reported, the
    // last good flags stay).
    let writer_path = path.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_stop = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut flips = 0u32;
        while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let flags = if flips.is_multiple_of(2) {
                ""
            } else {
                on.as_str()
            };
            if flips % 3 == 2 {
                let text = format!(r#"{{"flags": {{{flags}}}}}"#);
                std::fs::write(&writer_path, text).unwrap();
            } else {
                write_flags(&writer_path, flags);
            }
            flips += 1;
            std::thread::sleep(Duration::from_millis(15));
        }
        flips
    });
    let results = load(&app, "/api/trace", 2_000).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = writer.join().unwrap();
    let (ok, failed) = (
        count(&results, StatusCode::OK),
        count(&results, StatusCode::INTERNAL_SERVER_ERROR),
    );
    assert_eq!(
        ok + failed,
        2_000,
        "every request answered 200 or the injected 500"
    );
    assert!(
        ok > 0 && failed > 0,
        "{ok} ok, {failed} failed over {flips} flips"
    );
}

#[tokio::test]
async fn each_flag_acts_within_2s_of_the_file_changing_and_stops_within_2s_of_it_going() {
    let dir = flag_dir("each-within-2s");
    let path = dir.join("flags.json");
    write_flags(&path, "");
    let agent = TestAgent::start(Behaviour::Healthy);
    // The default poll, 500 ms.
    let app = spawn_with_flags(&agent, &path, &[]).await;
    for (key, route, on, status, slower) in [
        ("routeLatencyMs", "/api/apm", "200", 200, 200),
        ("routeLatencyTailMs", "/api/trace", "200", 200, 200),
        ("routeFailure", "/", "true", 500, 0),
        ("routePanic", "/api/trace", "true", 500, 0),
        ("memoryLeakKb", "/api/apm", "16", 200, 0),
    ] {
        let off = if on == "true" { "false" } else { "0" };
        write_flags(&path, &on_route(key, route, 100, on, off));
        let written = Instant::now();
        // Until the access line of a request says the flag acted.
        loop {
            let sent = Instant::now();
            let response = app.get(route).await;
            let took = sent.elapsed();
            let logs = app.json_logs();
            let last = logs
                .iter()
                .rev()
                .find(|l| l["logger.name"] == "apm_demo::access")
                .unwrap();
            if last["fault.injected"] == key {
                assert_eq!(response.status().as_u16(), status, "{key}");
                assert!(took >= Duration::from_millis(slower), "{key}: {took:?}");
                break;
            }
            assert_eq!(response.status(), StatusCode::OK, "{key} before it acted");
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "{key} not on after 2 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "{key}: {:?}",
            written.elapsed()
        );
        write_flags(&path, "");
        let written = Instant::now();
        loop {
            app.get(route).await;
            let logs = app.json_logs();
            let last = logs
                .iter()
                .rev()
                .find(|l| l["logger.name"] == "apm_demo::access")
                .unwrap();
            if last.get("fault.injected").is_none() {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "{key} not off after 2 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
