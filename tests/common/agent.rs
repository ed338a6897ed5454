//! An in-test trace agent: serves `/v0.5/traces` (the default exporter's) and `/v0.4/traces`
//! (datadog-opentelemetry's) on a loopback port and decodes the msgpack payloads the way the Datadog
//! Agent does (v0.5: a string table, then traces of 12-element span arrays; v0.4: traces of span
//! maps). It can also misbehave (answer 500, or accept connections and never answer) and be stopped
//! and restarted on the same port, for the fault suite. What else a tracer asks an Agent (`/info`,
//! stats, telemetry) gets a 404, as from an Agent that serves none of it.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rmpv::Value;

/// The largest trace payload the Datadog Agent reads.
const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// One span as the agent received it.
#[derive(Debug, Clone)]
pub struct AgentSpan {
    pub service: String,
    pub name: String,
    pub resource: String,
    pub trace_id: u64,
    pub span_id: u64,
    pub parent_id: u64,
    pub start: i64,
    pub duration: i64,
    pub error: i64,
    pub meta: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub span_type: String,
}

/// The headers of one payload.
#[derive(Debug, Clone)]
pub struct Payload {
    pub headers: HeaderMap,
    pub traces: usize,
}

/// How the agent answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    /// Answers 500 to every payload.
    Failing,
    /// Accepts connections and never answers.
    Silent,
}

#[derive(Default)]
struct Received {
    spans: Vec<AgentSpan>,
    payloads: Vec<Payload>,
}

#[derive(Clone)]
struct AgentState {
    received: Arc<Mutex<Received>>,
    behaviour: Behaviour,
}

/// A running in-test agent; stops when dropped.
pub struct TestAgent {
    pub url: String,
    pub port: u16,
    received: Arc<Mutex<Received>>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestAgent {
    /// Starts on a free port, on its own thread and runtime, so that a test blocked in a flush
    /// cannot starve it.
    pub fn start(behaviour: Behaviour) -> Self {
        Self::start_on(0, behaviour, Arc::default())
    }

    /// Starts again on the port of a stopped agent, keeping what it received.
    pub fn restart(port: u16, behaviour: Behaviour, previous: &TestAgent) -> Self {
        Self::start_on(port, behaviour, previous.received.clone())
    }

    fn start_on(port: u16, behaviour: Behaviour, received: Arc<Mutex<Received>>) -> Self {
        let state = AgentState {
            received: received.clone(),
            behaviour,
        };
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                if behaviour == Behaviour::Silent {
                    tokio::spawn(async move {
                        let mut held = Vec::new();
                        while let Ok((socket, _)) = listener.accept().await {
                            held.push(socket);
                        }
                    });
                } else {
                    let app = Router::new()
                        .route("/v0.5/traces", post(receive_v05))
                        .route("/v0.4/traces", post(receive_v04))
                        // As the Agent: payloads up to 25 MB (DataDog/datadog-agent,
                        // pkg/trace/config/config.go: `MaxRequestBytes: 25 * 1024 * 1024`), not
                        // axum's 2 MB default, which datadog-opentelemetry's flush of a busy
                        // second passes.
                        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
                        .with_state(state);
                    tokio::spawn(async move { axum::serve(listener, app).await });
                }
                // Dropping the runtime on return cancels the server and closes every connection.
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            url: format!("http://{addr}"),
            port: addr.port(),
            received,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops listening and closes every connection; what it received stays readable.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn spans(&self) -> Vec<AgentSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    pub fn payloads(&self) -> Vec<Payload> {
        self.received.lock().unwrap().payloads.clone()
    }

    /// Waits until at least `count` spans arrived, for at most `timeout`; returns how many did.
    pub fn wait_for_spans(&self, count: usize, timeout: std::time::Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let received = self.received.lock().unwrap().spans.len();
            if received >= count || std::time::Instant::now() >= deadline {
                return received;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn receive_v05(state: State<AgentState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receive(state, headers, body, decode_v05).await
}

async fn receive_v04(state: State<AgentState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receive(state, headers, body, decode_v04).await
}

async fn receive(
    State(state): State<AgentState>,
    headers: HeaderMap,
    body: Bytes,
    decode: fn(&[u8]) -> Decoded,
) -> StatusCode {
    if state.behaviour == Behaviour::Failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let traces = match decode(&body) {
        Ok(traces) => traces,
        Err(error) => panic!("undecodable payload: {error}"),
    };
    let mut received = state.received.lock().unwrap();
    received.payloads.push(Payload {
        headers,
        traces: traces.len(),
    });
    received.spans.extend(traces.into_iter().flatten());
    StatusCode::OK
}

/// A payload's traces, or why it could not be read.
type Decoded = Result<Vec<Vec<AgentSpan>>, String>;

/// Decodes a v0.5 payload: `[[string...], [[span...]...]]`, each span an array of 12 elements.
pub fn decode_v05(body: &[u8]) -> Decoded {
    let value = rmpv::decode::read_value(&mut &body[..]).map_err(|e| e.to_string())?;
    let [strings, traces] = as_array(&value)? else {
        return Err("payload is not [strings, traces]".into());
    };
    let strings: Vec<&str> = as_array(strings)?
        .iter()
        .map(|s| s.as_str().ok_or("string table holds a non-string"))
        .collect::<Result<_, _>>()?;
    let text = |v: &Value| -> Result<String, String> {
        let index = v.as_u64().ok_or("string index is not an integer")? as usize;
        strings
            .get(index)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("string index {index} out of range"))
    };
    as_array(traces)?
        .iter()
        .map(|trace| {
            as_array(trace)?
                .iter()
                .map(|span| {
                    let fields = as_array(span)?;
                    if fields.len() != 12 {
                        return Err(format!("span has {} elements, not 12", fields.len()));
                    }
                    let int = |v: &Value| {
                        v.as_i64()
                            .or_else(|| v.as_u64().map(|u| u as i64))
                            .ok_or("not an integer")
                    };
                    let meta = map(&fields[9])?
                        .iter()
                        .map(|(k, v)| Ok((text(k)?, text(v)?)))
                        .collect::<Result<_, String>>()?;
                    let metrics = map(&fields[10])?
                        .iter()
                        .map(|(k, v)| Ok((text(k)?, v.as_f64().ok_or("metric is not a float")?)))
                        .collect::<Result<_, String>>()?;
                    Ok(AgentSpan {
                        service: text(&fields[0])?,
                        name: text(&fields[1])?,
                        resource: text(&fields[2])?,
                        trace_id: fields[3].as_u64().ok_or("trace_id")?,
                        span_id: fields[4].as_u64().ok_or("span_id")?,
                        parent_id: fields[5].as_u64().ok_or("parent_id")?,
                        start: int(&fields[6])?,
                        duration: int(&fields[7])?,
                        error: int(&fields[8])?,
                        meta,
                        metrics,
                        span_type: text(&fields[11])?,
                    })
                })
                .collect()
        })
        .collect()
}

/// Decodes a v0.4 payload: `[[span...]...]`, each span a map of its fields by name.
pub fn decode_v04(body: &[u8]) -> Decoded {
    let value = rmpv::decode::read_value(&mut &body[..]).map_err(|e| e.to_string())?;
    as_array(&value)?
        .iter()
        .map(|trace| as_array(trace)?.iter().map(span_v04).collect())
        .collect()
}

fn span_v04(span: &Value) -> Result<AgentSpan, String> {
    let fields = map(span)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| -> Result<String, String> {
        match field(name) {
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{name} is not a string")),
            None => Ok(String::new()),
        }
    };
    let int = |name: &str| -> Result<i64, String> {
        match field(name) {
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_u64().map(|u| u as i64))
                .ok_or_else(|| format!("{name} is not an integer")),
            None => Ok(0),
        }
    };
    let meta = match field("meta") {
        Some(meta) => map(meta)?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.as_str().ok_or("meta key")?.to_owned(),
                    v.as_str().ok_or("meta value")?.to_owned(),
                ))
            })
            .collect::<Result<_, String>>()?,
        None => BTreeMap::new(),
    };
    let metrics = match field("metrics") {
        Some(metrics) => map(metrics)?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.as_str().ok_or("metric key")?.to_owned(),
                    v.as_f64()
                        .or_else(|| v.as_i64().map(|i| i as f64))
                        .ok_or("metric is not a number")?,
                ))
            })
            .collect::<Result<_, String>>()?,
        None => BTreeMap::new(),
    };
    Ok(AgentSpan {
        service: text("service")?,
        name: text("name")?,
        resource: text("resource")?,
        trace_id: int("trace_id")? as u64,
        span_id: int("span_id")? as u64,
        parent_id: int("parent_id")? as u64,
        start: int("start")?,
        duration: int("duration")?,
        error: int("error")?,
        meta,
        metrics,
        span_type: text("type")?,
    })
}

fn as_array(value: &Value) -> Result<&[Value], String> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("expected an array, got {value}"))
}

fn map(value: &Value) -> Result<&[(Value, Value)], String> {
    value
        .as_map()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("expected a map, got {value}"))
}
