//! An in-test trace agent on loopback: it takes `/v0.4/traces` payloads, decodes them (msgpack, as
//! the Datadog Agent reads them) and keeps them with their headers; or it misbehaves on purpose.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// How the in-test agent answers a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, after keeping the payload.
    Accept,
    /// Never: it reads the payload and holds the connection.
    Hang,
    /// This status, without keeping the payload.
    Refuse(StatusCode),
}

/// One payload as the agent received it.
#[derive(Debug, Clone)]
pub struct Payload {
    pub path: String,
    pub headers: HeaderMap,
    /// The traces, each a list of spans, as JSON.
    pub traces: Vec<Vec<Value>>,
    /// When it arrived.
    pub arrived: Instant,
}

#[derive(Clone)]
struct Shared {
    answer: Answer,
    payloads: Arc<Mutex<Vec<Payload>>>,
}

pub struct Agent {
    pub url: String,
    payloads: Arc<Mutex<Vec<Payload>>>,
}

impl Agent {
    pub async fn start(answer: Answer) -> Self {
        let payloads = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            answer,
            payloads: payloads.clone(),
        };
        let app = Router::new().fallback(receive).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, payloads }
    }

    pub fn payloads(&self) -> Vec<Payload> {
        self.payloads.lock().unwrap().clone()
    }

    /// Every span received, in the order received.
    pub fn spans(&self) -> Vec<Value> {
        self.payloads()
            .into_iter()
            .flat_map(|payload| payload.traces)
            .flatten()
            .collect()
    }
}

async fn receive(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match shared.answer {
        Answer::Accept => {}
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Answer::Refuse(status) => return status,
    }
    let value = rmpv::decode::read_value(&mut &body[..]).expect("the payload is msgpack");
    let traces = match json(&value) {
        Value::Array(traces) => traces
            .into_iter()
            .map(|trace| match trace {
                Value::Array(spans) => spans,
                other => panic!("a trace is an array of spans, not {other}"),
            })
            .collect(),
        other => panic!("a v0.4 payload is an array of traces, not {other}"),
    };
    shared.payloads.lock().unwrap().push(Payload {
        path: uri.path().to_owned(),
        headers,
        traces,
        arrived: Instant::now(),
    });
    StatusCode::OK
}

/// A msgpack value as JSON; integers stay exact (u64 ids included).
fn json(value: &rmpv::Value) -> Value {
    match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => panic!("{i} is no 64-bit integer"),
        },
        rmpv::Value::F32(f) => Value::from(f64::from(*f)),
        rmpv::Value::F64(f) => Value::from(*f),
        rmpv::Value::String(s) => Value::String(s.as_str().expect("UTF-8 text").to_owned()),
        rmpv::Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        rmpv::Value::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.as_str().expect("text keys").to_owned(), json(v)))
                .collect(),
        ),
        other => panic!("no msgpack {other} in a Datadog payload"),
    }
}
