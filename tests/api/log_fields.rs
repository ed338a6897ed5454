//! An event's own fields in both log formats: the message first, then `name=value` (text); typed JSON
//! values (JSON), with plain text copied as it is.

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::spawn_app;

/// The part after `time - target - LEVEL - ` of each text line of target `fields`.
fn text_messages(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.splitn(4, " - ").collect();
            (parts.get(1) == Some(&"fields")).then(|| parts[3].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn text_lines_put_the_message_first_then_the_other_fields() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &["--log-format", "text"]).await;
    tracing::warn!(target: "fields", count = 3, name = "bob", "hello {}", "world");
    // A message given as a plain string is recorded as a str, not through Debug.
    tracing::warn!(target: "fields", message = "plain", name = "bob");
    assert_eq!(
        text_messages(&app.log_text()),
        ["hello world count=3 name=bob", "plain name=bob"]
    );
}

#[tokio::test]
async fn json_lines_keep_numbers_and_booleans_typed_and_plain_text_as_it_is() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    tracing::warn!(
        target: "fields",
        delta = -3,
        total = 7u64,
        ratio = 0.5,
        ok = true,
        name = "bob smith",
        "hello world"
    );
    let text = app.log_text();
    let raw = text
        .lines()
        .find(|l| l.contains("\"logger.name\":\"fields\""))
        .unwrap_or_else(|| panic!("a line of target fields: {text}"));
    let line: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(line["delta"], -3, "{raw}");
    assert_eq!(line["total"], 7, "{raw}");
    assert_eq!(line["ratio"], 0.5, "{raw}");
    assert_eq!(line["ok"], true, "{raw}");
    assert_eq!(line["name"], "bob smith", "{raw}");
    assert_eq!(line["message"], "hello world", "{raw}");
    // Spaces and other printable characters are not escaped: the line is what a reader expects.
    assert!(raw.contains(r#""name":"bob smith""#), "{raw}");
    assert!(raw.contains(r#""message":"hello world""#), "{raw}");
}
