//! Posting payloads to the trace agent's `/v0.4/traces`, over one kept-alive HTTP/1.1 connection
//! (hyper, as the load itself), from the export thread: every wait is bounded, so a slow agent costs
//! that thread a few seconds at most and the load nothing.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::plan::Target;

/// A connection to the agent is given this long to open.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One post, connection included, is given this long; past it the batch counts as lost.
const POST_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's address and the connection to it, opened when first needed and again after a failure.
pub struct AgentClient {
    agent: Target,
    path: String,
    host: HeaderValue,
    /// A runtime of the export thread's own, made there (a runtime may not be dropped on another's
    /// thread).
    runtime: Option<tokio::runtime::Runtime>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl AgentClient {
    pub fn new(agent: &Target) -> Self {
        Self {
            path: agent.path_and_query("/v0.4/traces"),
            host: HeaderValue::from_str(&agent.authority)
                .expect("a URL authority is a valid header value"),
            agent: agent.clone(),
            runtime: None,
            connection: None,
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
        let (address, connection) = (&self.agent.address, &mut self.connection);
        let outcome = runtime.block_on(async {
            tokio::time::timeout(POST_TIMEOUT, send(address, connection, request))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {POST_TIMEOUT:?}")))
        });
        if outcome.is_err() {
            // Whatever state the connection is in, the next post starts on a fresh one.
            self.connection = None;
        }
        outcome
    }
}

/// Sends `request` on the kept connection, or on a new one when there is none or the agent closed the
/// kept one while it was idle (then the request was not sent, and goes again on a fresh connection:
/// never twice, which would give the agent every span of the batch twice).
async fn send(
    address: &str,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    mut request: Request<Full<Bytes>>,
) -> Result<(), String> {
    for last_try in [false, true] {
        if last_try || connection.as_ref().is_none_or(SendRequest::is_closed) {
            *connection = Some(connect(address).await?);
        }
        let sender = connection.as_mut().expect("opened above");
        if let Err(error) = sender.ready().await {
            if last_try {
                return Err(error.to_string());
            }
            continue;
        }
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => match error.take_message() {
                Some(unsent) if !last_try => {
                    request = unsent;
                    continue;
                }
                _ => return Err(error.into_error().to_string()),
            },
        };
        let status = response.status();
        // Read to the end, so that the connection can carry the next payload.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        return if status.is_success() {
            Ok(())
        } else {
            Err(format!("it answered {status}"))
        };
    }
    unreachable!("the last try returns")
}

async fn connect(address: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the agent closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}
