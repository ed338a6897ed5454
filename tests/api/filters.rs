//! What each layer lets through: only the request span reaches the agent; RUST_LOG decides which lines
//! are written, except that the request span always passes, so lines inside a request keep its ids.

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::{TestApp, serve_traced, spawn_app};
use apm_demo::telemetry::contract::server::SPAN_TARGET;

/// Serves one route whose handler runs `work` in `app`'s trace layer, calls it once, and returns the
/// body.
async fn call_handler(app: &TestApp, work: fn()) -> String {
    let url = serve_traced(
        app,
        axum::Router::new().route(
            "/work",
            axum::routing::get(move || async move {
                work();
                "done"
            }),
        ),
    )
    .await;
    reqwest::get(format!("{url}/work"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_the_request_span_reaches_the_agent_not_a_handlers_own_spans() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    let body = call_handler(&app, || {
        tracing::info_span!(target: "handler", "inner work").in_scope(|| {
            tracing::info!(target: "handler", "working");
        });
    })
    .await;
    assert_eq!(body, "done");
    app.stop_and_flush().await;
    let names: Vec<String> = agent.spans().into_iter().map(|s| s.resource).collect();
    assert_eq!(names, ["GET /work"]);
}

#[tokio::test]
async fn a_warning_inside_a_request_carries_its_ids_when_rust_log_hides_info() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &["--rust-log", "warn"]).await;
    call_handler(&app, || tracing::warn!(target: "handler", "slow")).await;
    app.stop_and_flush().await;
    let spans = agent.spans();
    assert_eq!(spans.len(), 1);
    let lines = app.json_logs();
    let warning = lines
        .iter()
        .find(|l| l["message"] == "slow")
        .unwrap_or_else(|| panic!("the warning is written: {lines:#?}"));
    assert_eq!(warning["dd.trace_id"], spans[0].trace_id.to_string());
    assert_eq!(warning["dd.span_id"], spans[0].span_id.to_string());
    assert!(
        lines.iter().all(|l| l["level"] != "INFO"),
        "no info line at warn: {lines:#?}"
    );
}

#[tokio::test]
async fn rust_log_still_filters_events_of_the_request_spans_target() {
    // The exception RUST_LOG makes is for the request span, not for events that share its target.
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &["--rust-log", "warn"]).await;
    call_handler(&app, || {
        tracing::info!(target: SPAN_TARGET, "chatter");
        tracing::warn!(target: SPAN_TARGET, "news");
    })
    .await;
    app.stop_and_flush().await;
    let messages: Vec<String> = app
        .json_logs()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect();
    assert!(messages.iter().any(|m| m == "news"), "{messages:?}");
    assert!(!messages.iter().any(|m| m == "chatter"), "{messages:?}");
}
