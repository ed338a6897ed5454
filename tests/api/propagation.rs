//! Distributed tracing: a caller's trace headers continue its trace; bad headers never fail a request.

use reqwest::Method;

use crate::agent::{AgentSpan, Behaviour, TestAgent};
use crate::helpers::spawn_app;

/// Sends one request with `headers` and returns its status and the spans the agent got.
async fn traced(headers: &[(&str, &str)]) -> (u16, Vec<AgentSpan>) {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    let status = app
        .request(Method::GET, "/api/trace", headers)
        .await
        .status()
        .as_u16();
    app.stop_and_flush().await;
    (status, agent.spans())
}

#[tokio::test]
async fn datadog_headers_continue_the_callers_trace() {
    let (status, spans) = traced(&[
        ("x-datadog-trace-id", "12345"),
        ("x-datadog-parent-id", "67890"),
        ("x-datadog-sampling-priority", "1"),
        ("x-datadog-origin", "synthetics"),
    ])
    .await;
    assert_eq!(status, 200);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, 12345);
    assert_eq!(spans[0].parent_id, 67890);
    assert_eq!(
        spans[0].meta.get("_dd.origin").map(String::as_str),
        Some("synthetics")
    );
}

#[tokio::test]
async fn datadog_ids_without_priority_are_kept() {
    // The OpenTelemetry parent-based sampler would drop these; Datadog's tracers keep them.
    let (_, spans) = traced(&[
        ("x-datadog-trace-id", "12345"),
        ("x-datadog-parent-id", "67890"),
    ])
    .await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, 12345);
    assert_eq!(spans[0].parent_id, 67890);
}

#[tokio::test]
async fn priority_zero_is_honoured_by_dropping_the_trace() {
    let (status, spans) = traced(&[
        ("x-datadog-trace-id", "12345"),
        ("x-datadog-parent-id", "67890"),
        ("x-datadog-sampling-priority", "0"),
    ])
    .await;
    assert_eq!(status, 200);
    assert!(spans.is_empty(), "{spans:?}");
}

#[tokio::test]
async fn user_keep_priority_is_kept() {
    let (_, spans) = traced(&[
        ("x-datadog-trace-id", "5"),
        ("x-datadog-parent-id", "6"),
        ("x-datadog-sampling-priority", "2"),
    ])
    .await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, 5);
}

#[tokio::test]
async fn w3c_traceparent_continues_the_trace_with_the_high_bits_in_dd_p_tid() {
    let (_, spans) = traced(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )])
    .await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, 0xa3ce929d0e0e4736);
    assert_eq!(spans[0].parent_id, 0x00f067aa0ba902b7);
    assert_eq!(
        spans[0].meta.get("_dd.p.tid").map(String::as_str),
        Some("4bf92f3577b34da6") // pragma: allowlist secret (a W3C example trace id)
    );
}

#[tokio::test]
async fn w3c_unsampled_flag_is_honoured() {
    let (status, spans) = traced(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )])
    .await;
    assert_eq!(status, 200);
    assert!(spans.is_empty());
}

#[tokio::test]
async fn malformed_headers_start_a_fresh_trace_and_the_request_succeeds() {
    let huge = "9".repeat(4000);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("x-datadog-trace-id", "not-a-number"),
            ("x-datadog-parent-id", "1"),
        ],
        vec![
            ("x-datadog-trace-id", "99999999999999999999999"),
            ("x-datadog-parent-id", "1"),
        ],
        vec![("x-datadog-trace-id", &huge), ("x-datadog-parent-id", "1")],
        vec![
            ("x-datadog-trace-id", "12345"),
            ("x-datadog-parent-id", "junk"),
        ],
        vec![("traceparent", "00-xyz-00f067aa0ba902b7-01")],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-0000000000000000-01",
        )],
    ];
    for headers in cases {
        let (status, spans) = traced(&headers).await;
        assert_eq!(status, 200, "{headers:?}");
        assert_eq!(spans.len(), 1, "{headers:?}");
        assert_eq!(spans[0].parent_id, 0, "a fresh trace for {headers:?}");
        assert_ne!(spans[0].trace_id, 12345);
    }
}
