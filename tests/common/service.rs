//! The release binary as a process: started on a free port with its stdout captured, sent
//! requests, stopped with SIGTERM. Shared by the suites that run the real binary.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The exporter a suite runs the service with: `TRACE_EXPORTER` (make runs the suites against
/// Datadog's test agent once per exporter), else the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    OpentelemetryDatadog,
    DatadogOpentelemetry,
}

impl Exporter {
    pub fn from_env() -> Self {
        match std::env::var("TRACE_EXPORTER").as_deref() {
            Ok("datadog-opentelemetry") => Self::DatadogOpentelemetry,
            Ok("opentelemetry-datadog") | Err(_) => Self::OpentelemetryDatadog,
            Ok(other) => panic!("TRACE_EXPORTER={other}: not an exporter of the service"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpentelemetryDatadog => "opentelemetry-datadog",
            Self::DatadogOpentelemetry => "datadog-opentelemetry",
        }
    }

    /// The high 64 bits of a chunk root's 128-bit trace id, in hex, where this exporter sends them:
    /// `_dd.p.tid` (Datadog's tracers' tag), or datadog-opentelemetry 0.5.4's `otel.trace_id` (the
    /// whole id), which is all it sends of them.
    pub fn trace_id_high(self, span: &Value) -> Option<&str> {
        let meta = |key| span["meta"].get(key).and_then(Value::as_str);
        match self {
            Self::OpentelemetryDatadog => meta("_dd.p.tid"),
            Self::DatadogOpentelemetry => meta("otel.trace_id").and_then(|id| id.get(..16)),
        }
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One client for the whole test process: building one takes about 100 ms (reqwest's TLS setup,
/// native-tls, which provision brings into the workspace's reqwest), which made a test of 1,000
/// requests take 100 s. No connection is kept idle: each request opens its own, as a client of its
/// own did.
pub fn client() -> reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        })
        .clone()
}

/// The release binary on a free port, its stdout captured line by line.
pub struct Service {
    pub child: Child,
    pub url: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Service {
    pub fn start(agent_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_apm-demo"));
        command
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DD_TRACE_AGENT_URL", agent_url)
            .env("DD_SERVICE", "apm-demo-conformance")
            .env("DD_ENV", "ci")
            .env("DD_VERSION", "9.9.9")
            .env("LOG_FORMAT", "json")
            .env("TRACE_EXPORTER", Exporter::from_env().as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = stdout.clone();
        let reader = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Ok(json) = serde_json::from_str::<Value>(&line)
                    && let Some(address) = json.get("address").and_then(Value::as_str)
                {
                    let _ = address_tx.send(address.to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the service logs its address");
        Self {
            child,
            url: format!("http://{address}"),
            stdout,
        }
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        let mut request = client().request(method.parse().unwrap(), format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().unwrap()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
