//! Conformance: the release binary against Datadog's own test agent (`ddapm-test-agent`, PyPI).
//!
//! Every row of the span contract (docs/service.md#the-span-contract) is asserted on what the test
//! agent received, the test agent's own trace checks must report no failure, the access-log lines
//! must carry the ids of the spans received, and SIGTERM right after a burst must still deliver every
//! span. Run by `make test` once per exporter (`TRACE_EXPORTER=... cargo test --release --features
//! conformance --test conformance`), which installs the test agent into `.venv`; `DDAPM_TEST_AGENT`
//! names another executable. Where the two exporters send something differently, the test says
//! which sends what (docs/service.md#which-exporter says why).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::ddapm::DatadogTestAgent;
use common::service::{Exporter, Service, client, free_port};
use serde_json::Value;

fn meta<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["meta"].get(key).and_then(Value::as_str)
}

fn user_agent_is(agent: &str) -> impl Fn(&Value) -> bool + '_ {
    move |span| meta(span, "http.useragent") == Some(agent)
}

/// Asserts the rows of the span contract that every request span satisfies.
fn assert_common_contract(span: &Value, case: &str) {
    assert_eq!(span["service"], "apm-demo-conformance", "{case}: service");
    assert_eq!(
        span["name"], "http.server.request",
        "{case}: operation name"
    );
    assert_eq!(span["type"], "web", "{case}: type");
    assert_eq!(meta(span, "span.kind"), Some("server"), "{case}: span.kind");
    assert_eq!(meta(span, "component"), Some("axum"), "{case}: component");
    assert_eq!(meta(span, "env"), Some("ci"), "{case}: env");
    assert_eq!(meta(span, "version"), Some("9.9.9"), "{case}: version");
    assert_eq!(meta(span, "language"), Some("rust"), "{case}: language");
    let priority =
        if case == "manual-keep" && Exporter::from_env() == Exporter::DatadogOpentelemetry {
            // The caller's manual keep, kept as such; opentelemetry-datadog writes 1 for every kept span.
            2.0
        } else {
            1.0
        };
    assert_eq!(
        span["metrics"]["_sampling_priority_v1"], priority,
        "{case}: sampling priority"
    );
    assert!(
        meta(span, "http.url").is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{case}: http.url"
    );
    assert!(span["trace_id"].as_u64().unwrap() > 0 && span["span_id"].as_u64().unwrap() > 0);
    assert!(span["duration"].as_i64().unwrap() > 0, "{case}: duration");
}

/// One request of the contract scenario and what its span must say.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    resource: &'static str,
    route: Option<&'static str>,
}

#[test]
fn span_contract_holds_for_every_scenario() {
    let agent = DatadogTestAgent::start();
    let mut service = Service::start(&agent.url, &[]);

    let case = |name, method, path, headers, status, resource, route| Case {
        name,
        method,
        path,
        headers,
        status,
        resource,
        route,
    };
    let cases = [
        case("root", "GET", "/", &[], 200, "GET /", Some("/")),
        case(
            "apm",
            "GET",
            "/api/apm",
            &[],
            200,
            "GET /api/apm",
            Some("/api/apm"),
        ),
        case(
            "trace",
            "GET",
            "/api/trace",
            &[],
            200,
            "GET /api/trace",
            Some("/api/trace"),
        ),
        case(
            "unmatched",
            "GET",
            "/no/such/page",
            &[],
            404,
            "GET 404",
            None,
        ),
        case(
            "wrong-method",
            "POST",
            "/api/apm",
            &[],
            405,
            "POST /api/apm",
            Some("/api/apm"),
        ),
        case(
            "datadog-headers",
            "GET",
            "/api/trace",
            &[
                ("x-datadog-trace-id", "12345"),
                ("x-datadog-parent-id", "67890"),
                ("x-datadog-sampling-priority", "1"),
                ("x-datadog-origin", "synthetics"),
            ],
            200,
            "GET /api/trace",
            Some("/api/trace"),
        ),
        case(
            "manual-keep",
            "GET",
            "/api/trace",
            &[
                ("x-datadog-trace-id", "777"),
                ("x-datadog-parent-id", "888"),
                ("x-datadog-sampling-priority", "2"),
                ("x-datadog-tags", "_dd.p.dm=-4"),
            ],
            200,
            "GET /api/trace",
            Some("/api/trace"),
        ),
        case(
            "datadog-no-priority",
            "GET",
            "/api/apm",
            &[
                ("x-datadog-trace-id", "555"),
                ("x-datadog-parent-id", "666"),
            ],
            200,
            "GET /api/apm",
            Some("/api/apm"),
        ),
        case(
            "traceparent",
            "GET",
            "/",
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            200,
            "GET /",
            Some("/"),
        ),
        case(
            "malformed",
            "GET",
            "/api/apm",
            &[
                ("x-datadog-trace-id", "12ab"),
                ("x-datadog-parent-id", "-1"),
                ("traceparent", "00-zz-yy-01"),
            ],
            200,
            "GET /api/apm",
            Some("/api/apm"),
        ),
    ];
    for case in &cases {
        let user_agent = format!("conformance/{}", case.name);
        let mut headers = case.headers.to_vec();
        headers.push(("user-agent", &user_agent));
        let response = service.send(case.method, case.path, &headers);
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
    }

    let spans = agent.wait_for(cases.len(), |span| {
        meta(span, "http.useragent").is_some_and(|ua| ua.starts_with("conformance/"))
    });
    let by_case: HashMap<String, &Value> = spans
        .iter()
        .map(|span| {
            (
                meta(span, "http.useragent")
                    .unwrap()
                    .trim_start_matches("conformance/")
                    .to_owned(),
                span,
            )
        })
        .collect();
    assert_eq!(spans.len(), cases.len(), "one span per request: {spans:#?}");

    for Case {
        name,
        method,
        status,
        resource,
        route,
        ..
    } in &cases
    {
        let span = by_case
            .get(*name)
            .unwrap_or_else(|| panic!("no span for {name}"));
        assert_common_contract(span, name);
        assert_eq!(span["resource"], *resource, "{name}: resource");
        assert_eq!(
            meta(span, "http.method"),
            Some(*method),
            "{name}: http.method"
        );
        assert_eq!(meta(span, "http.route"), *route, "{name}: http.route");
        assert_eq!(
            meta(span, "http.status_code"),
            Some(status.to_string().as_str()),
            "{name}: status"
        );
        assert_eq!(span["error"], 0, "{name}: no 5xx, no error");
    }

    let continued = by_case["datadog-headers"];
    assert_eq!(continued["trace_id"], 12345);
    assert_eq!(continued["parent_id"], 67890);
    assert_eq!(meta(continued, "_dd.origin"), Some("synthetics"));
    let no_priority = by_case["datadog-no-priority"];
    assert_eq!(
        (
            no_priority["trace_id"].as_u64(),
            no_priority["parent_id"].as_u64()
        ),
        (Some(555), Some(666))
    );
    let manual = by_case["manual-keep"];
    assert_eq!(
        meta(manual, "_dd.p.dm"),
        Some("-4"),
        "the caller's decision maker"
    );
    let w3c = by_case["traceparent"];
    assert_eq!(w3c["trace_id"].as_u64(), Some(0xa3ce929d0e0e4736));
    assert_eq!(w3c["parent_id"].as_u64(), Some(0x00f067aa0ba902b7));
    assert_eq!(
        Exporter::from_env().trace_id_high(w3c),
        Some("4bf92f3577b34da6") // pragma: allowlist secret (a W3C example trace id)
    );
    for fresh in ["root", "apm", "unmatched", "malformed"] {
        assert_eq!(by_case[fresh]["parent_id"], 0, "{fresh} starts a trace");
    }

    assert_eq!(
        agent.check_failures(),
        (200, "200: OK".to_owned()),
        "the test agent's trace checks"
    );

    // Logs: one access line per request, with the ids of the span the agent received.
    assert!(service.terminate().success());
    let access: Vec<Value> = service
        .json_lines()
        .into_iter()
        .filter(|line| line["logger.name"] == "apm_demo::access")
        .collect();
    assert_eq!(access.len(), cases.len(), "one access-log line per request");
    for line in &access {
        let ids = (
            line["dd.trace_id"].as_str().unwrap(),
            line["dd.span_id"].as_str().unwrap(),
        );
        let matching = spans
            .iter()
            .filter(|s| {
                (s["trace_id"].to_string(), s["span_id"].to_string())
                    == (ids.0.to_owned(), ids.1.to_owned())
            })
            .count();
        assert_eq!(matching, 1, "the span of {line}");
        assert_eq!(line["dd.service"], "apm-demo-conformance");
        assert_eq!(line["dd.env"], "ci");
        assert_eq!(line["dd.version"], "9.9.9");
    }
}

/// The verdict above can fail: a payload whose trace count header lies is caught.
#[test]
fn test_agent_checks_catch_a_bad_payload() {
    let agent = DatadogTestAgent::start();
    let empty_v05 = vec![0x92, 0x90, 0x90]; // msgpack [[], []]: no strings, no traces
    let response = client()
        .post(format!("{}/v0.5/traces", agent.url))
        .header("Content-Type", "application/msgpack")
        .header("Datadog-Meta-Tracer-Version", "0.20.1")
        .header("X-Datadog-Trace-Count", "3")
        .body(empty_v05)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, text) = agent.check_failures();
    assert_eq!(status, 400);
    assert!(text.contains("trace_count_header"), "{text}");
}

#[test]
fn sigterm_right_after_a_burst_still_delivers_every_span() {
    const REQUESTS: usize = 300;
    let agent = DatadogTestAgent::start();
    let mut service = Service::start(&agent.url, &[]);
    std::thread::scope(|scope| {
        for worker in 0..6 {
            let service = &service;
            scope.spawn(move || {
                for i in (worker..REQUESTS).step_by(6) {
                    let response = service.send("GET", "/api/apm", &[("user-agent", "burst")]);
                    assert_eq!(response.status(), 200, "request {i}");
                }
            });
        }
    });
    // No pause: the spans are still queued when the signal arrives.
    let status = service.terminate();
    assert!(status.success(), "exit status {status:?}");
    let spans = agent.wait_for(REQUESTS, user_agent_is("burst"));
    assert_eq!(
        spans.len(),
        REQUESTS,
        "every span of the burst reached the agent"
    );
    let stopped = service
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "stopped")
        .unwrap();
    // The default exporter's bounded queue counts what it sent; Datadog's counts in its own telemetry.
    if Exporter::from_env() == Exporter::OpentelemetryDatadog {
        assert_eq!(stopped["spans_exported"], REQUESTS as u64);
        assert_eq!(stopped["spans_dropped"], 0);
    }
    assert_eq!(agent.check_failures().0, 200);
}

#[test]
fn absent_agent_is_reported_once_and_never_fails_a_request() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut service = Service::start(&closed, &[]);
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut sent = 0;
    while Instant::now() < deadline {
        assert_eq!(service.send("GET", "/", &[]).status(), 200);
        sent += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(service.terminate().success());
    let lines = service.json_lines();
    match Exporter::from_env() {
        Exporter::OpentelemetryDatadog => {
            let reports = lines
                .iter()
                .filter(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("cannot send traces"))
                })
                .count();
            assert_eq!(
                reports, 1,
                "several export failures in under a minute make one report"
            );
            let stopped = lines.iter().find(|l| l["message"] == "stopped").unwrap();
            assert_eq!(
                stopped["spans_failed"], sent as u64,
                "every span was counted as lost"
            );
        }
        Exporter::DatadogOpentelemetry => {
            // Datadog's tracer says so in its own words, at each failed flush.
            assert!(
                lines
                    .iter()
                    .any(|l| l["level"] == "ERROR" && l["message"] == "Error sending traces"),
                "the failure is logged: {lines:#?}"
            );
        }
    }
}

/// `DD_TRACE_SAMPLE_RATE=0.5`: what each exporter lets the Agent know about 1,000 requests. Both keep
/// about half the traces. The default exporter sends only those, and nothing to scale them by, so
/// trace metrics computed from them count half the hits; Datadog's own exporter also computes stats
/// from every span before sampling and sends them, so the Agent counts every hit (docs/service.md
/// shows the figures).
#[test]
fn sampling_at_half_keeps_half_the_traces_and_only_datadogs_exporter_counts_every_hit() {
    const REQUESTS: usize = 1000;
    let agent = DatadogTestAgent::start();
    let mut service = Service::start(&agent.url, &[("DD_TRACE_SAMPLE_RATE", "0.5")]);
    // Paced well under the tracer's default rate limit (100 traces a second): the rate decides.
    let started = Instant::now();
    for i in 0..REQUESTS {
        let response = service.send("GET", "/api/apm", &[("user-agent", "sampled")]);
        assert_eq!(response.status(), 200, "request {i}");
        let due = started + Duration::from_millis(12 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    assert!(service.terminate().success());
    let spans = agent.wait_for(REQUESTS, user_agent_is("sampled"));
    let kept = spans
        .iter()
        .filter(|s| s["metrics"]["_sampling_priority_v1"].as_f64() > Some(0.0))
        .count();
    let hits = agent.stats_hits("GET /api/apm");
    eprintln!(
        "{}: {} spans received, {kept} kept, client-side stats count {hits} hits",
        Exporter::from_env().as_str(),
        spans.len()
    );
    // Half, give or take five standard deviations of a binomial(1000, 0.5) (16 each).
    assert!((420..=580).contains(&kept), "kept {kept} of {REQUESTS}");
    match Exporter::from_env() {
        Exporter::OpentelemetryDatadog => {
            assert_eq!(spans.len(), kept, "dropped traces are not sent");
            assert_eq!(hits, 0, "no client-side stats");
        }
        Exporter::DatadogOpentelemetry => {
            assert_eq!(
                hits, REQUESTS as u64,
                "every request counted before sampling"
            );
        }
    }
}
