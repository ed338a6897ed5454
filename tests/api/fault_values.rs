//! A fault flag whose value asks for nothing (0 ms, 0 KiB) does not act: the request is not marked
//! as touched by it, only by the flags that did act.

use std::time::{Duration, Instant};

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::spawn_app;

/// `key` on for every request of `route`, its value `on`.
fn always_on(key: &str, route: &str, on: &str) -> String {
    format!(
        r#""{key}": {{"state": "ENABLED", "variants": {{"on": {on}, "off": 0}}, "defaultVariant": "off",
            "targeting": {{"if": [{{"==": [{{"var": "route"}}, "{route}"]}}, "on", "off"]}}}}"#
    )
}

#[tokio::test]
async fn flags_whose_value_is_zero_are_not_named_among_the_faults_of_a_request() {
    let dir = std::env::temp_dir().join(format!("apm-demo-fault-values-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("flags.json");
    let flags = [
        always_on("routeLatencyMs", "/api/apm", "1"),
        always_on("routeLatencyTailMs", "/api/apm", "0"),
        always_on("memoryLeakKb", "/api/apm", "0"),
    ]
    .join(",");
    std::fs::write(&path, format!(r#"{{"flags": {{{flags}}}}}"#)).unwrap();

    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(
        &agent.url,
        &["--flagd-offline-flag-source-path", path.to_str().unwrap()],
    )
    .await;
    let started = Instant::now();
    let injected = loop {
        app.get("/api/apm").await;
        let touched = app.json_logs().into_iter().find_map(|l| {
            (l["logger.name"] == "apm_demo::access")
                .then(|| l["fault.injected"].as_str().map(str::to_owned))
                .flatten()
        });
        if let Some(flags) = touched {
            break flags;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the latency flag never acted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(injected, "routeLatencyMs");
    let _ = std::fs::remove_dir_all(&dir);
}
