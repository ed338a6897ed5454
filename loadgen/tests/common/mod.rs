//! What loadgen's test binaries share: an in-test server on loopback that records what it is sent,
//! an in-test trace agent that decodes what it is posted, and ways to run loadgen.
#![allow(dead_code)] // each test binary uses part of it

pub mod agent;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use clap::Parser;
use loadgen::{Args, Summary};

/// How the in-test server answers: 200, 500 to a path under `/fail`, 404 under `/missing`;
/// `/slow/<n>` takes n ms more.
#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// Sleep this long before every answer.
    pub delay: Duration,
    /// Request number at which the whole server stalls, and for how long.
    pub stall: Option<(u64, Duration)>,
}

/// What the in-test server saw.
#[derive(Default)]
pub struct Seen {
    pub paths: HashMap<String, u64>,
    pub headers: Vec<HeaderMap>,
    /// Every request: `METHOD path?query`, its headers and its body.
    pub requests: Vec<(String, HeaderMap, Bytes)>,
    /// When each request arrived, on the wall clock (in the order of `requests`).
    pub arrived: Vec<SystemTime>,
}

#[derive(Clone)]
struct Server {
    behaviour: Behaviour,
    count: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
    /// Held for writing during a stall: every request waits for it.
    stalled: Arc<tokio::sync::RwLock<()>>,
}

async fn answer(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = server.count.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = server.seen.lock().unwrap();
        *seen.paths.entry(uri.path().to_owned()).or_default() += 1;
        seen.headers.push(headers.clone());
        seen.requests
            .push((format!("{method} {uri}"), headers, body));
        seen.arrived.push(SystemTime::now());
    }
    if let Some((at, stall)) = server.behaviour.stall
        && n == at
    {
        let _everyone_waits = server.stalled.write().await;
        tokio::time::sleep(stall).await;
    }
    drop(server.stalled.read().await);
    if !server.behaviour.delay.is_zero() {
        tokio::time::sleep(server.behaviour.delay).await;
    }
    // `/slow/<n>`: n more milliseconds.
    if let Some(ms) = uri.path().strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if uri.path().starts_with("/fail") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if uri.path().starts_with("/missing") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    }
}

/// Starts a server on a free port; returns its URL and what it saw.
pub async fn serve(behaviour: Behaviour) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = Server {
        behaviour,
        count: Arc::new(AtomicU64::new(0)),
        seen: seen.clone(),
        stalled: Arc::default(),
    };
    let app = Router::new().fallback(answer).with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// An answer a raw test server writes: 200, empty, and the connection closes after it.
pub const OK_THEN_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Reads from a raw test server's `socket` up to the end of a request head: what was read, and where
/// the head ends (its body, if any, starts there); `None` when the peer closed first.
pub async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, usize)> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buffer = [0; 65536];
    loop {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((request, at + 4));
        }
    }
}

pub async fn load(url: &str, args: &[&str]) -> Summary {
    let args = Args::try_parse_from(["loadgen", url].iter().chain(args)).unwrap();
    loadgen::execute(args.into_plan().unwrap()).await.unwrap()
}

/// The loadgen binary, run with `args` and nothing from the environment.
pub fn loadgen(args: &[&str]) -> std::process::Output {
    loadgen_with(args, &[])
}

/// The loadgen binary, run with `args` and only the environment variables `env`.
pub fn loadgen_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// The report's rows: each entry's label and its request count.
pub fn rows_of(summary: &Summary) -> Vec<(String, u64)> {
    summary
        .paths
        .iter()
        .map(|p| (p.label(), p.requests))
        .collect()
}
