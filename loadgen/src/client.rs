//! Sending: one HTTP/1.1 connection per worker, reopened when it fails.
//!
//! hyper's connection API directly (as oha does), with no pool or redirect logic in the way: the
//! generator must cost less than the service it measures.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The connection could not be opened.
    Connect,
    /// No complete answer within --timeout.
    Timeout,
    /// The connection broke mid-request.
    Io,
}

/// A connection to the service.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens a connection to `address` (`host:port`).
    pub async fn open(address: &str, timeout: Duration) -> Result<Self, Failure> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => return Err(Failure::Connect),
            Err(_) => return Err(Failure::Timeout),
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; errors surface on the sender.
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends `request` and reads the whole answer; the status, or why there is none.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<StatusCode, Failure> {
        let exchange = async {
            self.sender.ready().await.map_err(|_| Failure::Io)?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|_| Failure::Io)?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|_| Failure::Io)?;
            Ok(status)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Whether the connection can carry another request (the server may have closed it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}
