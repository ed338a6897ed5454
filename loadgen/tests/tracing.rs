//! loadgen as a traced client (`--trace-agent`), against an in-test server and an in-test agent that
//! decodes what it is posted: one client span per request with the ids its headers carry, the span's
//! fields and timing, errors, an agent that is down, hangs or refuses, and the trace ids the summary
//! names. (Datadog's own test agent and the real service: tests/trace_agent.rs.)

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use common::agent::{Agent, Answer};
use common::{Behaviour, OK_THEN_CLOSE, load, loadgen, loadgen_with, read_head, serve};
use loadgen::export::SpanCounts;
use tokio::io::AsyncWriteExt;

fn header(headers: &HeaderMap, name: &str) -> String {
    headers[name].to_str().unwrap().to_owned()
}

/// The span of the trace whose low 64 bits are `low`.
fn span_of(spans: &[Value], low: u64) -> &Value {
    let mut matching = spans.iter().filter(|s| s["trace_id"] == low);
    let span = matching
        .next()
        .unwrap_or_else(|| panic!("no span for {low}"));
    assert!(matching.next().is_none(), "one span per trace");
    span
}

fn meta<'a>(span: &'a Value, key: &str) -> &'a str {
    span["meta"][key]
        .as_str()
        .unwrap_or_else(|| panic!("meta {key} in {span}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_a_client_span_whose_ids_its_headers_carry() {
    let (url, seen) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    let mix = r#"/a=1,GET /v/{1..5}/x?q={7..9}=1,POST /p {"x":1}=1,/missing=1"#;
    let summary = load(
        &url,
        &[
            "-n",
            "80",
            "-c",
            "3",
            "--trace-agent",
            &agent.url,
            "--mix",
            mix,
        ],
    )
    .await;
    assert_eq!(
        summary.trace_headers.to_string(),
        "both",
        "the default with an agent"
    );
    let spans_summary = summary.spans.as_ref().expect("spans in the summary");
    assert_eq!(spans_summary.counts, SpanCounts { sent: 80, lost: 0 });
    assert_eq!(spans_summary.agent, format!("{}/", agent.url));

    let spans = agent.spans();
    assert_eq!(spans.len(), 80);
    let port = url.rsplit(':').next().unwrap();
    let runtime_ids: HashSet<&str> = spans.iter().map(|s| meta(s, "runtime-id")).collect();
    assert_eq!(runtime_ids.len(), 1, "one runtime-id per process");
    let runtime_id = runtime_ids.into_iter().next().unwrap();
    assert!(runtime_id.len() == 32 && runtime_id.bytes().all(|b| b.is_ascii_hexdigit()));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 80);
    let mut resources = HashMap::new();
    for (request, headers, _) in &seen.requests {
        let low: u64 = header(headers, "x-datadog-trace-id").parse().unwrap();
        let span = span_of(&spans, low);
        // The service's span will be the child of this one: the headers carry its ids.
        assert_eq!(
            header(headers, "x-datadog-parent-id"),
            span["span_id"].to_string()
        );
        assert_eq!(span["parent_id"], 0, "loadgen's span is the root");
        let tid = meta(span, "_dd.p.tid");
        assert_eq!(
            header(headers, "x-datadog-tags"),
            format!("_dd.p.dm=-0,_dd.p.tid={tid}")
        );
        assert_eq!(header(headers, "x-datadog-sampling-priority"), "1");
        let span_id = span["span_id"].as_u64().unwrap();
        assert_eq!(
            header(headers, "traceparent"),
            format!("00-{tid}{low:016x}-{span_id:016x}-01")
        );
        // 128-bit ids as Datadog's tracers make them: the start second, 32 zero bits, 64 random.
        let high = u64::from_str_radix(tid, 16).unwrap();
        let start_s = span["start"].as_u64().unwrap() / 1_000_000_000;
        assert_eq!(high & 0xffff_ffff, 0, "{tid}");
        assert_eq!(high >> 32, start_s, "{tid}");

        let (method, target) = request.split_once(' ').unwrap();
        let path = target.split('?').next().unwrap();
        assert_eq!(meta(span, "http.method"), method);
        assert_eq!(
            meta(span, "http.url"),
            format!("{url}{path}"),
            "no query string"
        );
        let status = if path.starts_with("/missing") {
            "404"
        } else {
            "200"
        };
        assert_eq!(meta(span, "http.status_code"), status);
        assert_eq!(span["error"], 0, "a 4xx is not the span's error");
        resources.insert(span["resource"].as_str().unwrap().to_owned(), ());
    }
    let mut resources: Vec<String> = resources.into_keys().collect();
    resources.sort();
    assert_eq!(
        resources,
        ["GET /a", "GET /missing", "GET /v/{id}/x", "POST /p"],
        "one resource per mix entry, whatever ids it drew"
    );

    let span = &spans[0];
    for (field, value) in [
        ("service", "loadgen"),
        ("name", "http.client.request"),
        ("type", "http"),
    ] {
        assert_eq!(span[field], value, "{field}");
    }
    for (key, value) in [
        ("span.kind", "client"),
        ("component", "loadgen"),
        ("language", "rust"),
        ("env", "dev"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("out.host", "127.0.0.1"),
        ("server.address", "127.0.0.1"),
        ("network.destination.port", port),
        ("_dd.p.dm", "-0"),
    ] {
        assert_eq!(meta(span, key), value, "meta {key}");
    }
    assert!(span["meta"].get("error.type").is_none());
    for (key, value) in [
        ("_sampling_priority_v1", 1.0),
        ("_dd.top_level", 1.0),
        ("_dd.measured", 1.0),
        ("process_id", f64::from(std::process::id())),
    ] {
        assert_eq!(span["metrics"][key], value, "metrics {key}");
    }

    for payload in agent.payloads() {
        assert_eq!(payload.path, "/v0.4/traces");
        assert_eq!(
            header(&payload.headers, "content-type"),
            "application/msgpack"
        );
        assert_eq!(
            header(&payload.headers, "x-datadog-trace-count"),
            payload.traces.len().to_string()
        );
        assert_eq!(header(&payload.headers, "datadog-meta-lang"), "rust");
        assert!(payload.headers.contains_key("datadog-meta-tracer-version"));
        assert!(payload.traces.iter().all(|trace| trace.len() == 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_in_payloads_of_2000_at_most_and_none_is_lost_at_the_end() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    let summary = load(
        &url,
        &[
            "-n",
            "4500",
            "-c",
            "8",
            "--trace-agent",
            &agent.url,
            "--mix",
            "/a",
        ],
    )
    .await;
    assert_eq!(
        summary.spans.unwrap().counts,
        SpanCounts {
            sent: 4500,
            lost: 0
        }
    );
    let sizes: Vec<usize> = agent.payloads().iter().map(|p| p.traces.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 4500);
    assert!(sizes.iter().all(|&n| (1..=2000).contains(&n)), "{sizes:?}");
    let ids: HashSet<u64> = agent
        .spans()
        .iter()
        .map(|s| s["trace_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4500, "each span once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_leave_in_one_batch_a_second_while_the_load_runs() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    let started = Instant::now();
    let summary = load(
        &url,
        &[
            "--rate",
            "100",
            "-d",
            "2500ms",
            "-c",
            "2",
            "--trace-agent",
            &agent.url,
            "--mix",
            "/a",
        ],
    )
    .await;
    let load_ended = started + Duration::from_secs_f64(summary.elapsed_s);
    let payloads = agent.payloads();
    let total: usize = payloads.iter().map(|p| p.traces.len()).sum();
    assert_eq!(total as u64, summary.overall.requests);
    // About a second's spans per payload (not one per tick), the first well before the load ends.
    assert!(
        (2..=4).contains(&payloads.len()),
        "{} payloads",
        payloads.len()
    );
    assert!(
        payloads[0].arrived < load_ended,
        "spans flow during the load"
    );
    assert!(
        payloads[0].traces.len() >= 50,
        "{}",
        payloads[0].traces.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_span_is_the_request_as_loadgen_timed_it() {
    let delay = Duration::from_millis(30);
    let (url, seen) = serve(Behaviour { delay, stall: None }).await;
    let agent = Agent::start(Answer::Accept).await;
    let summary = load(
        &url,
        &[
            "-n",
            "8",
            "-c",
            "2",
            "--trace-agent",
            &agent.url,
            "--mix",
            "/a",
        ],
    )
    .await;
    let spans = agent.spans();
    let seen = seen.lock().unwrap();
    for ((_, headers, _), arrived) in seen.requests.iter().zip(&seen.arrived) {
        let span = span_of(
            &spans,
            header(headers, "x-datadog-trace-id").parse().unwrap(),
        );
        let start = UNIX_EPOCH + Duration::from_nanos(span["start"].as_u64().unwrap());
        let duration = Duration::from_nanos(span["duration"].as_u64().unwrap());
        assert!(duration >= delay, "{duration:?}");
        assert!(
            start <= *arrived && *arrived <= start + duration,
            "the server saw the request within the client span"
        );
    }
    // The slowest request's latency in the summary is its span's duration (to the microsecond).
    let slowest = &summary.paths[0].slowest.as_ref().unwrap()[0];
    let low: u64 = slowest.trace_id_64.parse().unwrap();
    let duration = span_of(&spans, low)["duration"].as_u64().unwrap();
    assert_eq!(slowest.latency_ms, (duration / 1000) as f64 / 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_an_error_span_with_its_status() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    load(
        &url,
        &[
            "-n",
            "10",
            "-c",
            "1",
            "--trace-agent",
            &agent.url,
            "--mix",
            "/fail",
        ],
    )
    .await;
    let spans = agent.spans();
    assert_eq!(spans.len(), 10);
    for span in &spans {
        assert_eq!(span["error"], 1);
        assert_eq!(meta(span, "http.status_code"), "500");
        assert_eq!(meta(span, "error.type"), "500");
        assert_eq!(meta(span, "error.message"), "500 Internal Server Error");
    }
}

/// A target that answers one request and is gone: it takes loadgen's check that it is up and the
/// first request's connection, stops listening, and only then answers (closing the connection), so
/// every request after that fails to connect. Stopping at the check itself would race loadgen's
/// first connection, which nothing orders after the listener's close.
async fn gone_after_one_answer() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _check = listener.accept().await.unwrap();
        let (mut first, _) = listener.accept().await.unwrap();
        drop(listener);
        if read_head(&mut first).await.is_some() {
            let _ = first.write_all(OK_THEN_CLOSE).await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_no_answer_is_an_error_span_of_its_kind() {
    // The connection is closed at once (io), never answered (timeout), or not opened (connect).
    let hang_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_up_url = format!("http://{}", hang_up.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = hang_up.accept().await {
            drop(socket);
        }
    });
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let gone_url = gone_after_one_answer().await;

    // Four requests without an answer each; the gone target answers one before them.
    for (url, extra, kind, message, answered) in [
        (&hang_up_url, None, "io", "the connection broke", 0),
        (&silent_url, Some("200ms"), "timeout", "--timeout", 0),
        (&gone_url, None, "connect", "could not be opened", 1),
    ] {
        let agent = Agent::start(Answer::Accept).await;
        let requests = (4 + answered).to_string();
        let mut args = vec![
            "-n",
            &requests,
            "-c",
            "1",
            "--mix",
            "/a",
            "--trace-agent",
            &agent.url,
        ];
        if let Some(timeout) = extra {
            args.extend(["--timeout", timeout]);
        }
        let summary = load(url, &args).await;
        assert_eq!(summary.overall.errors, 4, "{kind}");
        let spans = agent.spans();
        assert_eq!(
            spans.len(),
            4 + answered,
            "{kind}: a span for every request, answered or not"
        );
        let failed: Vec<_> = spans.iter().filter(|span| span["error"] == 1).collect();
        assert_eq!(failed.len(), 4, "{kind}");
        for span in failed {
            assert_eq!(meta(span, "error.type"), kind);
            assert!(meta(span, "error.message").contains(message), "{span}");
            assert!(
                span["meta"].get("http.status_code").is_none(),
                "no answer, no status"
            );
        }
        // The summary names them: each a span the agent got.
        let failed = summary.paths[0].failed.clone().unwrap();
        assert_eq!(failed.len(), 3, "{kind}: the first three of four");
        for trace in &failed {
            assert_eq!((trace.status, trace.error), (None, Some(kind)));
            span_of(&spans, trace.trace_id_64.parse().unwrap());
        }
    }
}

#[test]
fn an_agent_that_is_down_costs_a_warning_and_the_lost_count() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, seen) = runtime.block_on(serve(Behaviour::default()));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let agent = format!("http://{closed}");
    let started = Instant::now();
    let output = loadgen(&[
        &url,
        "-n",
        "300",
        "-c",
        "2",
        "--trace-agent",
        &agent,
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (json["requests"].as_u64(), json["errors"].as_u64()),
        (Some(300), Some(0))
    );
    assert_eq!(
        seen.lock().unwrap().requests.len(),
        300,
        "the load was sent whole"
    );
    assert_eq!(json["spans"]["sent"], 0);
    assert_eq!(json["spans"]["lost"], 300);
    assert_eq!(json["spans"]["agent"], format!("{agent}/"));
    assert_eq!(
        stderr.matches("warning").count(),
        1,
        "one warning, naming the agent: {stderr}"
    );
    assert!(
        stderr.contains(&format!("trace agent at {agent}/")),
        "{stderr}"
    );
    assert!(
        stderr.contains("spans: 0 sent to the trace agent"),
        "{stderr}"
    );
    assert!(stderr.contains("300 lost"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_hangs_never_holds_a_request() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Hang).await;
    let started = Instant::now();
    let summary = load(
        &url,
        &[
            "--rate",
            "200",
            "-d",
            "1500ms",
            "-c",
            "4",
            "--trace-agent",
            &agent.url,
        ],
    )
    .await;
    let took = started.elapsed();
    // The load runs on schedule; the last posts give up after their timeout (2 s each).
    assert!(
        (1.4..1.8).contains(&summary.elapsed_s),
        "{}",
        summary.elapsed_s
    );
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert!(
        summary.overall.latency_ms.p99 < 100.0,
        "{:?}",
        summary.overall.latency_ms
    );
    let counts = summary.spans.unwrap().counts;
    assert_eq!(counts.sent, 0);
    assert_eq!(counts.lost, summary.overall.requests);
}

/// An agent that answers each payload and then closes the connection without saying so (no
/// `connection: close`), as agents and proxies close idle keep-alive connections; returns its URL
/// and the number of spans it has taken.
async fn closing_agent() -> (String, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(AtomicUsize::new(0));
    let taken = spans.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // The head, then as many body bytes as its content-length says.
            let (mut request, body_at) = read_head(&mut socket).await.expect("a payload");
            let mut buffer = [0; 65536];
            let head = String::from_utf8_lossy(&request[..body_at]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            while request.len() < body_at + length {
                let n = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
            }
            let payload = rmpv::decode::read_value(&mut &request[body_at..]).unwrap();
            taken.fetch_add(payload.as_array().unwrap().len(), Ordering::SeqCst);
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            // Closed here, without notice.
        }
    });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_closing_idle_connections_loses_no_span() {
    let (url, _) = serve(Behaviour::default()).await;
    let (agent, taken) = closing_agent().await;
    let summary = load(
        &url,
        &[
            "--rate",
            "100",
            "-d",
            "2500ms",
            "-c",
            "2",
            "--trace-agent",
            &agent,
            "--mix",
            "/a",
        ],
    )
    .await;
    // The second payload finds its kept connection closed, and goes again on a new one.
    let requests = summary.overall.requests;
    assert_eq!(
        summary.spans.unwrap().counts,
        SpanCounts {
            sent: requests,
            lost: 0
        }
    );
    assert_eq!(taken.load(Ordering::SeqCst) as u64, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_refuses_payloads_loses_them_and_the_count_says_so() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Refuse(StatusCode::SERVICE_UNAVAILABLE)).await;
    let summary = load(&url, &["-n", "50", "-c", "2", "--trace-agent", &agent.url]).await;
    assert_eq!(summary.overall.errors, 0);
    assert_eq!(
        summary.spans.unwrap().counts,
        SpanCounts { sent: 0, lost: 50 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_names_the_slowest_and_first_failed_traces_the_agent_got() {
    let (url, _) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    let summary = load(
        &url,
        &[
            "-n",
            "60",
            "-c",
            "3",
            "--trace-agent",
            &agent.url,
            "--mix",
            "/slow/{1..40}=3,/fail=1",
        ],
    )
    .await;
    let spans = agent.spans();
    let duration = |low: u64| span_of(&spans, low)["duration"].as_u64().unwrap();

    let slow = &summary.paths[0];
    let listed = slow.slowest.as_ref().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(slow.failed.as_ref().unwrap().is_empty(), "nothing failed");
    let mut durations: Vec<u64> = spans
        .iter()
        .filter(|s| s["resource"] == "GET /slow/{id}")
        .map(|s| s["duration"].as_u64().unwrap())
        .collect();
    durations.sort_unstable_by(|a, b| b.cmp(a));
    let named: Vec<u64> = listed
        .iter()
        .map(|t| duration(t.trace_id_64.parse().unwrap()))
        .collect();
    assert_eq!(
        named,
        durations[..5],
        "the five slowest spans, slowest first"
    );
    for trace in listed {
        let low: u64 = trace.trace_id_64.parse().unwrap();
        let span = span_of(&spans, low);
        assert_eq!(
            trace.trace_id,
            format!("{}{low:016x}", meta(span, "_dd.p.tid"))
        );
        assert_eq!((trace.status, trace.error), (Some(200), None));
    }

    let fail = &summary.paths[1];
    let failed = fail.failed.as_ref().unwrap();
    assert_eq!(failed.len(), 3, "a few failed ones");
    for trace in failed {
        let span = span_of(&spans, trace.trace_id_64.parse().unwrap());
        assert_eq!(span["error"], 1);
        assert_eq!((trace.status, trace.error), (Some(500), Some("status")));
    }

    // The table names them too, both ids of each.
    let table = summary.table();
    for trace in listed.iter().chain(failed) {
        let line = table
            .lines()
            .find(|l| l.contains(&trace.trace_id))
            .unwrap_or_else(|| panic!("{} in\n{table}", trace.trace_id));
        assert!(line.contains(&trace.trace_id_64), "{line}");
    }
}

#[test]
fn the_json_summary_names_traces_and_spans_in_the_documented_shape() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, _) = runtime.block_on(serve(Behaviour::default()));
    let agent = runtime.block_on(Agent::start(Answer::Accept));
    let output = loadgen(&[
        &url,
        "-n",
        "20",
        "-c",
        "1",
        "--mix",
        "/a,/fail",
        "--trace-agent",
        &agent.url,
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["spans"]["sent"], 20);
    assert_eq!(json["spans"]["lost"], 0);
    assert!(
        json.get("slowest").is_none() && json.get("failed").is_none(),
        "per entry only"
    );
    let ok = &json["paths"][0];
    let trace = &ok["slowest"][0];
    let hex = trace["trace_id"].as_str().unwrap();
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let low = trace["trace_id_64"]
        .as_str()
        .expect("a string: JSON numbers lose 64-bit ids");
    assert_eq!(
        u64::from_str_radix(&hex[16..], 16).unwrap().to_string(),
        low
    );
    assert!(trace["latency_ms"].is_number());
    assert_eq!(trace["status"], 200);
    assert!(trace.get("error").is_none(), "a success has no error");
    assert_eq!(ok["failed"], Value::Array(vec![]));
    let failed = &json["paths"][1]["failed"][0];
    assert_eq!(
        (&failed["status"], &failed["error"]),
        (&500.into(), &"status".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headers_follow_trace_headers_with_an_agent_too() {
    let (url, seen) = serve(Behaviour::default()).await;
    for (format, datadog, w3c) in [
        ("datadog", true, false),
        ("w3c", false, true),
        ("none", false, false),
    ] {
        let agent = Agent::start(Answer::Accept).await;
        load(
            &url,
            &[
                "-n",
                "5",
                "-c",
                "1",
                "--trace-agent",
                &agent.url,
                "--trace-headers",
                format,
            ],
        )
        .await;
        assert_eq!(
            agent.spans().len(),
            5,
            "{format}: the spans are reported whatever the headers"
        );
        let headers = std::mem::take(&mut seen.lock().unwrap().headers);
        assert!(
            headers
                .iter()
                .all(|h| h.contains_key("x-datadog-trace-id") == datadog),
            "{format}"
        );
        assert!(
            headers.iter().all(|h| h.contains_key("traceparent") == w3c),
            "{format}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_agent_the_headers_name_made_up_traces_as_before() {
    let (url, seen) = serve(Behaviour::default()).await;
    let summary = load(&url, &["-n", "20", "-c", "2", "--trace-headers", "datadog"]).await;
    assert!(summary.spans.is_none());
    let headers = std::mem::take(&mut seen.lock().unwrap().headers);
    let sent: HashSet<String> = headers
        .iter()
        .map(|h| header(h, "x-datadog-trace-id"))
        .collect();
    assert!(
        headers.iter().all(|h| !h.contains_key("x-datadog-tags")),
        "64-bit ids, as before"
    );
    assert!(sent.iter().all(|id| id.parse::<u64>().unwrap() < 1 << 63));
    // The summary names the traces the service continued: ids that were sent.
    let named = summary.paths[0].slowest.as_ref().unwrap();
    assert_eq!(named.len(), 5);
    assert!(named.iter().all(|t| sent.contains(&t.trace_id_64)));

    let summary = load(&url, &["-n", "20", "-c", "2"]).await;
    assert!(
        summary.paths[0].slowest.as_ref().unwrap().is_empty(),
        "no trace, no id"
    );
    assert!(
        !summary.table().contains("traces to open"),
        "{}",
        summary.table()
    );

    // A request that never left named no trace: no span of loadgen's, none of the service's. The
    // one answered before the target was gone is named, the three that could not connect are not.
    let gone = gone_after_one_answer().await;
    let summary = load(
        &gone,
        &[
            "-n",
            "4",
            "-c",
            "1",
            "--mix",
            "/a",
            "--trace-headers",
            "w3c",
        ],
    )
    .await;
    assert_eq!(summary.overall.error_kinds["connect"], 3);
    assert_eq!(summary.overall.errors, 3);
    assert!(summary.paths[0].failed.as_ref().unwrap().is_empty());
    assert_eq!(summary.paths[0].slowest.as_ref().unwrap().len(), 1);
}

#[test]
fn dd_service_env_and_version_name_loadgens_spans() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, _) = runtime.block_on(serve(Behaviour::default()));
    let agent = runtime.block_on(Agent::start(Answer::Accept));
    let env = [
        ("DD_SERVICE", "load"),
        ("DD_ENV", "demo"),
        ("DD_VERSION", "7"),
        ("LOADGEN_TRACE_AGENT", &agent.url),
    ];
    let output = loadgen_with(&[&url, "-n", "3"], &env);
    assert!(output.status.success(), "{output:?}");
    let spans = agent.spans();
    assert_eq!(spans.len(), 3);
    assert!(
        spans.iter().all(|s| s["service"] == "load"
            && meta(s, "env") == "demo"
            && meta(s, "version") == "7")
    );

    let agent = runtime.block_on(Agent::start(Answer::Accept));
    let output = loadgen_with(
        &[&url, "-n", "2", "--dd-service", "flagged"],
        &[("LOADGEN_TRACE_AGENT", &agent.url)],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(agent.spans().iter().all(|s| s["service"] == "flagged"));
    // An empty agent variable is no agent, as Datadog's tracers read theirs.
    let output = loadgen_with(&[&url, "-n", "2", "--json"], &[("LOADGEN_TRACE_AGENT", "")]);
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json.get("spans").is_none());
}

#[test]
fn a_trace_agent_that_is_no_http_url_is_refused_naming_the_flag() {
    for agent in [
        "not a url",
        "unix:///var/run/datadog/apm.socket",
        "https://agent:8126",
        "http://",
    ] {
        let output = loadgen(&["http://127.0.0.1:1", "-n", "1", "--trace-agent", agent]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{agent}: {stderr}");
        assert!(stderr.contains("--trace-agent"), "{agent}: {stderr}");
        assert!(!stderr.contains("panicked"), "{agent}: {stderr}");
    }
    let output = loadgen(&[
        "http://127.0.0.1:1",
        "--trace-agent",
        "http://127.0.0.1:1",
        "--dd-service",
        " ",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dd-service"));
}

/// A 60 s run at 200/s, sent `signal` after 1.5 s: it stops at once, with the summary of what it
/// sent and every span delivered; its stderr and how it ended.
async fn stopped_by(signal: &str) -> (String, std::process::ExitStatus) {
    let (url, seen) = serve(Behaviour::default()).await;
    let agent = Agent::start(Answer::Accept).await;
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .args([
            &url,
            "--rate",
            "200",
            "-d",
            "60s",
            "-c",
            "4",
            "--trace-agent",
            &agent.url,
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped at once, not after its 60 s: {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("stopping early"), "{stderr}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let requests = json["requests"].as_u64().unwrap();
    assert!(
        (100..2000).contains(&requests),
        "about 1.5 s at 200/s: {requests}"
    );
    assert_eq!(
        seen.lock().unwrap().requests.len() as u64,
        requests,
        "the summary counts every request sent"
    );
    assert_eq!(json["spans"]["sent"].as_u64(), Some(requests), "{json}");
    assert_eq!(json["spans"]["lost"].as_u64(), Some(0), "{json}");
    assert_eq!(agent.spans().len() as u64, requests);
    (stderr, output.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_run_with_its_summary_and_every_span_sent() {
    let (stderr, status) = stopped_by("-TERM").await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Ctrl-C ends the run the same way, and then the process by SIGINT, so that a shell script
/// running loadgen stops too (bash carries on after a child that exits 0).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_run_with_its_summary_and_then_the_process_by_sigint() {
    use std::os::unix::process::ExitStatusExt;
    let (stderr, status) = stopped_by("-INT").await;
    assert_eq!(status.signal(), Some(2), "{status:?}: {stderr}");
}
