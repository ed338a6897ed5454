//! What reaches the trace agent: the span contract (docs/service.md#the-span-contract), row by row.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::Method;

use crate::agent::{AgentSpan, Behaviour, TestAgent};
use crate::helpers::{spawn_app, spawn_app_serving};

async fn spans_for(requests: &[(Method, &str)]) -> (Vec<AgentSpan>, TestAgent) {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    for (method, path) in requests {
        app.request(method.clone(), path, &[("user-agent", "contract-test/1.0")])
            .await;
    }
    app.stop_and_flush().await;
    (agent.spans(), agent)
}

fn meta<'a>(span: &'a AgentSpan, key: &str) -> Option<&'a str> {
    span.meta.get(key).map(String::as_str)
}

#[tokio::test]
async fn every_request_becomes_one_span_with_the_contract() {
    let (spans, _agent) = spans_for(&[(Method::GET, "/api/apm")]).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span.service, "apm-demo-test");
    assert_eq!(span.name, "http.server.request");
    assert_eq!(span.resource, "GET /api/apm");
    assert_eq!(span.span_type, "web");
    assert_eq!(span.error, 0);
    assert_eq!(
        span.parent_id, 0,
        "a request without trace headers starts a trace"
    );
    assert_ne!(span.trace_id, 0);
    assert_ne!(span.span_id, 0);
    assert!(span.duration > 0);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now_ns - span.start) < 60_000_000_000,
        "start is nanoseconds since the epoch: {}",
        span.start
    );
    assert_eq!(meta(span, "http.method"), Some("GET"));
    assert_eq!(meta(span, "http.route"), Some("/api/apm"));
    let url = meta(span, "http.url").unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/api/apm"),
        "{url}"
    );
    assert_eq!(meta(span, "http.status_code"), Some("200"));
    assert_eq!(meta(span, "http.useragent"), Some("contract-test/1.0"));
    assert_eq!(meta(span, "span.kind"), Some("server"));
    assert_eq!(meta(span, "component"), Some("axum"));
    assert_eq!(meta(span, "env"), Some("test"));
    assert_eq!(meta(span, "version"), Some("1.2.3"));
    assert_eq!(meta(span, "language"), Some("rust"));
    assert_eq!(span.metrics.get("_sampling_priority_v1"), Some(&1.0));
    assert!(meta(span, "error.message").is_none());
    // Nothing else: every attribute of the span lands in meta, so an extra one would show here.
    let mut keys: Vec<&str> = span.meta.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "_dd.p.dm",
            "_dd.p.tid",
            "component",
            "env",
            "http.method",
            "http.route",
            "http.status_code",
            "http.url",
            "http.useragent",
            "language",
            "runtime-id",
            "service",
            "span.kind",
            "span.type",
            "version",
        ]
    );
}

/// `runtime-id` names the process to Datadog (it groups a process's spans and runtime metrics): 32
/// lowercase hex digits, as dd-trace-py writes it, the same on every span of one tracer, another for
/// the next one.
#[tokio::test]
async fn runtime_id_is_one_random_128_bit_id_per_tracer() {
    let (spans, _agent) = spans_for(&[(Method::GET, "/"), (Method::GET, "/api/apm")]).await;
    let (other, _agent) = spans_for(&[(Method::GET, "/")]).await;
    let id = meta(&spans[0], "runtime-id").expect("runtime-id");
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(meta(&spans[1], "runtime-id"), Some(id));
    assert_ne!(meta(&other[0], "runtime-id"), Some(id));
}

#[tokio::test]
async fn payload_is_v05_msgpack_with_datadog_headers() {
    let (_, agent) = spans_for(&[(Method::GET, "/")]).await;
    let payloads = agent.payloads();
    assert!(!payloads.is_empty());
    let headers = &payloads[0].headers;
    assert_eq!(headers["content-type"], "application/msgpack");
    assert_eq!(headers["datadog-meta-lang"], "rust");
    assert_eq!(
        headers["x-datadog-trace-count"],
        payloads[0].traces.to_string().as_str()
    );
}

#[tokio::test]
async fn unmatched_path_is_resource_get_404() {
    let (spans, _agent) = spans_for(&[(Method::GET, "/wp-admin/secret?x=1")]).await;
    let span = &spans[0];
    assert_eq!(span.resource, "GET 404");
    assert_eq!(span.error, 0, "a 404 is the client's error");
    assert_eq!(meta(span, "http.status_code"), Some("404"));
    assert!(meta(span, "http.route").is_none());
    assert!(
        !meta(span, "http.url").unwrap().contains('?'),
        "query strings stay out of spans"
    );
}

#[tokio::test]
async fn wrong_method_is_resource_method_route_with_405() {
    let (spans, _agent) = spans_for(&[(Method::POST, "/api/trace")]).await;
    assert_eq!(spans[0].resource, "POST /api/trace");
    assert_eq!(meta(&spans[0], "http.status_code"), Some("405"));
    assert_eq!(spans[0].error, 0);
}

#[tokio::test]
async fn three_routes_are_three_resources() {
    let (spans, _agent) = spans_for(&[
        (Method::GET, "/"),
        (Method::GET, "/api/apm"),
        (Method::GET, "/api/trace"),
    ])
    .await;
    let mut resources: Vec<_> = spans.iter().map(|s| s.resource.as_str()).collect();
    resources.sort();
    assert_eq!(resources, ["GET /", "GET /api/apm", "GET /api/trace"]);
    let trace_ids: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(trace_ids.len(), 3, "each request is its own trace");
}

/// The trace layer around a handler that fails, as any route of a larger service could.
#[tokio::test]
async fn server_error_marks_the_span_as_error() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let failing = Router::new()
        .route("/boom", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/panic",
            get(|| async {
                let index = std::hint::black_box(7);
                let slots = [0u8; 3];
                slots[index].to_string() // a handler's bug
            }),
        );
    let mut app = spawn_app_serving(&agent.url, &[], failing).await;
    assert_eq!(app.get("/boom").await.status(), 503);
    let panicked = app.get("/panic").await;
    assert_eq!(panicked.status(), 500);
    assert_eq!(
        panicked.text().await.unwrap(),
        "",
        "the client learns nothing of the panic"
    );
    // The service goes on serving on the same connection pool.
    assert_eq!(app.get("/boom").await.status(), 503);
    app.stop_and_flush().await;
    let spans = agent.spans();
    let boom = spans.iter().find(|s| s.resource == "GET /boom").unwrap();
    assert_eq!(boom.error, 1);
    assert_eq!(meta(boom, "error.message"), Some("503 Service Unavailable"));
    let panic = spans.iter().find(|s| s.resource == "GET /panic").unwrap();
    assert_eq!(panic.error, 1);
    assert_eq!(meta(panic, "http.status_code"), Some("500"));
    assert_eq!(meta(panic, "error.type"), Some("panic"));
    assert_eq!(
        meta(panic, "error.message"),
        Some("index out of bounds: the len is 3 but the index is 7")
    );
    // The panic's log line is inside the request: it carries the span's ids.
    let lines = app.json_logs();
    let line = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("the panic is logged: {lines:#?}"));
    assert_eq!(
        line["message"],
        "the handler panicked: index out of bounds: the len is 3 but the index is 7"
    );
    assert_eq!(line["dd.span_id"], panic.span_id.to_string());
}

#[tokio::test]
async fn tracing_disabled_exports_nothing_and_still_serves() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &["--dd-trace-enabled", "false"]).await;
    assert_eq!(app.get("/api/apm").await.status(), 200);
    app.stop_and_flush().await;
    std::thread::sleep(Duration::from_millis(200));
    assert!(agent.spans().is_empty());
}

#[tokio::test]
async fn failing_agent_costs_requests_nothing_and_is_counted() {
    let agent = TestAgent::start(Behaviour::Failing);
    let mut app = spawn_app(&agent.url, &[]).await;
    for _ in 0..20 {
        assert_eq!(app.get("/api/apm").await.status(), 200);
    }
    app.stop_and_flush().await;
    let counts = app.telemetry.export_counts().unwrap();
    assert_eq!(counts.queued, 20);
    assert_eq!(counts.failed, 20);
    assert_eq!(counts.exported, 0);
}

#[tokio::test]
async fn absent_agent_costs_requests_nothing() {
    // A port nothing listens on: bind one, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut app = spawn_app(&format!("http://{closed}"), &[]).await;
    for _ in 0..20 {
        assert_eq!(app.get("/").await.status(), 200);
    }
    app.stop_and_flush().await;
    assert_eq!(app.telemetry.export_counts().unwrap().failed, 20);
}
