//! Log lines: the Flask text format, and JSON that correlates with the exported spans.

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::{serve_traced, spawn_app};

#[tokio::test]
async fn json_access_log_carries_the_ids_the_agent_received() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    app.get("/api/apm").await;
    app.request(
        reqwest::Method::GET,
        "/",
        &[
            ("x-datadog-trace-id", "777"),
            ("x-datadog-parent-id", "888"),
        ],
    )
    .await;
    app.stop_and_flush().await;
    let spans = agent.spans();
    assert_eq!(spans.len(), 2);
    let access: Vec<_> = app
        .json_logs()
        .into_iter()
        .filter(|line| line["logger.name"] == "apm_demo::access")
        .collect();
    assert_eq!(access.len(), 2, "one access-log line per request");
    for line in &access {
        let trace_id: u64 = line["dd.trace_id"].as_str().unwrap().parse().unwrap();
        let span_id: u64 = line["dd.span_id"].as_str().unwrap().parse().unwrap();
        let span = spans
            .iter()
            .find(|s| s.trace_id == trace_id && s.span_id == span_id)
            .unwrap_or_else(|| panic!("no span with the ids of {line}"));
        assert_eq!(line["dd.service"], "apm-demo-test");
        assert_eq!(line["dd.env"], "test");
        assert_eq!(line["dd.version"], "1.2.3");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["http.status_code"], 200);
        assert_eq!(line["http.method"], "GET");
        assert!(line["duration"].as_u64().unwrap() > 0);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(span.resource.starts_with("GET /"));
    }
    assert!(access.iter().any(|line| line["dd.trace_id"] == "777"));
}

#[tokio::test]
async fn lines_outside_a_request_carry_no_trace_ids() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    tracing::info!("outside any request");
    let line = app
        .json_logs()
        .into_iter()
        .find(|l| l["message"] == "outside any request")
        .unwrap();
    assert!(line.get("dd.trace_id").is_none());
}

#[tokio::test]
async fn text_format_is_the_flask_format_with_injected_ids() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &["--log-format", "text"]).await;
    app.get("/api/trace").await;
    app.stop_and_flush().await;
    let text = app.log_text();
    let line = text
        .lines()
        .find(|l| l.contains("apm_demo::access"))
        .unwrap();
    // `%(asctime)s - %(name)s - %(levelname)s - %(message)s`, as the Flask app's formatter.
    let parts: Vec<&str> = line.splitn(4, " - ").collect();
    assert_eq!(parts.len(), 4, "{line}");
    let asctime = parts[0];
    assert_eq!(asctime.len(), "2019-08-05 12:34:56,789".len(), "{asctime}");
    assert_eq!(&asctime[19..20], ",", "{asctime}");
    assert_eq!(parts[1], "apm_demo::access");
    assert_eq!(parts[2], "INFO");
    let span = &agent.spans()[0];
    let ids = format!("dd.trace_id={} dd.span_id={}]", span.trace_id, span.span_id);
    assert!(
        parts[3].starts_with("[dd.service=apm-demo-test dd.env=test dd.version=1.2.3 "),
        "{line}"
    );
    assert!(parts[3].contains(&ids), "{line}");
    assert!(parts[3].contains("GET /api/trace 200"), "{line}");
}

#[tokio::test]
async fn a_path_cannot_forge_a_text_line_or_hide_text() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &["--log-format", "text"]).await;
    // Raw bytes on the wire (a client need not percent-encode): NEL, LINE SEPARATOR, RIGHT-TO-LEFT
    // OVERRIDE, each in UTF-8.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"GET /x\xc2\x85INFO\xe2\x80\xa8forged\xe2\x80\xaeevil HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");
    app.stop_and_flush().await;
    let text = app.log_text();
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" - apm_demo::access - "))
        .collect();
    assert_eq!(access.len(), 1, "one request, one line: {text}");
    assert!(
        access[0].contains(r"GET /x\u{85}INFO\u{2028}forged\u{202e}evil 404"),
        "{}",
        access[0]
    );
    assert!(
        !text.contains(['\u{85}', '\u{2028}', '\u{202e}']),
        "{text:?}"
    );
}

/// The access line of a `GET /` to the service started with `flags`, and the agent it exports to.
async fn access_line_with(flags: &[&str]) -> (serde_json::Value, TestAgent) {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, flags).await;
    app.get("/").await;
    app.stop_and_flush().await;
    let line = app
        .json_logs()
        .into_iter()
        .find(|l| l["logger.name"] == "apm_demo::access")
        .unwrap();
    (line, agent)
}

#[tokio::test]
async fn injection_off_leaves_ids_out() {
    let (line, agent) = access_line_with(&["--dd-logs-injection", "false"]).await;
    assert!(line.get("dd.trace_id").is_none(), "{line}");
    assert_eq!(agent.spans().len(), 1, "spans are still exported");
}

#[tokio::test]
async fn tracing_off_leaves_ids_out() {
    let (line, agent) = access_line_with(&["--dd-trace-enabled", "false"]).await;
    assert!(line.get("dd.trace_id").is_none(), "{line}");
    assert!(line.get("dd.span_id").is_none(), "{line}");
    assert!(agent.spans().is_empty(), "no span is exported");
}

#[tokio::test]
async fn a_handlers_own_lines_carry_its_requests_ids_across_awaits() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    let url = serve_traced(
        &app,
        axum::Router::new().route(
            "/work",
            axum::routing::get(|| async {
                tracing::info!(target: "handler", "before the await");
                tokio::task::yield_now().await;
                tracing::info!(target: "handler", "after the await");
                "done"
            }),
        ),
    )
    .await;
    let body = reqwest::get(format!("{url}/work"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "done");
    let lines = app.json_logs();
    let access = lines
        .iter()
        .find(|l| l["logger.name"] == "apm_demo::access")
        .expect("an access line");
    let handler: Vec<_> = lines
        .iter()
        .filter(|l| l["logger.name"] == "handler")
        .collect();
    assert_eq!(handler.len(), 2, "{lines:#?}");
    for line in handler {
        assert!(line["dd.trace_id"].is_string(), "{line}");
        assert_eq!(line["dd.trace_id"], access["dd.trace_id"], "{line}");
        assert_eq!(line["dd.span_id"], access["dd.span_id"], "{line}");
    }
}
