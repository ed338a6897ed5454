//! Datadog's own APM test agent (`ddapm-test-agent`, PyPI) as a process on free loopback ports, for
//! the suites that judge what the release binary sends (`make test` installs it into `.venv`;
//! `DDAPM_TEST_AGENT` names another executable).
#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::service::{client, free_port};

/// The payload checks of the test agent that apply to a v0.5 tracer.
pub const CHECKS: &str = "trace_count_header,meta_tracer_version_header,trace_content_length";

/// Datadog's test agent on free loopback ports; killed when dropped.
pub struct DatadogTestAgent {
    child: Child,
    pub url: String,
}

impl DatadogTestAgent {
    pub fn start() -> Self {
        let program = std::env::var_os("DDAPM_TEST_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ddapm-test-agent")
            });
        assert!(
            program.exists(),
            "{} is missing: run `make test`, which installs it",
            program.display()
        );
        let port = free_port();
        let log_path = std::env::temp_dir().join(format!("ddapm-test-agent-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&program)
            .args(["--port", &port.to_string()])
            // It also opens OTLP ports; give them free ones so that parallel agents never collide.
            .args(["--otlp-http-port", &free_port().to_string()])
            .args(["--otlp-grpc-port", &free_port().to_string()])
            // Its `--enabled-checks` flag does not parse (1.69); the variable does.
            .env("ENABLED_CHECKS", CHECKS)
            // Keep failures for /test/trace_check/failures (otherwise they are only logged).
            .env("DD_POOL_TRACE_CHECK_FAILURES", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut agent = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while client()
            .get(format!("{}/test/traces", agent.url))
            .send()
            .is_err()
        {
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("the test agent exited ({status}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "the test agent did not start within 60 s:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    /// The traces it received. A tracer may leave out a span's zero-valued fields (datadog-opentelemetry's
    /// v0.4 payloads omit `error` and `parent_id` when they are 0), which the Agent decodes as zeros:
    /// so do these, so that every span has both.
    pub fn traces(&self) -> Vec<Vec<Value>> {
        let mut traces: Vec<Vec<Value>> = client()
            .get(format!("{}/test/traces", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        for span in traces.iter_mut().flatten() {
            for field in ["error", "parent_id"] {
                if span.get(field).is_none() {
                    span[field] = Value::from(0);
                }
            }
        }
        traces
    }

    pub fn spans(&self) -> Vec<Value> {
        self.traces().into_iter().flatten().collect()
    }

    /// Waits until `count` spans match `keep`, for at most 15 s.
    pub fn wait_for(&self, count: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans: Vec<Value> = self.spans().into_iter().filter(|s| keep(s)).collect();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client-side stats payloads it received (`/v0.6/stats`, decoded), for tracers that compute
    /// them.
    pub fn stats(&self) -> Vec<Value> {
        client()
            .get(format!("{}/test/session/stats", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The hits the client-side stats count for `resource` (server spans' grouped stats), summed.
    pub fn stats_hits(&self, resource: &str) -> u64 {
        self.stats()
            .iter()
            .flat_map(|payload| payload["Stats"].as_array().into_iter().flatten())
            .flat_map(|bucket| bucket["Stats"].as_array().into_iter().flatten())
            .filter(|group| group["Resource"] == resource)
            .map(|group| group["Hits"].as_u64().unwrap_or(0))
            .sum()
    }

    /// The test agent's verdict on every payload it received: `200: OK` when no check failed.
    pub fn check_failures(&self) -> (u16, String) {
        let url = format!("{}/test/trace_check/failures?return_all=true", self.url);
        let response = client().get(url).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }
}

impl Drop for DatadogTestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
