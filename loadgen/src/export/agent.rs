//! Posting payloads to the trace agent's `/v0.4/traces` over HTTP/1.1 (hyper, as the load itself),
//! from the export thread: every wait is bounded, so a slow agent costs that thread a few seconds at
//! most and the load nothing.
//!
//! Each post has a connection of its own. Agents close idle connections (the Datadog Agent's
//! receiver after its read timeout), and a payload sent into a connection the agent has just
//! closed is lost; this runtime is idle between posts, so a kept connection cannot notice its
//! closing in time (tests/tracing.rs, `an_agent_closing_idle_connections_loses_no_span`, lost 40%
//! of the spans that way). A connection a post costs tens of microseconds, a post carries up to
//! 2,000 spans.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::plan::Target;

/// A connection to the agent is given this long to open.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One post, connection included, is given this long; past it the batch counts as lost.
const POST_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's address, and a runtime to post with.
pub struct AgentClient {
    agent: Target,
    path: String,
    host: HeaderValue,
    /// A runtime of the export thread's own, made there (a runtime may not be dropped on another's
    /// thread).
    runtime: Option<tokio::runtime::Runtime>,
}

impl AgentClient {
    pub fn new(agent: &Target) -> Self {
        Self {
            path: agent.path_and_query("/v0.4/traces"),
            host: HeaderValue::from_str(&agent.authority)
                .expect("a URL authority is a valid header value"),
            agent: agent.clone(),
            runtime: None,
        }
    }

    /// The agent's URL, for messages.
    pub fn url(&self) -> &url::Url {
        &self.agent.base
    }

    /// Posts one v0.4 payload holding `traces` traces; `Err` says why the agent did not take it.
    pub fn post(&mut self, payload: Vec<u8>, traces: usize) -> Result<(), String> {
        let runtime = self.runtime.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the export thread")
        });
        let mut request = Request::new(Full::new(Bytes::from(payload)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.parse().expect("a path made from a valid URL");
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/msgpack"),
        );
        // What Datadog's tracers say of a payload (the test agent checks the count and the version).
        headers.insert("x-datadog-trace-count", HeaderValue::from(traces));
        headers.insert("datadog-meta-lang", HeaderValue::from_static("rust"));
        headers.insert(
            "datadog-meta-tracer-version",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        let address = &self.agent.address;
        runtime.block_on(async {
            tokio::time::timeout(POST_TIMEOUT, send(address, request))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {POST_TIMEOUT:?}")))
        })
    }
}

/// Sends `request` on a new connection, closed when the answer is read (or the post gave up).
async fn send(address: &str, request: Request<Full<Bytes>>) -> Result<(), String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("it answered {status}"))
        }
    };
    // The connection is driven here, beside the exchange, and dropped with it.
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        biased;
        outcome = exchange => outcome,
        Err(error) = &mut connection => Err(error.to_string()),
    }
}
