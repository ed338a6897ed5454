//! loadgen's client spans judged by Datadog's own APM test agent (`ddapm-test-agent`), with the real
//! service (the release `apm-demo` binary) reporting to the same agent: every request one complete
//! trace, loadgen's span at its root and the service's span its child.
//!
//! Needs what `make test` installs: the test agent in `.venv` (or `DDAPM_TEST_AGENT`) and the
//! release binary (`make release`, or `APM_DEMO`); run with `--features conformance`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap()
}

/// A program given by `variable`, else at `default`; the test says what is missing.
fn program(variable: &str, default: PathBuf, how: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or(default, PathBuf::from);
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path
}

/// A child process stopped (and reaped) when dropped, also when the test fails.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Datadog's test agent on free ports, with every check it enables by default.
struct TestAgent {
    _process: Process,
    url: String,
}

impl TestAgent {
    fn start() -> Self {
        let program = program(
            "DDAPM_TEST_AGENT",
            workspace().join(".venv/bin/ddapm-test-agent"),
            "`make venv` installs it",
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("loadgen-ddapm-test-agent-{port}.log"));
        let child = Command::new(program)
            .args(["--port", &port.to_string()])
            .args(["--otlp-http-port", &free_port().to_string()])
            .args(["--otlp-grpc-port", &free_port().to_string()])
            .env("DD_POOL_TRACE_CHECK_FAILURES", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let agent = Self {
            _process: Process(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/test/traces", agent.url)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test agent did not start within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    fn traces(&self) -> Vec<Vec<Value>> {
        get(&format!("{}/test/traces", self.url)).json().unwrap()
    }

    /// Waits (15 s at most) until `count` traces hold `spans` spans in all.
    fn wait_for(&self, count: usize, spans: usize) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let traces = self.traces();
            let total: usize = traces.iter().map(Vec::len).sum();
            if (traces.len() >= count && total >= spans) || Instant::now() > deadline {
                return traces;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The release service, reporting to `agent`; its address read from its first log line.
fn start_service(agent: &str) -> (Process, String) {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or(workspace().join("target"), PathBuf::from);
    let program = program(
        "APM_DEMO",
        target.join("release/apm-demo"),
        "`make release` builds it",
    );
    let mut child = Command::new(program)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DD_TRACE_AGENT_URL", agent)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let process = Process(child);
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str::<Value>(&line)
                && let Some(address) = json.get("address").and_then(Value::as_str)
            {
                let _ = found.send(address.to_owned());
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(20))
        .expect("the service logs its address");
    (process, format!("http://{address}"))
}

#[test]
fn a_traced_run_gives_one_complete_trace_per_request_with_loadgens_span_at_the_root() {
    let agent = TestAgent::start();
    let (mut service, url) = start_service(&agent.url);
    // loadgen's default mix: the seed's routes, a 404 and the database routes (503 here: this service
    // has no database), so success, 4xx and 5xx spans all go through the agent's checks.
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .args([
            &url,
            "-n",
            "100",
            "-c",
            "4",
            "--json",
            "--trace-agent",
            &agent.url,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["requests"], 100);
    assert_eq!(
        (&summary["spans"]["sent"], &summary["spans"]["lost"]),
        (&100.into(), &0.into())
    );
    // SIGTERM: the service flushes its spans.
    let stopped = Command::new("kill")
        .args(["-TERM", &service.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let _ = service.0.wait();

    let traces = agent.wait_for(100, 200);
    assert_eq!(traces.len(), 100, "one trace per request");
    let mut roots = HashMap::new();
    for trace in &traces {
        let ids: HashSet<u64> = trace
            .iter()
            .map(|s| s["span_id"].as_u64().unwrap())
            .collect();
        let (root, children): (Vec<&Value>, Vec<&Value>) = trace
            .iter()
            .partition(|s| s["parent_id"].as_u64().unwrap_or(0) == 0);
        assert_eq!(root.len(), 1, "exactly one root: {trace:#?}");
        let root = root[0];
        assert_eq!(
            (&root["service"], &root["name"]),
            (&"loadgen".into(), &"http.client.request".into())
        );
        for span in &children {
            let parent = span["parent_id"].as_u64().unwrap();
            assert!(
                ids.contains(&parent),
                "a parent id no span of the trace carries: {trace:#?}"
            );
        }
        let server: Vec<&&Value> = children
            .iter()
            .filter(|s| s["name"] == "http.server.request")
            .collect();
        assert_eq!(server.len(), 1, "{trace:#?}");
        assert_eq!(server[0]["service"], "apm-demo");
        assert_eq!(
            server[0]["parent_id"], root["span_id"],
            "the service's span is loadgen's child"
        );
        assert_eq!(
            server[0]["meta"]["_dd.p.tid"], root["meta"]["_dd.p.tid"],
            "one 128-bit trace"
        );
        assert_eq!(
            server[0]["resource"].as_str().unwrap().split(' ').next(),
            root["meta"]["http.method"].as_str()
        );
        roots.insert(root["trace_id"].as_u64().unwrap(), root);
    }
    assert_eq!(roots.len(), 100, "100 distinct traces");

    // The ids the summary names are those of traces the agent holds.
    let mut named = 0;
    for row in summary["paths"].as_array().unwrap() {
        for trace in row["slowest"]
            .as_array()
            .unwrap()
            .iter()
            .chain(row["failed"].as_array().unwrap())
        {
            let low: u64 = trace["trace_id_64"].as_str().unwrap().parse().unwrap();
            let root = roots
                .get(&low)
                .unwrap_or_else(|| panic!("{trace} names no trace the agent got"));
            let hex = trace["trace_id"].as_str().unwrap();
            assert_eq!(&hex[..16], root["meta"]["_dd.p.tid"].as_str().unwrap());
            assert_eq!(
                root["resource"].as_str().unwrap().split(' ').next(),
                row["method"].as_str()
            );
            named += 1;
        }
    }
    assert!(named >= 7 * 5, "{named} ids named");

    let response = get(&format!(
        "{}/test/trace_check/failures?return_all=true",
        agent.url
    ));
    let (status, text) = (response.status().as_u16(), response.text().unwrap());
    assert_eq!(
        (status, text.as_str()),
        (200, "200: OK"),
        "the test agent's trace checks"
    );
}
