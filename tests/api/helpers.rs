//! `spawn_app`: the real service on a free loopback port, with its own subscriber and captured logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apm_demo::config::Config;
use apm_demo::db::Database;
use apm_demo::telemetry::Telemetry;
use apm_demo::telemetry::trace_layer::trace_request;
use apm_demo::{Application, routes};
use axum::Router;
use tracing::dispatcher::DefaultGuard;

/// Serves `routes` inside `app`'s trace layer alone on a free loopback port, for tests of handlers the
/// service does not have (a failing one, one that logs). Spans and logs go to the subscriber of the
/// calling thread (`app`'s). Returns the base URL.
pub async fn serve_traced(app: &TestApp, routes: Router) -> String {
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        app.telemetry.trace_layer(),
        trace_request,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    format!("http://{address}")
}

/// A running service; tests call it through `get` and read its logs and export counts.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub telemetry: Arc<Telemetry>,
    logs: Arc<Mutex<Vec<u8>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<bool>>>,
    _subscriber: DefaultGuard,
}

/// Starts the service exporting to `agent_url` (with the default exporter) with JSON logs; `extra`
/// flags override the defaults.
/// Must run on a current-thread runtime (`#[tokio::test]`): the subscriber is set for this thread.
pub async fn spawn_app(agent_url: &str, extra: &[&str]) -> TestApp {
    spawn_app_with(agent_url, extra, |config| {
        routes::service(Database::new(&config.mysql, &config.datadog))
    })
    .await
}

/// As [`spawn_app`], serving `routes` instead of the service's own, in the service's layers
/// ([`apm_demo::app`]: trace layer, limits, panics, faults; `/health` outside them).
pub async fn spawn_app_serving(agent_url: &str, extra: &[&str], routes: Router) -> TestApp {
    spawn_app_with(agent_url, extra, move |_| routes).await
}

async fn spawn_app_with(
    agent_url: &str,
    extra: &[&str],
    routes: impl FnOnce(&Config) -> Router,
) -> TestApp {
    let mut args = vec![
        "apm-demo",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dd-trace-agent-url",
        agent_url,
        "--dd-service",
        "apm-demo-test",
        "--dd-env",
        "test",
        "--dd-version",
        "1.2.3",
        "--log-format",
        "json",
        "--rust-log",
        "info",
        // The in-test agent speaks the default exporter's v0.5; the suites against Datadog's test
        // agent run both exporters.
        "--trace-exporter",
        "opentelemetry-datadog",
    ];
    args.extend_from_slice(extra);
    let config = Config::parse_from_args(args).expect("test configuration is valid");

    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer_logs = logs.clone();
    let telemetry = Telemetry::build(&config, move || CapturedLogs(writer_logs.clone())).unwrap();
    let subscriber = tracing::dispatcher::set_default(&telemetry.dispatch);

    let app = apm_demo::app(&config, telemetry.trace_layer(), routes(&config));
    let app = Application::bind(&config, app).await.unwrap();
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    TestApp {
        address,
        client: reqwest::Client::new(),
        telemetry: Arc::new(telemetry),
        logs,
        stop: Some(stop),
        server: Some(server),
        _subscriber: subscriber,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, &[]).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the service answers")
    }

    /// Stops the server, then sends every queued span to the agent (as `main` does).
    pub async fn stop_and_flush(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            assert!(
                server.await.unwrap().unwrap(),
                "in-flight requests finished"
            );
        }
        let telemetry = self.telemetry.clone();
        tokio::task::spawn_blocking(move || telemetry.shutdown(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
    }

    /// The log lines written so far, each parsed as JSON.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    pub fn log_text(&self) -> String {
        String::from_utf8(self.logs.lock().unwrap().clone()).unwrap()
    }
}

struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
